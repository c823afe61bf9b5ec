"""REMORA_SECRET_KEY: strong or refused, never a way from one customer's token to another's, and rotatable."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import subprocess

import pytest

from control import create_app, deliveries, settings, tokens
from tests.controlplane import (ADDON_ID, ADDON_PASSWORD, REPO, SECRET_KEY, connect, control_argv, control_env,
                               migrated_database, provision_body, sso_form, work)
from tests.receiver import receiver

BASIC = {"Authorization": "Basic " + base64.b64encode(f"{ADDON_ID}:{ADDON_PASSWORD}".encode()).decode()}


@pytest.mark.parametrize("key, why", [
    ("passwordpassword", "holds 96 bits"),
    ("passwordpassword" * 4, "repeats itself"),
    ("k" * 64, "repeats itself"),
    ("0123456789abcdef" * 4, "repeats itself"),
    (secrets.token_hex(16), "holds 128 bits"),
    ("release-test-" + "k" * 32, "is not hex or base64"),
    ("correct horse battery staple and more", "is not hex or base64"),
])
def test_a_weak_secret_key_is_refused_with_how_to_make_one(key, why):
    assert why in settings.key_weakness(key)
    with pytest.raises(settings.ConfigError, match=rf"REMORA_SECRET_KEY {why}.*secrets.token_urlsafe\(32\)"):
        create_app({"SECRET_KEY": key, "DATABASE_URL": "postgresql://unused"})


@pytest.mark.parametrize("make", [lambda: secrets.token_urlsafe(32), lambda: secrets.token_hex(32),
                                  lambda: base64.b64encode(os.urandom(32)).decode(), lambda: secrets.token_urlsafe(64)],
                         ids=["token_urlsafe", "token_hex", "openssl-base64", "longer"])
def test_keys_as_the_guides_make_them_are_taken(make):
    for _ in range(200):
        assert settings.key_weakness(make()) is None


def test_the_web_server_does_not_start_with_a_weak_key(control_db):
    env = {**control_env(control_db), "REMORA_SECRET_KEY": "passwordpassword", "PORT": "1"}
    result = subprocess.run(control_argv("web"), env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "REMORA_SECRET_KEY holds 96 bits" in result.stderr and "secrets.token_urlsafe(32)" in result.stderr
    assert "passwordpassword" not in result.stderr


def test_one_customers_token_and_id_say_nothing_of_anothers(heroku_app, heroku, pg_cluster, control_template):
    client = heroku_app.test_client()
    bodies = [provision_body(heroku), provision_body(heroku)]
    answers = [client.post("/heroku/resources", json=body, headers=BASIC).json for body in bodies]
    issued = [answer["config"]["REMORA_API_TOKEN"] for answer in answers]
    for body, token in zip(bodies, issued):
        derived = hmac.new(SECRET_KEY.encode(), f"api-token:{body['uuid']}".encode(), hashlib.sha256).digest()
        assert token != base64.urlsafe_b64encode(derived).rstrip(b"=").decode()  # what tokens used to be
    # the same add-on provisioned again elsewhere, with the same key, gets another token: the key and the
    # id do not make it
    other = create_app({**heroku_app.config, "DATABASE_URL": migrated_database(pg_cluster, control_template)})
    body = {**bodies[0], "oauth_grant": heroku.grant(heroku_app.config["HEROKU_OAUTH_CLIENT_SECRET"])}
    elsewhere = other.test_client().post("/heroku/resources", json=body, headers=BASIC).json
    other.extensions["remora.pool"].close()
    assert elsewhere["config"]["REMORA_API_TOKEN"] not in issued
    # what is stored opens nothing without the key: a hash, and a sealed copy for a repeated provision
    with connect(heroku_app.config["DATABASE_URL"]) as conn:
        rows = conn.execute("select api_token_hash, api_token_sealed from resources order by created_at").fetchall()
    for row, token in zip(rows, issued):
        assert bytes(row["api_token_hash"]) == hashlib.sha256(token.encode()).digest()
        assert token.encode() not in bytes(row["api_token_sealed"])
    again = client.post("/heroku/resources", json=bodies[0], headers=BASIC)
    assert (again.status_code, again.json["config"]["REMORA_API_TOKEN"]) == (200, issued[0])


def test_rotating_the_key_keeps_every_stored_secret_usable(heroku_app, heroku, control_db):
    old, new = heroku_app.config["SECRET_KEY"], secrets.token_urlsafe(32)
    development = {**heroku_app.config, "ENV": "development"}  # the webhook is a server on this machine
    with receiver() as webhook:
        app = create_app(development)
        body = provision_body(heroku, alert_webhook=webhook.url + "/hook")
        heroku.add_addon(body["uuid"], "helper")
        browser = app.test_client()
        token = browser.post("/heroku/resources", json=body, headers=BASIC).json["config"]["REMORA_API_TOKEN"]
        assert browser.post("/heroku/sso", data=sso_form(body["uuid"])).status_code == 303
        app.extensions["remora.pool"].close()

        rotating = create_app({**development, "SECRET_KEY": new, "SECRET_KEY_FALLBACKS": [old]})
        _use_everything(rotating, body["uuid"], token)  # the old key still opens what it sealed
        signed_in = rotating.test_client()
        signed_in.set_cookie("session", browser.get_cookie("session").value)
        assert signed_in.get("/dashboard").status_code == 200  # and a session it signed stays open
        rotating.extensions["remora.pool"].close()
        env = {**control_env(control_db), "REMORA_SECRET_KEY": new}
        refused = subprocess.run(control_argv("rotate-keys"), env=env, cwd=REPO, capture_output=True, text=True,
                                 timeout=60)
        assert refused.returncode == 1 and body["uuid"] in refused.stderr  # without the old key, nothing opens
        rotated = subprocess.run(control_argv("rotate-keys"), env={**env, "REMORA_PREVIOUS_SECRET_KEYS": old},
                                 cwd=REPO, capture_output=True, text=True, timeout=60)
        assert rotated.returncode == 0, rotated.stderr

        new_only = create_app({**development, "SECRET_KEY": new})
        _use_everything(new_only, body["uuid"], token)
        new_only.extensions["remora.pool"].close()
    assert [r["body"]["event"] for r in webhook.requests] == ["backups.missing", "backups.missing"]
    assert len(heroku.dynos) == 2 and heroku.problems == []


def _use_everything(app, resource_id: str, api_token: str) -> None:
    """A repeated provision answers the same token; a run launches (OAuth tokens); the webhook is told."""
    client = app.test_client()
    again = client.post("/heroku/resources", json={"uuid": resource_id, "oauth_grant": {"code": "spent"}},
                        headers=BASIC)
    assert (again.status_code, again.json["config"]["REMORA_API_TOKEN"]) == (200, api_token)
    auth = {"Authorization": f"Bearer {api_token}"}
    assert client.post(f"/api/v1/resources/{resource_id}/backups", headers=auth).status_code == 202
    assert work(app) == 1
    run = client.get(f"/api/v1/resources/{resource_id}/backups", headers=auth).json["runs"][0]
    assert run["state"] == "launched", run
    with connect(app.config["DATABASE_URL"]) as conn:
        conn.execute("update runs set state = 'failed' where resource_id = %s", (resource_id,))
        conn.execute("insert into webhook_deliveries (resource_id, body) values (%s, '{\"event\": \"backups.missing\"}')",
                     (resource_id,))
    assert deliveries.deliver(app.extensions["remora.pool"], app.config) == 1
    assert tokens.unseal(app.config, _sealed_webhook(app, resource_id)).endswith("/hook")


def _sealed_webhook(app, resource_id) -> bytes:
    with connect(app.config["DATABASE_URL"]) as conn:
        return conn.execute("select alert_webhook_sealed from resources where id = %s", (resource_id,)).fetchone()[
            "alert_webhook_sealed"]
