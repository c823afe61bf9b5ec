"""The v1 API and the runner's events: runs move through their states, tokens stay in their lanes."""

from __future__ import annotations

import concurrent.futures
import datetime
import subprocess
import threading

import pytest

from control import create_app, db, runs, settings
from control.launchers import LaunchError
from tests.controlplane import REPO, connect, control_argv, make_resource, work
from tests.helpers import base_env

SHA = "ab" * 32


def _auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _trigger(client, resource, token) -> dict:
    answer = client.post(f"/api/v1/resources/{resource['id']}/backups", headers=_auth(token))
    assert answer.status_code == 202, answer.json
    return answer.json["run"]


def _launched(client, app, launcher, resource, token) -> dict:
    """A run triggered, then launched by the worker."""
    run = _trigger(client, resource, token)
    work(app, launcher)
    return run


def test_create_app_refuses_without_a_secret_key(control_db):
    with pytest.raises(settings.ConfigError, match="REMORA_SECRET_KEY is not set"):
        create_app({"DATABASE_URL": control_db})
    result = subprocess.run(control_argv("migrate"), env={**base_env(), "DATABASE_URL": control_db}, cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 2 and "REMORA_SECRET_KEY is not set" in result.stderr


def test_migrations_apply_once_even_when_two_run_at_once(pg_cluster):
    url = pg_cluster.url(pg_cluster.create_database(sample=False))
    applied = []
    threads = [threading.Thread(target=lambda: applied.append(db.migrate(url))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(applied) == [[], [version for version, _ in db.migrations()]]
    assert db.migrate(url) == []


def test_a_trigger_queues_a_run_that_the_worker_launches_with_its_own_token(client, app, launcher):
    resource, token = make_resource(app)
    run = _trigger(client, resource, token)
    assert run["state"] == "queued" and run["trigger"] == "api" and launcher.specs == []
    assert work(app, launcher) == 1
    [spec] = launcher.specs
    assert spec.run_id == run["id"] and spec.app == "helper-app" and spec.time_to_live == app.config["RUN_TTL"]
    assert spec.env()["REMORA_CONTROL_URL"] == "https://control.test"
    assert spec.run_token not in repr(spec) and len(spec.run_token) >= 40
    shown = client.get(f"/api/v1/runs/{run['id']}", headers=_auth(token))
    assert shown.json["run"]["id"] == run["id"] and shown.json["run"]["state"] == "launched"
    assert work(app, launcher) == 0 and len(launcher.specs) == 1  # launched once


def test_events_move_a_run_to_succeeded_then_its_token_is_refused(client, app, launcher):
    resource, token = make_resource(app)
    run = _launched(client, app, launcher, resource, token)
    events = f"/api/v1/runs/{run['id']}/events"
    run_auth = _auth(launcher.specs[0].run_token)
    assert client.post(events, json={"type": "started"}, headers=run_auth).json["run"]["state"] == "running"
    assert client.post(events, json={"type": "progress", "bytes": 1234}, headers=run_auth).json["run"]["bytes"] == 1234
    assert client.post(events, json={"type": "progress", "bytes": -1}, headers=run_auth).status_code == 400
    assert client.post(events, json={"type": "succeeded", "sha256": "nope"}, headers=run_auth).status_code == 400
    done = client.post(events, headers=run_auth, json={
        "type": "succeeded", "backup_id": "20261127T214800Z-3f9a2c", "dump_bytes": 10, "encrypted_bytes": 20,
        "sha256": SHA})
    assert done.json["run"]["state"] == "succeeded"
    assert done.json["run"]["backup"] == {"id": "20261127T214800Z-3f9a2c", "dump_bytes": 10,
                                          "encrypted_bytes": 20, "sha256": SHA}
    late = client.post(events, json={"type": "failed", "exit_code": 4, "error": "x"}, headers=run_auth)
    assert late.status_code == 403 and "ended" in late.json["error"]


def test_a_failure_event_records_exit_code_and_error(client, app, launcher):
    resource, token = make_resource(app)
    run = _launched(client, app, launcher, resource, token)
    failed = client.post(f"/api/v1/runs/{run['id']}/events", headers=_auth(launcher.specs[0].run_token),
                         json={"type": "failed", "exit_code": 4, "error": "pg_dump failed (exit 1): boom"})
    assert failed.json["run"]["state"] == "failed"
    assert (failed.json["run"]["exit_code"], failed.json["run"]["error"]) == (4, "pg_dump failed (exit 1): boom")


def test_a_run_token_expires_with_the_run(client, app, launcher, control_db):
    resource, token = make_resource(app)
    run = _launched(client, app, launcher, resource, token)
    with connect(control_db) as conn:
        conn.execute("update runs set created_at = now() - interval '1 day' where id = %s", (run["id"],))
    late = client.post(f"/api/v1/runs/{run['id']}/events", json={"type": "started"},
                       headers=_auth(launcher.specs[0].run_token))
    assert late.status_code == 403


def test_a_launch_that_fails_marks_the_run_failed(client, app, launcher):
    def refuse(spec):
        raise LaunchError("the app has no such process type")

    launcher.launch = refuse
    resource, token = make_resource(app)
    run = _launched(client, app, launcher, resource, token)
    run = client.get(f"/api/v1/runs/{run['id']}", headers=_auth(token)).json["run"]
    assert run["state"] == "failed" and run["error"] == "launch failed: the app has no such process type"


def test_backups_are_listed_newest_first_in_pages(client, app, control_db):
    resource, token = make_resource(app)
    ids = []
    for _ in range(5):
        ids.append(_trigger(client, resource, token)["id"])
        with connect(control_db) as conn:  # it ends, so the next trigger queues another
            conn.execute("update runs set state = 'failed' where id = %s", (ids[-1],))
    with connect(control_db) as conn:  # distinct times, in the order they were made
        for age, run_id in enumerate(reversed(ids)):
            conn.execute("update runs set created_at = %s where id = %s",
                         (datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
                          - datetime.timedelta(minutes=age), run_id))
    url = f"/api/v1/resources/{resource['id']}/backups"
    first = client.get(url + "?per_page=2", headers=_auth(token)).json
    last = client.get(url + "?per_page=2&page=3", headers=_auth(token)).json
    assert [r["id"] for r in first["runs"]] == ids[::-1][:2] and first["next_page"] == 2
    assert [r["id"] for r in last["runs"]] == ids[:1] and last["next_page"] is None
    assert client.get(url + "?per_page=0", headers=_auth(token)).status_code == 400


def test_a_body_is_read_only_once_the_run_token_is_good(client, app, launcher):
    resource, token = make_resource(app)
    run = _launched(client, app, launcher, resource, token)
    events = f"/api/v1/runs/{run['id']}/events"
    deep = b"[" * 60_000
    assert client.post(events, data=deep, headers=_auth("x" * 43)).status_code == 401
    assert client.post(events, data=deep, headers=_auth(launcher.specs[0].run_token)).status_code == 400


def test_two_triggers_in_the_same_moment_queue_one_run(app, control_db):
    """Both see no active run, both insert: the second waits for the first, then queues nothing."""
    resource, _ = make_resource(app)
    with connect(control_db) as first, connect(control_db) as second:
        first.execute("begin")
        second.execute("begin")
        assert runs.active(first, resource["id"]) is None and runs.active(second, resource["id"]) is None
        assert runs.enqueue(first, resource["id"], trigger="api", time_to_live=60) is not None
        with concurrent.futures.ThreadPoolExecutor(1) as thread:
            blocked = thread.submit(runs.enqueue, second, resource["id"], trigger="api", time_to_live=60)
            first.execute("commit")
            assert blocked.result(timeout=30) is None
        second.execute("commit")
    with connect(control_db) as conn:
        assert conn.execute("select count(*) as n from runs").fetchone()["n"] == 1


def test_a_backup_is_looked_up_by_its_id_for_the_runner(client, app, launcher):
    resource, token = make_resource(app)
    _, other_token = make_resource(app)
    run = _launched(client, app, launcher, resource, token)
    backup = {"id": "20261127T214800Z-3f9a2c", "dump_bytes": 10, "encrypted_bytes": 20, "sha256": SHA}
    client.post(f"/api/v1/runs/{run['id']}/events", headers=_auth(launcher.specs[0].run_token),
                json={"type": "succeeded", "backup_id": backup["id"], **{k: v for k, v in backup.items() if k != "id"}})
    url = f"/api/v1/resources/{resource['id']}/backups"
    found = client.get(f"{url}/{backup['id']}", headers=_auth(token))
    assert found.status_code == 200 and found.json["run"]["id"] == run["id"] and found.json["run"]["backup"] == backup
    missing = client.get(f"{url}/20261127T214800Z-000000", headers=_auth(token))
    assert missing.status_code == 404 and "no run of this resource reported" in missing.json["error"]
    assert client.get(f"{url}/{backup['id']}", headers=_auth(other_token)).status_code == 404  # not theirs
    assert client.get(f"{url}/{backup['id']}").status_code == 401
    assert client.get(f"{url}/not%20an%20id", headers=_auth(token)).status_code == 400
