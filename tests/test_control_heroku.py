"""The Add-on Partner API and SSO, against the id-service stand-in."""

from __future__ import annotations

import base64
import secrets
import time
import uuid

import pytest

from control import create_app, keys, tokens
from tests.controlplane import (ADDON_ID, ADDON_PASSWORD, CLIENT_SECRET, clock_pass, connect, provision_body, sso_form,
                                work)

BASIC = {"Authorization": "Basic " + base64.b64encode(f"{ADDON_ID}:{ADDON_PASSWORD}".encode()).decode()}


def _exchanges(heroku) -> list[dict]:
    return [r for r in heroku.requests if "grant_type=authorization_code" in r["body"]]


def _resource(app) -> dict:
    with connect(app.config["DATABASE_URL"]) as conn:
        return conn.execute("select * from resources").fetchone()


def test_provisioning_answers_at_once_and_the_clock_exchanges_the_grant(heroku_app, heroku):
    client = heroku_app.test_client()
    body = provision_body(heroku)
    answer = client.post("/heroku/resources", json=body, headers=BASIC)
    assert answer.status_code == 201, answer.json
    assert answer.json["id"] == body["uuid"]
    config = answer.json["config"]
    assert config["REMORA_API_URL"] == f"https://control.test/api/v1/resources/{body['uuid']}"
    assert heroku.requests == []  # nothing asked of Heroku inside Heroku's own request
    kept = _resource(heroku_app)
    assert tokens.unseal(heroku_app.config, kept["oauth_grant_code"]) == body["oauth_grant"]["code"]
    assert body["oauth_grant"]["code"].encode() not in bytes(kept["oauth_grant_code"])
    clock_pass(heroku_app)
    [exchange] = heroku.requests
    assert "grant_type=authorization_code" in exchange["body"] and f"client_secret={CLIENT_SECRET}" in exchange["body"]
    row = _resource(heroku_app)
    access = tokens.unseal(heroku_app.config, row["oauth_access_token"])
    assert access in heroku.access_tokens and access.encode() not in bytes(row["oauth_access_token"])
    assert row["oauth_grant_code"] is None and row["run_mode"] == "launched"
    assert (row["plan"], row["schedule"], row["app"]) == ("basic", "0 3 * * *", None)
    assert row["retention"] == "daily=7,weekly=4,monthly=12"  # a managed plan keeps the add-on's default policy
    listed = client.get(config["REMORA_API_URL"].removeprefix("https://control.test") + "/backups",
                        headers={"Authorization": f"Bearer {config['REMORA_API_TOKEN']}"})
    assert listed.status_code == 200 and listed.json["runs"] == []


def test_provisioning_twice_with_the_same_grant_exchanges_it_once(heroku_app, heroku):
    client = heroku_app.test_client()
    body = provision_body(heroku, schedule="30 2 * * *", timezone="Europe/Paris")
    first = client.post("/heroku/resources", json=body, headers=BASIC)
    clock_pass(heroku_app)
    again = client.post("/heroku/resources", json=body, headers=BASIC)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json == again.json
    heroku.add_addon(body["uuid"], "customer-helper")
    queued = client.post(f"/api/v1/resources/{body['uuid']}/backups",
                         headers={"Authorization": f"Bearer {first.json['config']['REMORA_API_TOKEN']}"})
    assert queued.status_code == 202, queued.json
    clock_pass(heroku_app)  # the worker launches it
    assert len(_exchanges(heroku)) == 1 and len(heroku.dynos) == 1
    with connect(heroku_app.config["DATABASE_URL"]) as conn:
        assert conn.execute("select count(*) as n, min(timezone) as tz from resources").fetchone() == \
            {"n": 1, "tz": "Europe/Paris"}


def test_a_launch_before_the_clock_exchanges_the_grant_itself_once(heroku_app, heroku):
    client = heroku_app.test_client()
    body = provision_body(heroku)
    answer = client.post("/heroku/resources", json=body, headers=BASIC).json
    heroku.add_addon(body["uuid"], "customer-helper")
    queued = client.post(f"/api/v1/resources/{body['uuid']}/backups",
                         headers={"Authorization": f"Bearer {answer['config']['REMORA_API_TOKEN']}"})
    assert queued.status_code == 202, queued.json
    assert work(heroku_app) == 1  # what a trigger's NOTIFY makes the worker do, before any clock pass
    assert len(_exchanges(heroku)) == 1 and len(heroku.dynos) == 1
    clock_pass(heroku_app)
    assert len(_exchanges(heroku)) == 1 and heroku.problems == []


def test_a_provision_without_a_grant_makes_a_pulled_resource(heroku_app, heroku):
    body = {**provision_body(heroku), "oauth_grant": None}
    answer = heroku_app.test_client().post("/heroku/resources", json=body, headers=BASIC)
    assert answer.status_code == 201, answer.json
    assert answer.json["message"].startswith("Remora's backups run when the helper app asks for them: add Heroku "
                                             "Scheduler to the helper app")  # what Heroku shows the customer
    clock_pass(heroku_app)
    row = _resource(heroku_app)
    assert (row["run_mode"], row["run_mode_reason"]) == ("pulled", "Heroku sent no authorization with the provision")
    assert heroku.requests == []


@pytest.mark.parametrize("spoil, reason", [
    (lambda grant: grant.update(code="not-a-grant"),
     "no Heroku authorization: the id service refused the authorization_code grant (HTTP 401)"),
    (lambda grant: grant.update(expires_at="2020-01-01T00:00:00Z"),
     "no Heroku authorization: Heroku's authorization expired before it could be exchanged"),
], ids=["refused", "expired"])
def test_a_grant_that_cannot_be_exchanged_leaves_the_resource_pulled(heroku_app, heroku, spoil, reason):
    body = provision_body(heroku)
    spoil(body["oauth_grant"])
    assert heroku_app.test_client().post("/heroku/resources", json=body, headers=BASIC).status_code == 201
    clock_pass(heroku_app)
    clock_pass(heroku_app)
    row = _resource(heroku_app)
    assert (row["run_mode"], row["run_mode_reason"], row["oauth_grant_code"]) == ("pulled", reason, None)
    assert len(_exchanges(heroku)) == (1 if "refused" in reason else 0)


@pytest.mark.parametrize("change, status, words", [
    (lambda body: body.update(options={"schedule": "every day"}), 422, "'every day' is not a cron expression"),
    (lambda body: body.update(options={"retention": "hourly=24"}), 422, "retention has 'hourly=24'"),
    (lambda body: body.update(options=["--schedule"]), 422, "options must be an object"),
    (lambda body: body.update(oauth_grant={"code": 12}), 400, "oauth_grant.code is missing or malformed"),
    (lambda body: body.update(uuid="nope"), 400, "uuid is required"),
], ids=["bad-schedule", "bad-retention", "options-not-an-object", "bad-grant", "bad-uuid"])
def test_a_bad_provision_is_answered_with_a_message_and_provisions_nothing(heroku_app, heroku, change, status,
                                                                           words):
    body = provision_body(heroku)
    change(body)
    refused = heroku_app.test_client().post("/heroku/resources", json=body, headers=BASIC)
    assert refused.status_code == status and words in refused.json["message"], refused.json
    clock_pass(heroku_app)
    with connect(heroku_app.config["DATABASE_URL"]) as conn:
        assert conn.execute("select count(*) as n from resources").fetchone()["n"] == 0
    assert heroku.requests == []


def test_plan_change_and_deprovision_are_idempotent_and_a_gone_resource_is_410(heroku_app, heroku):
    client = heroku_app.test_client()
    answer = client.post("/heroku/resources", json=provision_body(heroku), headers=BASIC).json
    path = f"/heroku/resources/{answer['id']}"
    assert client.put(path, json={"plan": "premium"}, headers=BASIC).status_code == 200
    assert client.put(path, json={"plan": "premium"}, headers=BASIC).status_code == 200
    assert client.delete(path, headers=BASIC).status_code == 204
    again = client.delete(path, headers=BASIC)
    assert again.status_code == 410 and again.json == {"message": "this add-on is already deprovisioned"}
    assert client.put(path, json={"plan": "basic"}, headers=BASIC).status_code == 410
    assert client.post("/heroku/resources", json={**provision_body(heroku), "uuid": answer["id"]},
                       headers=BASIC).status_code == 410
    assert client.delete(f"/heroku/resources/{uuid.uuid4()}", headers=BASIC).status_code == 410
    assert client.put(f"/heroku/resources/{uuid.uuid4()}", json={"plan": "basic"}, headers=BASIC).status_code == 404
    row = _resource(heroku_app)
    assert row["plan"] == "premium" and row["deprovisioned_at"] is not None
    assert row["oauth_grant_code"] is None and row["oauth_refresh_token"] is None and row["next_run_at"] is None
    assert [name for name, value in row.items() if isinstance(value, bytes) and name != "api_token_hash"] == []
    token = answer["config"]["REMORA_API_TOKEN"]
    assert client.get(f"/api/v1/resources/{answer['id']}/backups",
                      headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_a_provisioned_resource_launches_on_its_own_app(heroku_app, heroku):
    client = heroku_app.test_client()
    answer = client.post("/heroku/resources", json=provision_body(heroku), headers=BASIC).json
    heroku.add_addon(answer["id"], "customer-helper")
    run = client.post(f"/api/v1/resources/{answer['id']}/backups",
                      headers={"Authorization": f"Bearer {answer['config']['REMORA_API_TOKEN']}"})
    assert run.status_code == 202 and run.json["run"]["state"] == "queued", run.json
    assert work(heroku_app) == 1
    [dyno] = heroku.dynos.values()
    assert dyno["app"]["name"] == "customer-helper" and heroku.problems == []


def _provisioned(heroku_app, heroku) -> str:
    return heroku_app.test_client().post("/heroku/resources", json=provision_body(heroku), headers=BASIC).json["id"]


def test_sso_with_the_user_scoped_token_opens_the_dashboard_and_shows_who_signed_in(heroku_app, heroku):
    client = heroku_app.test_client()
    login = client.post("/heroku/sso", data=sso_form(_provisioned(heroku_app, heroku), email="ada@example.com"))
    assert login.status_code == 303 and login.headers["Location"] == "/dashboard"
    page = client.get("/dashboard")
    assert page.status_code == 200 and b"Back up now" in page.data and b"Signed in as ada@example.com" in page.data


def test_sso_with_only_the_sha1_token_opens_the_dashboard_without_an_email_it_did_not_sign(heroku_app, heroku):
    client = heroku_app.test_client()
    form = sso_form(_provisioned(heroku_app, heroku))
    del form["user_scoped_resource_token"]
    assert client.post("/heroku/sso", data=form).status_code == 303
    page = client.get("/dashboard")
    assert page.status_code == 200 and b"Back up now" in page.data and b"Signed in as" not in page.data


def _v1(rid: str) -> dict:
    """Heroku's retired v1 form: ``id`` and ``token``, with a token right by the v1 rule."""
    form = sso_form(rid)
    return {"id": rid, "token": form["resource_token"], "timestamp": form["timestamp"]}


@pytest.mark.parametrize("form", [
    lambda rid: sso_form(rid, timestamp=int(time.time()) - 600),
    lambda rid: sso_form(rid, timestamp=int(time.time()) + 600),
    lambda rid: sso_form(rid, salt="wrong-salt"),
    lambda rid: {**sso_form(rid), "email": "mallory@example.com"},  # the sha1 token still matches
    lambda rid: {**sso_form(rid), "timestamp": "soon"},
    lambda rid: sso_form(str(uuid.uuid4())),
    _v1,
], ids=["stale", "future", "wrong-token", "other-email", "bad-timestamp",
        "unknown-resource", "v1-form"])
def test_sso_refuses_stale_wrong_or_v1_forms(heroku_app, heroku, form):
    client = heroku_app.test_client()
    refused = client.post("/heroku/sso", data=form(_provisioned(heroku_app, heroku)))
    assert refused.status_code == 403
    assert client.get("/dashboard").status_code == 401


def test_an_sso_form_opens_one_session_only(heroku_app, heroku):
    client = heroku_app.test_client()
    resource_id = client.post("/heroku/resources", json=provision_body(heroku), headers=BASIC).json["id"]
    form = sso_form(resource_id)
    assert client.post("/heroku/sso", data=form).status_code == 303
    replayed = heroku_app.test_client()
    assert replayed.post("/heroku/sso", data=form).status_code == 403
    assert replayed.get("/dashboard").status_code == 401


def test_the_dashboard_cannot_be_framed_and_its_cookie_is_secure_and_short_lived(heroku_app, heroku, monkeypatch):
    client = heroku_app.test_client()
    resource_id = client.post("/heroku/resources", json=provision_body(heroku), headers=BASIC).json["id"]
    login = client.post("/heroku/sso", data=sso_form(resource_id))
    cookie = login.headers["Set-Cookie"]
    assert all(flag in cookie for flag in ("Secure", "HttpOnly", "SameSite=Lax")), cookie
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Strict-Transport-Security"].startswith("max-age=")
    # the same session signed an hour and a minute ago is refused
    signer = heroku_app.session_interface.get_signing_serializer(heroku_app)
    session = {"resource_id": resource_id, "csrf": "c"}
    monkeypatch.setattr(time, "time", lambda: REAL_TIME() - 3660)
    stale = signer.dumps(session)
    monkeypatch.setattr(time, "time", REAL_TIME)
    fresh = signer.dumps(session)
    for value, status in ((stale, 401), (fresh, 200)):
        browser = heroku_app.test_client()
        browser.set_cookie("session", value)
        assert browser.get("/dashboard").status_code == status


REAL_TIME = time.time


def test_a_timestamp_that_is_a_digit_but_no_number_is_refused(heroku_app, heroku):
    client = heroku_app.test_client()
    resource_id = client.post("/heroku/resources", json=provision_body(heroku), headers=BASIC).json["id"]
    assert client.post("/heroku/sso", data={**sso_form(resource_id), "timestamp": "²"}).status_code == 403


def test_the_v1_form_is_told_apart(heroku_app, heroku):
    refused = heroku_app.test_client().post("/heroku/sso", data=_v1(_provisioned(heroku_app, heroku)))
    assert "retired v1 sign-on" in refused.json["message"]


def test_a_kept_grant_is_sealed_again_by_rotate_keys(heroku_app, heroku):
    old, new = heroku_app.config["SECRET_KEY"], secrets.token_urlsafe(32)
    assert heroku_app.test_client().post("/heroku/resources", json=provision_body(heroku),
                                         headers=BASIC).status_code == 201
    rotating = create_app({**heroku_app.config, "SECRET_KEY": new, "SECRET_KEY_FALLBACKS": [old]})
    with rotating.extensions["remora.pool"].connection() as conn:
        assert keys.rotate(conn, rotating.config) == (1, [])
    rotating.extensions["remora.pool"].close()
    new_only = create_app({**heroku_app.config, "SECRET_KEY": new})
    clock_pass(new_only)
    new_only.extensions["remora.pool"].close()
    row = _resource(heroku_app)
    assert (row["oauth_grant_code"], row["run_mode"]) == (None, "launched") and len(_exchanges(heroku)) == 1
