"""Settings a customer changes after provisioning: through the API and `remora-control resource update`,
checked as provisioning checks them, and used by the clock's next pass. (The dashboard's form is in
test_control_dashboard.py.)"""

from __future__ import annotations

import base64
import datetime
import json
import subprocess

import pytest

from tests.controlplane import (ADDON_ID, ADDON_PASSWORD, REPO, clock_pass, connect, control_argv, control_env,
                                make_resource, provision_body)

BASIC = {"Authorization": "Basic " + base64.b64encode(f"{ADDON_ID}:{ADDON_PASSWORD}".encode()).decode()}
UTC = datetime.timezone.utc


def _auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _when(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_the_api_changes_the_settings_and_the_clock_uses_them_at_its_next_pass(app, client, launcher, control_db):
    resource, token = make_resource(app, schedule="0 3 * * *")
    path = f"/api/v1/resources/{resource['id']}"
    changed = client.patch(path, json={"schedule": "17 * * * *", "timezone": "Asia/Kolkata",
                                       "retention": "monthly=24, daily=14"}, headers=_auth(token))
    assert changed.status_code == 200, changed.json
    view = changed.json["resource"]
    assert (view["schedule"], view["timezone"], view["alert_webhook"], view["retention"]) == (
        "17 * * * *", "Asia/Kolkata", None, "daily=14,monthly=24")  # the policy as prune writes it
    following = _when(view["next_run_at"])
    now = datetime.datetime.now(UTC)
    assert now < following <= now + datetime.timedelta(hours=1) and following.minute == 47  # :17 in UTC+05:30
    assert client.get(path, headers=_auth(token)).json["resource"] == view

    with connect(control_db) as conn:  # that time comes
        conn.execute("update resources set next_run_at = now() - interval '1 minute'")
    clock_pass(app)
    assert len(launcher.specs) == 1
    moved = _when(client.get(path, headers=_auth(token)).json["resource"]["next_run_at"])
    assert moved > now and moved.minute == 47  # the new schedule's next time, not 03:00

    with connect(control_db) as conn:  # due again, when the webhook changes: that time must not be skipped
        due = conn.execute("update resources set next_run_at = now() - interval '1 minute' returning next_run_at"
                           ).fetchone()["next_run_at"]
    webhook = client.patch(path, json={"alert_webhook": "https://93.184.216.34/hooks/secret"}, headers=_auth(token))
    assert webhook.json["resource"]["alert_webhook"] == "https://93.184.216.34/…"  # the path may hold a secret
    assert _when(webhook.json["resource"]["next_run_at"]) == due
    cleared = client.patch(path, json={"schedule": None, "alert_webhook": None}, headers=_auth(token)).json["resource"]
    assert (cleared["schedule"], cleared["next_run_at"], cleared["alert_webhook"]) == (None, None, None)


# values every way of setting them refuses, with provisioning's words
REFUSED = [{"schedule": "0 3 * * * *"}, {"schedule": "*/30 * * * *"}, {"schedule": "every day"},
           {"timezone": "Mars/Olympus_Mons"}, {"alert_webhook": "https://127.0.0.1/hook"},
           {"alert_webhook": "http://93.184.216.34/hook"}, {"retention": "hourly=24"}]


@pytest.mark.parametrize("bad", REFUSED, ids=lambda bad: "-".join(f"{k}={v}" for k, v in bad.items()))
def test_a_value_provisioning_refuses_is_refused_by_the_api_and_the_command_with_the_same_words(
        heroku_app, heroku, control_db, bad):
    client = heroku_app.test_client()
    provisioning = client.post("/heroku/resources", json=provision_body(heroku, **bad), headers=BASIC)
    assert provisioning.status_code == 422
    words = provisioning.json["message"]
    answer = client.post("/heroku/resources", json=provision_body(heroku), headers=BASIC).json
    path, token = f"/api/v1/resources/{answer['id']}", answer["config"]["REMORA_API_TOKEN"]
    refused = client.patch(path, json=bad, headers=_auth(token))
    assert (refused.status_code, refused.json["error"]) == (422, words)
    argv = ["resource", "update", answer["id"]]
    for name, value in bad.items():
        argv += [f"--{name.replace('_', '-')}", value]
    command = subprocess.run(control_argv(*argv), env=control_env(control_db), cwd=REPO, capture_output=True,
                             text=True, timeout=60)
    assert (command.returncode, command.stderr.strip()) == (2, f"remora-control: {words}")
    unchanged = client.get(path, headers=_auth(token)).json["resource"]
    assert (unchanged["schedule"], unchanged["timezone"], unchanged["alert_webhook"], unchanged["retention"]) == (
        "0 3 * * *", "UTC", None, "daily=7,weekly=4,monthly=12")
    assert heroku.requests == []


def test_an_empty_or_malformed_change_is_refused(client, app):
    resource, token = make_resource(app)
    path = f"/api/v1/resources/{resource['id']}"
    assert client.patch(path, json={}, headers=_auth(token)).json["error"].startswith("name an option to change")
    assert client.patch(path, data=b"[1]", headers=_auth(token)).status_code == 400
    assert client.patch(path, json={"timezone": 3}, headers=_auth(token)).status_code == 422


def test_the_command_changes_a_resource_and_says_what_it_is_now(app, control_db):
    resource, _ = make_resource(app, schedule="0 3 * * *")
    env = control_env(control_db)
    changed = subprocess.run(control_argv("resource", "update", str(resource["id"]), "--schedule", "30 2 * * *",
                                          "--timezone", "Europe/Paris"),
                             env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert changed.returncode == 0, changed.stderr
    view = json.loads(changed.stdout)
    assert (view["schedule"], view["timezone"], view["run_mode"]) == ("30 2 * * *", "Europe/Paris", "launched")
    on_demand = subprocess.run(control_argv("resource", "update", str(resource["id"]), "--no-schedule"), env=env,
                               cwd=REPO, capture_output=True, text=True, timeout=60)
    assert json.loads(on_demand.stdout)["next_run_at"] is None
    unknown = subprocess.run(control_argv("resource", "update", "6f1c1a4e-0b7c-4d2a-9a55-3c3d2b1e0f00", "--no-schedule"),
                             env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert (unknown.returncode, unknown.stderr.strip()) == (
        2, "remora-control: no resource 6f1c1a4e-0b7c-4d2a-9a55-3c3d2b1e0f00")
