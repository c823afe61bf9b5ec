"""Silence is an alarm: runs that never report become lost, and missing backups call the webhook once."""

from __future__ import annotations

from control.launchers import RUNNING
from tests.controlplane import clock_pass, connect, make_resource, work
from tests.receiver import receiver

SHA = "cd" * 32


def _trigger(client, app, launcher, resource, token) -> dict:
    """A run triggered and launched."""
    run = client.post(f"/api/v1/resources/{resource['id']}/backups",
                      headers={"Authorization": f"Bearer {token}"}).json["run"]
    work(app, launcher)
    return run


def _succeed(client, run_id: str, run_token: str) -> None:
    answer = client.post(f"/api/v1/runs/{run_id}/events", headers={"Authorization": f"Bearer {run_token}"},
                         json={"type": "succeeded", "backup_id": "20260101T000000Z-abcdef", "dump_bytes": 1,
                               "encrypted_bytes": 2, "sha256": SHA})
    assert answer.status_code == 200, answer.json


def _age(url: str, run_id: str, seconds: int) -> None:
    with connect(url) as conn:
        conn.execute("update runs set created_at = now() - make_interval(secs => %s) where id = %s", (seconds, run_id))


def test_a_run_that_never_reports_becomes_lost_and_the_webhook_fires_once(app, client, launcher, control_db):
    with receiver() as webhook:
        resource, token = make_resource(app, alert_webhook=webhook.url + "/hook")
        other, other_token = make_resource(app)
        silent = _trigger(client, app, launcher, resource, token)
        late = _trigger(client, app, launcher, other, other_token)
        _age(control_db, silent["id"], app.config["RUN_TTL"] + app.config["LOST_GRACE"] + 1)
        _age(control_db, late["id"], app.config["RUN_TTL"])  # late, but within the grace
        clock_pass(app, times=3)
        with connect(control_db) as conn:
            states = {r["id"]: (r["state"], r["error"])
                      for r in conn.execute("select id::text as id, state, error from runs")}
        assert states[silent["id"]] == ("lost", "no report within its time to live; its process is gone")
        assert states[late["id"]] == ("launched", None)
        assert launcher.asked == ["recorded-1"]
        [alarm] = webhook.requests
        assert alarm["path"] == "/hook" and alarm["body"]["event"] == "backups.missing"
        assert alarm["body"]["resource_id"] == str(resource["id"]) and silent["id"] in alarm["body"]["reason"]

        again = _trigger(client, app, launcher, resource, token)  # the lost run is no longer active
        _succeed(client, again["id"], launcher.specs[2].run_token)
        clock_pass(app, times=2)
    assert [body["event"] for body in webhook.bodies()] == ["backups.missing", "backups.recovered"]


def test_a_process_still_running_past_its_time_is_lost_too(app, client, launcher, control_db):
    resource, token = make_resource(app)
    run = _trigger(client, app, launcher, resource, token)
    launcher.states["recorded-1"] = RUNNING
    _age(control_db, run["id"], app.config["RUN_TTL"] + app.config["LOST_GRACE"] + 1)
    clock_pass(app)
    with connect(control_db) as conn:
        row = conn.execute("select state, error from runs").fetchone()
        opened = conn.execute("select alert_open from resources").fetchone()["alert_open"]
    assert row == {"state": "lost",
                   "error": "no report within its time to live; its process still runs past its time to live"}
    assert opened  # an incident even without a webhook: the dashboard and the next webhook see it


def test_no_success_within_the_window_alerts_once_and_an_unreachable_webhook_is_told_later(app, launcher,
                                                                                          control_db):
    with receiver() as webhook:
        make_resource(app, schedule="0 * * * *", alert_webhook=webhook.url)
        with connect(control_db) as conn:
            conn.execute("update resources set created_at = now() - interval '2 days'")
        webhook.status = 500
        clock_pass(app)
        with connect(control_db) as conn:
            delivery = conn.execute("select * from webhook_deliveries").fetchone()
            assert (delivery["attempts"], delivery["last_error"]) == (1, "answered HTTP 500")
            conn.execute("update webhook_deliveries set next_attempt_at = now()")  # its retry comes due
        webhook.status = 200
        clock_pass(app, times=3)
    assert [body["event"] for body in webhook.bodies()] == ["backups.missing", "backups.missing"]
    assert "no successful backup in" in webhook.bodies()[-1]["reason"]
