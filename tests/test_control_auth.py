"""Every route, route by route: no credentials, wrong credentials, and another resource's credentials."""

from __future__ import annotations

import base64

import pytest

from tests.controlplane import ADDON_ID, connect, make_resource, provision_body, sso_form

NONE, WRONG, OTHER = "none", "wrong", "other"
UPLOAD, KEY = "7f0c8a52-36a1-4d8e-9e0f-2b1f4c2a9d10", "shop/2026/11/27/20261127T214800Z-3f9a2c.manifest.json"


def _bearer(token: str) -> dict:
    return {"headers": {"Authorization": f"Bearer {token}"}}


@pytest.fixture
def world(heroku_app, heroku):
    """Resources A and B, each with a run; B's browser logged in to B's dashboard."""
    client = heroku_app.test_client()
    a, a_token = make_resource(heroku_app, app_name="app-a")
    b, b_token = make_resource(heroku_app, app_name="app-b")
    run_a = client.post(f"/api/v1/resources/{a['id']}/backups", **_bearer(a_token)).json["run"]
    run_b = client.post(f"/api/v1/resources/{b['id']}/backups", **_bearer(b_token)).json["run"]
    b_browser = heroku_app.test_client()
    assert b_browser.post("/heroku/sso", data=sso_form(str(b["id"]))).status_code == 303
    return {"a": a, "b": b, "a_token": a_token, "b_token": b_token, "run_a": run_a, "run_b": run_b,
            "b_browser": b_browser, "body": provision_body(heroku)}


def _basic(user: str, password: str) -> dict:
    return {"headers": {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}}


# (method, path, rule it covers, {kind: (request kwargs from the world, expected status)})
ROUTES = [
    ("POST", "/api/v1/resources/{a}/backups", "/api/v1/resources/<uuid:resource_id>/backups", {
        NONE: (lambda w: {}, 401), WRONG: (lambda w: _bearer("x" * 43), 401),
        OTHER: (lambda w: _bearer(w["b_token"]), 404)}),
    ("GET", "/api/v1/resources/{a}/backups", "/api/v1/resources/<uuid:resource_id>/backups", {
        NONE: (lambda w: {}, 401), WRONG: (lambda w: _bearer(w["a_token"][:-1]), 401),
        OTHER: (lambda w: _bearer(w["b_token"]), 404)}),
    ("GET", "/api/v1/resources/{a}/backups/20261127T214800Z-3f9a2c", "/api/v1/resources/<uuid:resource_id>/backups/"
     "<backup_id>", {
        NONE: (lambda w: {}, 401), WRONG: (lambda w: _bearer("x" * 43), 401),
        OTHER: (lambda w: _bearer(w["b_token"]), 404)}),
    ("GET", "/api/v1/runs/{run_a}", "/api/v1/runs/<uuid:run_id>", {
        NONE: (lambda w: {}, 401), WRONG: (lambda w: _bearer("x" * 43), 401),
        OTHER: (lambda w: _bearer(w["b_token"]), 404)}),
    ("GET", "/api/v1/resources/{a}", "/api/v1/resources/<uuid:resource_id>", {
        NONE: (lambda w: {}, 401), WRONG: (lambda w: _bearer("x" * 43), 401),
        OTHER: (lambda w: _bearer(w["b_token"]), 404)}),
    ("PATCH", "/api/v1/resources/{a}", "/api/v1/resources/<uuid:resource_id>", {
        NONE: (lambda w: {"json": {"timezone": "Europe/Paris"}}, 401),
        WRONG: (lambda w: {"json": {"timezone": "Europe/Paris"}, **_bearer("x" * 43)}, 401),
        OTHER: (lambda w: {"json": {"timezone": "Europe/Paris"}, **_bearer(w["b_token"])}, 404)}),
    ("POST", "/api/v1/resources/{a}/runs/claim", "/api/v1/resources/<uuid:resource_id>/runs/claim", {
        NONE: (lambda w: {}, 401), WRONG: (lambda w: _bearer("x" * 43), 401),
        OTHER: (lambda w: _bearer(w["b_token"]), 404)}),
    ("POST", "/api/v1/runs/{run_a}/events", "/api/v1/runs/<uuid:run_id>/events", {
        NONE: (lambda w: {"json": {"type": "started"}}, 401),
        WRONG: (lambda w: {"json": {"type": "started"}, **_bearer("x" * 43)}, 401),
        OTHER: (lambda w: {"json": {"type": "started"}, **_bearer(w["a_token"])}, 401)}),
    *[(method, f"/api/v1/runs/{{run_a}}/storage/{tail}", f"/api/v1/runs/<uuid:run_id>/storage/{rule}", {
        NONE: (lambda w: {"json": {}}, 401), WRONG: (lambda w: {"json": {}, **_bearer("x" * 43)}, 401),
        OTHER: (lambda w: {"json": {}, **_bearer(w["a_token"])}, 401)}) for method, tail, rule in (
        ("POST", "uploads", "uploads"),
        ("POST", f"uploads/{UPLOAD}/parts/1", "uploads/<uuid:upload>/parts/<int:number>"),
        ("POST", f"uploads/{UPLOAD}/complete", "uploads/<uuid:upload>/complete"),
        ("DELETE", f"uploads/{UPLOAD}", "uploads/<uuid:upload>"),
        ("PUT", f"objects/{KEY}", "objects/<path:key>"))],
    *[("GET", f"/api/v1/resources/{{a}}/storage/{tail}", f"/api/v1/resources/<uuid:resource_id>/storage/{rule}", {
        NONE: (lambda w: {}, 401), WRONG: (lambda w: _bearer(w["a_token"][1:]), 401),
        OTHER: (lambda w: _bearer(w["b_token"]), 404)}) for tail, rule in (
        ("objects", "objects"), (f"objects/{KEY}", "objects/<path:key>"))],
    ("POST", "/heroku/resources", "/heroku/resources", {
        NONE: (lambda w: {"json": w["body"]}, 401),
        WRONG: (lambda w: {"json": w["body"], **_basic(ADDON_ID, "guess")}, 401),
        OTHER: (lambda w: {"json": w["body"], **_bearer(w["a_token"])}, 401)}),
    ("PUT", "/heroku/resources/{a}", "/heroku/resources/<uuid:resource_id>", {
        NONE: (lambda w: {"json": {"plan": "x"}}, 401),
        WRONG: (lambda w: {"json": {"plan": "x"}, **_basic("other-addon", "guess")}, 401),
        OTHER: (lambda w: {"json": {"plan": "x"}, **_bearer(w["a_token"])}, 401)}),
    ("DELETE", "/heroku/resources/{a}", "/heroku/resources/<uuid:resource_id>", {
        NONE: (lambda w: {}, 401), WRONG: (lambda w: _basic(ADDON_ID, ""), 401),
        OTHER: (lambda w: _bearer(w["a_token"]), 401)}),
    ("POST", "/heroku/sso", "/heroku/sso", {
        NONE: (lambda w: {"data": {}}, 403),
        WRONG: (lambda w: {"data": sso_form(str(w["a"]["id"]), salt="guess")}, 403),
        OTHER: (lambda w: {"data": {**sso_form(str(w["b"]["id"])), "resource_id": str(w["a"]["id"])}}, 403)}),
    ("GET", "/dashboard", "/dashboard", {
        NONE: (lambda w: {}, 401), WRONG: (lambda w: {"headers": {"Cookie": "session=forged.cookie.value"}}, 401),
        # a session names its own resource: another's browser sees only its own runs
        OTHER: (lambda w: {"browser": w["b_browser"]}, 200)}),
    ("GET", f"/dashboard/backups/{KEY}", "/dashboard/backups/<path:key>", {
        NONE: (lambda w: {}, 401), WRONG: (lambda w: {"headers": {"Cookie": "session=forged.cookie.value"}}, 401),
        # a session names its own resource: another's browser finds no such backup of its own
        OTHER: (lambda w: {"browser": w["b_browser"]}, 404)}),
    ("POST", "/dashboard/backups", "/dashboard/backups", {
        NONE: (lambda w: {"data": {"csrf": "x"}}, 401),
        WRONG: (lambda w: {"data": {"csrf": "x"}, "headers": {"Cookie": "session=forged.cookie.value"}}, 401),
        OTHER: (lambda w: {"data": {"csrf": "guess"}, "browser": w["b_browser"]}, 403)}),
    ("POST", "/dashboard/settings", "/dashboard/settings", {
        NONE: (lambda w: {"data": {"csrf": "x", "timezone": "Europe/Paris"}}, 401),
        WRONG: (lambda w: {"data": {"csrf": "x", "timezone": "Europe/Paris"},
                           "headers": {"Cookie": "session=forged.cookie.value"}}, 401),
        OTHER: (lambda w: {"data": {"csrf": "guess", "timezone": "Europe/Paris"}, "browser": w["b_browser"]}, 403)}),
]


def test_the_table_covers_every_route(heroku_app):
    rules = {(method, rule.rule) for rule in heroku_app.url_map.iter_rules() if rule.endpoint != "static"
             for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert rules == {(method, rule) for method, _, rule, _ in ROUTES}


@pytest.mark.parametrize("kind", [NONE, WRONG, OTHER])
@pytest.mark.parametrize("method,path,rule,cases", ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_every_route_rejects_missing_wrong_and_foreign_credentials(heroku_app, world, method, path, rule, cases,
                                                                    kind):
    make_kwargs, expected = cases[kind]
    kwargs = make_kwargs(world)
    client = kwargs.pop("browser", None) or heroku_app.test_client()
    url = path.format(a=world["a"]["id"], run_a=world["run_a"]["id"])
    answer = client.open(url, method=method, **kwargs)
    assert answer.status_code == expected, answer.data
    assert world["run_a"]["id"] not in answer.text
    if not path.startswith("/dashboard"):  # Heroku shows its user the `message` of a Partner API error
        assert answer.is_json and answer.json["message" if path.startswith("/heroku") else "error"]
    with connect(heroku_app.config["DATABASE_URL"]) as conn:
        assert conn.execute("select count(*) as n from runs").fetchone()["n"] == 2  # nothing was triggered
        assert conn.execute("select count(*) as n from resources where plan = 'byo' and deprovisioned_at is null"
                            " and timezone = 'UTC' and last_asked_at is null"
                            ).fetchone()["n"] == 2  # nothing was changed, asked for or removed
