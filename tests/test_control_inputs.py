"""No input gives a 500: hypothesis over every route's path, credentials, query, form and body.

The app is the Heroku add-on (production settings) on a real database. Examples carry good
credentials and well-formed ids most of the time, so that they get past the doors and have their
bodies read: the API token, a claimed run's token, Heroku's Basic credentials, a well-signed SSO
form. The routes that read a body get an example run of their own. Every run is bounded in
examples, and takes a few seconds.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from control import runs
from tests.controlplane import ADDON_ID, ADDON_PASSWORD, SSO_SALT, make_resource, sso_form

settings.register_profile("endpoints", max_examples=100, deadline=None, database=None, derandomize=True,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
BOUNDED = settings.get_profile("endpoints")
EVENTS_ROUTE, PROVISION_ROUTE = "/api/v1/runs/<uuid:run_id>/events", "/heroku/resources"


def mostly(likely, unlikely):
    """``likely`` most of the time, else ``unlikely`` (hypothesis weighs the two sides of ``|`` alike)."""
    return st.integers(0, 9).flatmap(lambda n: unlikely if n == 7 else likely)


HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=60)
# text that PostgreSQL, a parser or a page may choke on, besides whatever hypothesis makes up
ANY_TEXT = st.sampled_from(["\x00", "a\x00b", "\u202e\r\n", "²", "\ud7ff" * 300, "' or 1=1 --"]) | st.text(max_size=40)
NUMBERS = st.one_of(st.integers(), st.integers(-2**70, 2**70), st.floats(allow_nan=True), st.booleans(), st.none(),
                    st.just("²"), ANY_TEXT)
JSON = st.recursive(st.one_of(NUMBERS, ANY_TEXT), lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=12)
COUNTS = st.integers(0, 2**40) | st.sampled_from([-1, 2**63 - 1, 2**63, 2**64, 10**4000]) | NUMBERS
EVENT_FIELDS = {
    "started": st.fixed_dictionaries({}, optional={"process": ANY_TEXT | NUMBERS}),
    "progress": st.fixed_dictionaries({"bytes": COUNTS}),
    "succeeded": st.fixed_dictionaries({"sha256": mostly(st.just("ab" * 32), ANY_TEXT),
                                        "backup_id": mostly(st.just("20260101T000000Z-abc"), ANY_TEXT),
                                        "dump_bytes": COUNTS, "encrypted_bytes": COUNTS}),
    "failed": st.fixed_dictionaries({"exit_code": mostly(st.integers(0, 255), NUMBERS), "error": ANY_TEXT | NUMBERS}),
}
# sampled_from, not one_of: hypothesis leans hard on one_of's first branch
EVENTS = st.sampled_from([*EVENT_FIELDS, None]).flatmap(
    lambda kind: EVENT_FIELDS[kind].map(lambda fields: {"type": kind, **fields}) if kind else JSON)
WEBHOOKS = st.sampled_from([
    "https://127.0.0.1/hook", "https://[::1]/", "https://169.254.169.254/latest", "http://93.184.216.34/",
    "https://user:pw@93.184.216.34/", "https://93.184.216.34:99999/", "https://[::ffff:10.0.0.1]/", "ftp://x/",
    "https://224.0.0.1/", "https:///nohost", "https://2130706433/", "https://0x7f000001/", " https://10.1.1.1/",
    "https://[fe80::1%25eth0]/", "https://93.184.216.34/" + "x" * 3000,
]) | ANY_TEXT | NUMBERS  # IP addresses only: a random name would be looked up in the DNS
CRONS = st.sampled_from(["0 3 * * *", "*/5 * * * *", "0 0 31 4 *", "36 8 30 11 * 0 2026", "@daily", "0 24 * * *",
                         "H 3 * * *", "0 0 L * *", "0\t3 * * *", "*/0 * * * *", "0 0 * * 5#3", "0 0 29 2 *"])
OPTIONS = st.fixed_dictionaries({}, optional={
    "schedule": mostly(CRONS, ANY_TEXT | NUMBERS), "timezone": mostly(st.just("Europe/Paris"), ANY_TEXT | NUMBERS),
    "alert_webhook": WEBHOOKS, "other": ANY_TEXT})
PROVISIONS = st.fixed_dictionaries({
    "uuid": mostly(st.uuids().map(str), ANY_TEXT | NUMBERS),
    "plan": mostly(st.just("basic"), NUMBERS | JSON),
    "region": mostly(st.just("amazon-web-services::us-east-1"), NUMBERS | JSON),
    "oauth_grant": mostly(st.fixed_dictionaries({"code": mostly(st.just("code"), NUMBERS)}), JSON),
    "options": mostly(OPTIONS, JSON),
})
# what a route reads: (the index of its credential in the world's, the body it takes)
SHAPED = {EVENTS_ROUTE: (1, EVENTS), PROVISION_ROUTE: (2, PROVISIONS),
          "/heroku/resources/<uuid:resource_id>": (2, st.fixed_dictionaries({"plan": mostly(st.just("x"), JSON)}))}
OTHER_BODIES = st.one_of(JSON.map(json.dumps).map(str.encode), st.binary(max_size=100),
                         st.sampled_from([b"[" * 60_000, b'{"a":' * 12_000, b"[" * 70_000, b"1" * 5000]))


@pytest.fixture
def world(heroku_app):
    """A resource with its API token, and a run claimed as a worker claims it (its token)."""
    resource, api_token = make_resource(heroku_app)
    client = heroku_app.test_client()
    client.post(f"/api/v1/resources/{resource['id']}/backups", headers={"Authorization": f"Bearer {api_token}"})
    with heroku_app.extensions["remora.pool"].connection() as conn:
        [(run, run_token)] = runs.claim(conn, limit=1)
    basic = "Basic " + base64.b64encode(f"{ADDON_ID}:{ADDON_PASSWORD}".encode()).decode()
    routes = sorted((method, rule.rule) for rule in heroku_app.url_map.iter_rules() if rule.endpoint != "static"
                    for method in rule.methods - {"HEAD", "OPTIONS"})
    return {"client": client, "pool": heroku_app.extensions["remora.pool"], "routes": routes,
            "ids": [str(resource["id"]), str(run["id"])], "auth": [f"Bearer {api_token}", f"Bearer {run_token}", basic]}


@st.composite
def requests_(draw, routes: list[tuple[str, str]], ids: list[str], auth: list[str]) -> dict:
    method, rule = draw(st.sampled_from(routes))
    path = rule
    while "<" in path:
        right = ids[1] if path[path.index("<"):].startswith("<uuid:run_id>") else ids[0]
        segment = draw(mostly(st.just(right), st.sampled_from(ids) | st.uuids().map(str) | st.text(st.characters(
            min_codepoint=33, max_codepoint=0x2FF, blacklist_characters="/?#%<>"), min_size=1, max_size=20)))
        path = path[:path.index("<")] + segment + path[path.index(">") + 1:]
    credential, shaped = SHAPED.get(rule, (0, JSON))
    right = auth[2] if rule.startswith("/heroku") else auth[credential]
    headers = {"Authorization": draw(mostly(st.just(right), st.sampled_from(auth) | HEADER_TEXT))}
    if draw(st.booleans()):
        headers["Content-Type"] = draw(st.sampled_from(["application/json", "application/x-www-form-urlencoded",
                                                        "multipart/form-data; boundary=x"]) | HEADER_TEXT)
    query = draw(st.dictionaries(st.sampled_from(["page", "per_page", "x"]), ANY_TEXT | NUMBERS.map(str), max_size=2))
    body = draw(_sso(ids) if rule == "/heroku/sso" else mostly(shaped.map(json.dumps).map(str.encode), OTHER_BODIES))
    return {"method": method, "path": path, "headers": headers, "query_string": query, "data": body}


@st.composite
def _sso(draw, ids: list[str]) -> dict:
    resource_id = draw(mostly(st.just(ids[0]), ANY_TEXT))
    timestamp = draw(st.integers(0, 2**40).map(str) | st.just("²") | ANY_TEXT)
    token = hashlib.sha1(f"{resource_id}:{SSO_SALT}:{timestamp}".encode()).hexdigest()
    return {"resource_id": resource_id, "timestamp": timestamp, "resource_token": draw(mostly(st.just(token), ANY_TEXT)),
            "nav-data": draw(ANY_TEXT)}


def _known(world) -> list[dict]:
    """Inputs that gave 500s once: hypothesis tries them first, every time."""
    (resource_id, run_id), (api, run, basic) = world["ids"], world["auth"]
    events = {"method": "POST", "path": f"/api/v1/runs/{run_id}/events", "headers": {"Authorization": run},
              "query_string": {}}
    sso = sso_form(resource_id, timestamp=0) | {"timestamp": "²"}
    return [
        {**events, "data": b"[" * 60_000},
        {**events, "data": json.dumps({"type": "progress", "bytes": 2**64}).encode()},
        {**events, "data": json.dumps({"type": "failed", "exit_code": 1, "error": "a\x00b"}).encode()},
        {"method": "POST", "path": "/heroku/sso", "headers": {}, "query_string": {}, "data": sso},
        {"method": "GET", "path": f"/api/v1/resources/{resource_id}/backups", "headers": {"Authorization": api},
         "query_string": {"page": "99999999999999999999"}, "data": b""},
        {"method": "POST", "path": "/heroku/resources", "headers": {"Authorization": basic}, "query_string": {},
         "data": json.dumps({"uuid": str(uuid.uuid4()), "oauth_grant": {"code": "c"}, "options": []}).encode()},
    ]


@pytest.mark.parametrize("focus", [EVENTS_ROUTE, PROVISION_ROUTE, None], ids=["events", "provision", "every route"])
def test_no_input_gives_a_500(world, focus):
    routes = [route for route in world["routes"] if focus in (None, route[1])]

    @BOUNDED
    @given(request=requests_(routes, world["ids"], world["auth"]))
    def no_500(request):
        with world["pool"].connection() as conn:  # the resource is there and its run takes events, whatever came before
            conn.execute("update resources set deprovisioned_at = null")
            conn.execute("update runs set state = 'launched', started_by = null, finished_at = null where id = %s",
                         (world["ids"][1],))
        answer = world["client"].open(request["path"], method=request["method"], headers=request["headers"],
                                      query_string=request["query_string"], data=request["data"])
        assert answer.status_code < 500, (request, answer.data[:300])

    if focus is None:
        for known in _known(world):
            no_500 = example(request=known)(no_500)
    no_500()

