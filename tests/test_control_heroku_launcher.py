"""The heroku launcher against the Platform API stand-in: every request valid by the official schema."""

from __future__ import annotations

import datetime
import json
import re

import pytest
import requests

from control import oauth, tokens
from control.launchers import GONE, RUNNING, LaunchError, LaunchSpec, LaunchUnconfirmed
from control.launchers.heroku import HerokuLauncher
from control.oauth import HerokuAccess
from tests.controlplane import CLIENT_SECRET, connect, make_resource, work
from tests.servers.heroku import PARTNER_SUBSET, SCHEMA


def _authorized_resource(app, heroku, **kwargs) -> tuple[dict, str]:
    """A resource holding Heroku tokens got from a grant, as provisioning leaves it."""
    resource, api_token = make_resource(app, **kwargs)
    grant = oauth.exchange(app.config, grant_type="authorization_code", code=heroku.grant(CLIENT_SECRET)["code"])
    with app.extensions["remora.pool"].connection() as conn:
        oauth.store(conn, app.config, resource["id"], grant)
    return resource, api_token


def _launcher(app, heroku) -> HerokuLauncher:
    return HerokuLauncher(heroku.api_url, HerokuAccess(app.extensions["remora.pool"], app.config),
                          backoff=0.01, rate_limit_wait=0.02)


def _spec(resource, *, app="helper-app") -> LaunchSpec:
    return LaunchSpec(run_id="0b9c2a9e-1111-4222-8333-444455556666", resource_id=str(resource["id"]), app=app,
                      control_url="https://control.test", time_to_live=3600, run_token="rt-" + "x" * 40)


def test_a_triggered_run_starts_a_detached_one_off_dyno(heroku_app, heroku):
    resource, api_token = _authorized_resource(heroku_app, heroku)
    answer = heroku_app.test_client().post(f"/api/v1/resources/{resource['id']}/backups",
                                           headers={"Authorization": f"Bearer {api_token}"})
    assert answer.status_code == 202 and answer.json["run"]["state"] == "queued", answer.json
    assert heroku.platform_requests() == []  # nothing is launched on the request's path
    assert work(heroku_app) == 1
    [create] = heroku.platform_requests()
    assert create["path"] == "/apps/helper-app/dynos"
    assert create["headers"]["Accept"] == "application/vnd.heroku+json; version=3"
    assert create["headers"]["Authorization"].removeprefix("Bearer ") in heroku.access_tokens
    body = json.loads(create["body"])
    assert {k: v for k, v in body.items() if k != "env"} == {
        "command": "bin/remora-backup backup", "attach": False, "type": "run",
        "time_to_live": heroku_app.config["RUN_TTL"]}
    assert body["env"]["REMORA_RUN_ID"] == answer.json["run"]["id"]
    assert body["env"]["REMORA_CONTROL_URL"] == "https://control.test" and len(body["env"]["REMORA_RUN_TOKEN"]) > 40
    assert heroku.problems == []
    with connect(heroku_app.config["DATABASE_URL"]) as conn:
        handle = conn.execute("select handle from runs").fetchone()["handle"]
    assert handle in heroku.dynos


def _headers(heroku) -> dict:
    token = heroku.issue_tokens(CLIENT_SECRET)["access_token"]
    return {"Accept": "application/vnd.heroku+json; version=3", "Authorization": f"Bearer {token}"}


def test_the_standin_rejects_what_the_schema_forbids(heroku):
    answer = requests.post(f"{heroku.api_url}/apps/x/dynos", json={"command": "x", "time_to_life": 1},
                           headers=_headers(heroku))
    assert answer.status_code == 422
    assert heroku.problems == ["(body): Additional properties are not allowed ('time_to_life' was unexpected)"]


def test_a_partner_token_is_refused_everywhere_outside_the_platform_api_for_partners(heroku):
    heroku.partner_only = True
    headers, refused, allowed = _headers(heroku), set(), set()
    for name, definition in SCHEMA["definitions"].items():
        for link in definition.get("links", []):
            path = re.sub(r"\{\(.*?\)\}", "01234567-89ab-cdef-0123-456789abcdef", link["href"])
            answer = requests.request(link["method"], heroku.api_url + path, headers=headers, json={}, timeout=5)
            (refused if answer.status_code == 403 else allowed).add((name, link["title"]))
    every = {(name, link["title"]) for name, definition in SCHEMA["definitions"].items()
             for link in definition.get("links", [])}
    assert allowed == PARTNER_SUBSET and refused == every - PARTNER_SUBSET
    assert {("dyno", "Create"), ("dyno", "Info"), ("formation", "Update"), ("config-var", "Update")} <= refused


def test_rate_limits_and_conflicts_are_retried_where_heroku_cannot_have_acted(heroku_app, heroku):
    resource, _ = _authorized_resource(heroku_app, heroku)
    heroku.answer_first((429, {"RateLimit-Remaining": "0"}), (409, {}))
    handle = _launcher(heroku_app, heroku).launch(_spec(resource))
    assert handle in heroku.dynos
    assert len(heroku.platform_requests()) == 3 and heroku.problems == []


def test_a_server_error_on_a_dyno_create_is_not_retried_but_unconfirmed(heroku_app, heroku):
    resource, _ = _authorized_resource(heroku_app, heroku)
    heroku.answer_first((503, {}))
    with pytest.raises(LaunchUnconfirmed, match=r"HTTP 503 scripted: scripted 503: the dyno may have started"):
        _launcher(heroku_app, heroku).launch(_spec(resource))
    assert len(heroku.platform_requests()) == 1


def test_the_launcher_gives_up_with_a_clear_error(heroku_app, heroku):
    resource, _ = _authorized_resource(heroku_app, heroku)
    heroku.answer_first(*[(429, {})] * 5)
    with pytest.raises(LaunchError, match=r"HTTP 429 scripted: scripted 429 \(gave up after 5 attempts\)") as raised:
        _launcher(heroku_app, heroku).launch(_spec(resource))
    assert not isinstance(raised.value, LaunchUnconfirmed)  # a 429 is Heroku saying it did nothing
    heroku.answer_first((403, {}))
    with pytest.raises(LaunchError, match="refused POST /apps/helper-app/dynos: HTTP 403"):
        _launcher(heroku_app, heroku).launch(_spec(resource))
    assert len(heroku.platform_requests()) == 6


def test_an_expiring_token_is_refreshed_and_kept_encrypted(heroku_app, heroku, control_db):
    resource, _ = _authorized_resource(heroku_app, heroku)
    with connect(control_db) as conn:
        conn.execute("update resources set oauth_expires_at = now() + interval '1 minute'")
    _launcher(heroku_app, heroku).launch(_spec(resource))
    refresh = [r for r in heroku.requests if r["path"] == "/oauth/token"][-1]
    assert "grant_type=refresh_token" in refresh["body"] and f"client_secret={CLIENT_SECRET}" in refresh["body"]
    used = heroku.requests[-1]["headers"]["Authorization"].removeprefix("Bearer ")
    with connect(control_db) as conn:
        row = conn.execute("select * from resources").fetchone()
    assert row["oauth_expires_at"] > datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    assert used.encode() not in bytes(row["oauth_access_token"]) and heroku.problems == []


def test_a_refresh_answered_without_a_refresh_token_keeps_the_old_one(heroku_app, heroku, control_db):
    resource, _ = _authorized_resource(heroku_app, heroku)
    heroku.refresh_keeps_refresh_token = True
    with connect(control_db) as conn:
        old = tokens.unseal(heroku_app.config, conn.execute("select oauth_refresh_token from resources").fetchone()[
            "oauth_refresh_token"])
    launcher = _launcher(heroku_app, heroku)
    for _ in range(2):  # the second refresh uses the refresh token the first one kept
        with connect(control_db) as conn:
            conn.execute("update resources set oauth_expires_at = now() + interval '1 minute'")
        launcher.launch(_spec(resource))
    with connect(control_db) as conn:
        row = conn.execute("select * from resources").fetchone()
    assert tokens.unseal(heroku_app.config, row["oauth_refresh_token"]) == old
    assert len([r for r in heroku.requests if "grant_type=refresh_token" in r["body"]]) == 2
    assert len(heroku.dynos) == 2 and heroku.problems == []


def test_the_app_is_found_from_the_addon_and_dynos_are_watched(heroku_app, heroku):
    resource, _ = _authorized_resource(heroku_app, heroku)
    heroku.add_addon(str(resource["id"]), "customer-helper")
    launcher = _launcher(heroku_app, heroku)
    handle = launcher.launch(_spec(resource, app=None))
    lookup, create = heroku.platform_requests()
    assert lookup["method"] == "GET" and lookup["path"] == f"/addons/{resource['id']}"
    assert create["path"] == f"/apps/{heroku.app_ids['customer-helper']}/dynos"
    assert heroku.dynos[handle]["app"]["name"] == "customer-helper"
    watch = {"resource_id": str(resource["id"]), "app": None}
    assert launcher.state(**watch, handle=handle) == RUNNING
    heroku.dynos[handle]["state"] = "crashed"
    assert launcher.state(**watch, handle=handle) == GONE
    assert launcher.state(**watch, handle="6a3f0d84-0000-4000-8000-000000000000") == GONE
    assert heroku.problems == []
