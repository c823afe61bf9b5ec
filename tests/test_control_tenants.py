"""No tenant can stop another's backups: the control plane as it runs, against hostile tenants.

`remora-control web` (gunicorn, two sync workers) and `remora-control clock` processes on a
PostgreSQL database of their own, launching dynos through the Platform API stand-in, with tenants
provisioned through the Partner API. Each test starts from a plane where no earlier tenant is
active any more.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import dataclasses
import json
import select
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet

from control import runs
from tests.controlplane import (ADDON_ID, ADDON_PASSWORD, CLIENT_SECRET, SSO_SALT, connect, control_argv,
                               control_env, migrated_database, provision_body, start_web)
from tests.helpers import REPO, ok, remora, target_folder
from tests.receiver import dripping
from tests.servers.heroku import HerokuStandIn, running_standin
from tests.servers.util import free_port

WEBHOOK_TIMEOUT = 2  # seconds: the clock's webhook deadline here
WAIT = 30  # seconds for anything that should happen at once


@dataclasses.dataclass
class Plane:
    url: str
    db: str
    env: dict[str, str]
    heroku: HerokuStandIn
    web: subprocess.Popen

    def provision(self, **options) -> tuple[uuid.UUID, str]:
        """A new tenant, provisioned as Heroku does it; its id and API token."""
        body = provision_body(self.heroku, **options)
        self.heroku.add_addon(body["uuid"], "app-" + body["uuid"][:8])
        answer = requests.post(f"{self.url}/heroku/resources", json=body, auth=(ADDON_ID, ADDON_PASSWORD), timeout=WAIT)
        assert answer.status_code == 201, answer.text
        return uuid.UUID(body["uuid"]), answer.json()["config"]["REMORA_API_TOKEN"]

    def call(self, method: str, path: str, token: str, **kwargs) -> requests.Response:
        return requests.request(method, self.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=WAIT,
                                **kwargs)

    def clock(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(control_argv("clock", *args), env=self.env, cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def dynos_of(self, resource_id) -> list[dict]:
        """The dyno creates the stand-in was sent for this resource's runs (their bodies)."""
        with connect(self.db) as conn:
            ids = {str(r["id"]) for r in conn.execute("select id from runs where resource_id = %s", (resource_id,))}
        bodies = [json.loads(r["body"]) for r in self.heroku.platform_requests()
                  if r["method"] == "POST" and r["path"].endswith("/dynos")]
        return [body for body in bodies if body["env"]["REMORA_RUN_ID"] in ids]


@pytest.fixture(scope="module")
def plane(pg_cluster, control_template) -> Iterator[Plane]:
    url = migrated_database(pg_cluster, control_template)
    port = free_port()
    with running_standin() as heroku:
        env = {**control_env(url), "REMORA_LAUNCHER": "heroku", "REMORA_ENV": "development",
               "REMORA_CONTROL_URL": f"http://127.0.0.1:{port}", "REMORA_WEBHOOK_TIMEOUT": str(WEBHOOK_TIMEOUT),
               "HEROKU_API_URL": heroku.api_url, "HEROKU_ID_URL": heroku.id_url, "HEROKU_ADDON_ID": ADDON_ID,
               "HEROKU_ADDON_PASSWORD": ADDON_PASSWORD, "HEROKU_SSO_SALT": SSO_SALT,
               "HEROKU_OAUTH_CLIENT_SECRET": CLIENT_SECRET}
        web = start_web(env, port, workers=2)
        try:
            yield Plane(url=f"http://127.0.0.1:{port}", db=url, env=env, heroku=heroku, web=web)
        finally:
            web.send_signal(signal.SIGINT)  # gunicorn's quick shutdown
            web.communicate(timeout=WAIT)


@pytest.fixture
def tenants(plane) -> Plane:
    """The plane with every earlier tenant deprovisioned and its runs and deliveries ended."""
    with connect(plane.db) as conn:
        conn.execute("update runs set state = 'failed', finished_at = now() where state = any(%s)", (list(runs.ACTIVE),))
        conn.execute("update resources set deprovisioned_at = now(), next_run_at = null, alert_open = false")
        conn.execute("update webhook_deliveries set next_attempt_at = null")
    plane.heroku.held.set()
    return plane


def _run_of(plane: Plane, resource_id) -> dict:
    with connect(plane.db) as conn:
        [run] = conn.execute("select * from runs where resource_id = %s", (resource_id,)).fetchall()
    return run


def test_a_schedule_that_raises_stops_no_one_else_and_its_owner_sees_why(tenants):
    poisoned, poisoned_token = tenants.provision()
    healthy, _ = tenants.provision()
    overdue, _ = tenants.provision(schedule="0 * * * *")
    unreadable, _ = tenants.provision()
    dormant, _ = tenants.provision()  # not due, but its window is asked for: it raises there too
    stranger = Fernet(Fernet.generate_key()).encrypt(b"sealed with a key this control plane does not hold")
    with connect(tenants.db) as conn:
        # as a legacy value in its row: the 7-field cron that stopped every clock pass
        conn.execute("update resources set schedule = '36 8 30 11 * 0 2026', next_run_at = now() - interval '1 minute'"
                     " where id = %s", (poisoned,))
        conn.execute("update resources set next_run_at = now() - interval '1 minute' where id = %s", (healthy,))
        conn.execute("update resources set created_at = now() - interval '2 days' where id = %s", (overdue,))
        conn.execute("update resources set schedule = '0 0 31 4 *' where id = %s", (dormant,))
        conn.execute("update resources set oauth_access_token = %s, oauth_refresh_token = %s where id = %s",
                     (stranger, stranger, unreadable))
        conn.execute("insert into runs (id, resource_id, trigger, state, time_to_live, handle, created_at, claimed_at,"
                     " launched_at) values (gen_random_uuid(), %s, 'api', 'launched', 60, 'a-dyno', now() - interval"
                     " '1 day', now() - interval '1 day', now() - interval '1 day')", (unreadable,))
    clock = tenants.clock("--once")
    log = clock.communicate(timeout=60)[0]
    assert clock.returncode == 0, log

    assert [d["command"] for d in tenants.dynos_of(healthy)] == ["bin/remora-backup backup"]
    assert _run_of(tenants, healthy)["state"] == "launched"
    assert _run_of(tenants, unreadable)["state"] == "lost"  # swept, though its Heroku tokens cannot be read
    with connect(tenants.db) as conn:
        incidents = {row["id"]: row for row in conn.execute("select * from resources where alert_open")}
    assert {poisoned, overdue, unreadable, dormant} <= set(incidents)
    assert "its schedule '0 0 31 4 *' cannot be used" in incidents[dormant]["alert_reason"]
    assert f"resource {poisoned}" in log
    listed = tenants.call("GET", f"/api/v1/resources/{poisoned}/backups", poisoned_token).json()["runs"]
    assert [(r["state"], r["trigger"]) for r in listed] == [("failed", "schedule")]
    assert "the schedule '36 8 30 11 * 0 2026' cannot be used" in listed[0]["error"]
    assert "cannot be used" in incidents[poisoned]["alert_reason"] and incidents[poisoned]["next_run_at"] is None


# croniter takes each of these; the clock could not live with any
UNUSABLE = {"36 8 30 11 * 0 2026": "five fields", "0 3 * * * *": "five fields",
            "0 0 31 4 *": "cannot be used (CroniterBadDateError", "*/30 * * * *": "fires 30 minutes apart"}


def test_unusable_schedules_are_refused_before_the_grant_is_spent_and_at_resource_create(tenants):
    for schedule, why in UNUSABLE.items():
        asked = len(tenants.heroku.requests)
        answer = requests.post(f"{tenants.url}/heroku/resources", json=provision_body(tenants.heroku, schedule=schedule),
                               auth=(ADDON_ID, ADDON_PASSWORD), timeout=WAIT)
        assert answer.status_code == 422 and why in answer.json()["message"], answer.text
        assert len(tenants.heroku.requests) == asked, "the OAuth grant was exchanged"
        created = subprocess.run(control_argv("resource", "create", "--app", "shop", "--schedule", schedule),
                                 env=tenants.env, cwd=REPO, capture_output=True, text=True, timeout=WAIT)
        assert (created.returncode, created.stdout) == (2, "") and why in created.stderr


def test_a_dripping_webhook_costs_the_clock_its_deadline_and_holds_no_lock(tenants):
    with dripping() as drip:
        watched, watched_token = tenants.provision(schedule="0 * * * *", alert_webhook=drip.url)
        other, _ = tenants.provision()
        with connect(tenants.db) as conn:
            conn.execute("update resources set created_at = now() - interval '2 days' where id = %s", (watched,))
            conn.execute("update resources set next_run_at = now() - interval '1 minute' where id = %s", (other,))
        clock = tenants.clock("--once")
        try:
            assert drip.connected.wait(WAIT), "the webhook was never called"
            # while the webhook drips: the other tenant's run is out, and nothing of the watched one is locked
            assert len(tenants.dynos_of(other)) == 1
            with connect(tenants.db) as conn:
                conn.execute("select 1 from resources where id = %s for update nowait", (watched,))
                conn.execute("select 1 from webhook_deliveries where resource_id = %s for update nowait", (watched,))
            assert tenants.call("POST", f"/api/v1/resources/{watched}/backups", watched_token).status_code == 202
            log = clock.communicate(timeout=WAIT)[0]
        finally:
            clock.kill()
        assert clock.returncode == 0, log
        assert drip.dropped.wait(WAIT), "the clock waited for the whole drip"
    with connect(tenants.db) as conn:
        delivery = conn.execute("select * from webhook_deliveries where resource_id = %s", (watched,)).fetchone()
    assert (delivery["attempts"], delivery["last_error"]) == (1, f"no answer within {WEBHOOK_TIMEOUT} s")
    assert delivery["next_attempt_at"] is not None  # to be tried again later


def test_triggers_are_answered_while_the_launcher_is_stuck_and_make_one_run(tenants):
    first, first_token = tenants.provision()
    second, second_token = tenants.provision()
    tenants.heroku.held.clear()  # every dyno create hangs until this is set
    clock = tenants.clock()
    try:
        queued = tenants.call("POST", f"/api/v1/resources/{first}/backups", first_token)
        assert queued.status_code == 202 and queued.json()["run"]["state"] == "queued"
        assert tenants.heroku.holding.wait(WAIT), "the worker did not take the run"
        assert _run_of(tenants, first)["launched_at"] is None  # the answer came first: the launch still hangs
        # the launcher is stuck in the Platform API: the web answers all the same
        again = tenants.call("POST", f"/api/v1/resources/{first}/backups", first_token)
        assert again.status_code == 200 and again.json()["run"]["id"] == queued.json()["run"]["id"]
        with concurrent.futures.ThreadPoolExecutor(8) as threads:
            answers = list(threads.map(lambda _: tenants.call("POST", f"/api/v1/resources/{second}/backups",
                                                                second_token), range(8)))
        assert sorted(a.status_code for a in answers) == [200] * 7 + [202]
        assert len({a.json()["run"]["id"] for a in answers}) == 1
        assert _run_of(tenants, second)["launched_at"] is None
        assert tenants.call("GET", f"/api/v1/resources/{second}/backups", second_token).status_code == 200
        tenants.heroku.held.set()
        _until(lambda: _run_of(tenants, first)["state"] == _run_of(tenants, second)["state"] == "launched")
    finally:
        tenants.heroku.held.set()
        clock.terminate()
        clock.communicate(timeout=WAIT)
    assert len(tenants.dynos_of(first)) == len(tenants.dynos_of(second)) == 1


def _until(condition, *, wait: float = WAIT) -> None:
    deadline = time.monotonic() + wait
    while not condition():
        assert time.monotonic() < deadline, "not within the wait"
        time.sleep(0.05)


def test_a_lost_dyno_answer_starts_one_backup_and_a_second_process_does_not_dump(tenants, database_env, gpg_env,
                                                                                 file_target_env):
    resource, token = tenants.provision()
    tenants.heroku.lose_answers = 1
    assert tenants.call("POST", f"/api/v1/resources/{resource}/backups", token).status_code == 202
    clock = tenants.clock("--once")
    log = clock.communicate(timeout=60)[0]
    assert clock.returncode == 0, log
    [dyno] = tenants.dynos_of(resource)  # not created again
    run = _run_of(tenants, resource)
    assert (run["state"], run["handle"], run["error"]) == ("launched", None, None)  # waiting for its process

    env = {**database_env, **gpg_env, **file_target_env, **dyno["env"]}
    first = ok(remora("backup", env=env))
    second = ok(remora("backup", env=env))  # a second dyno of the same run
    assert "another process of this run has started it" in second.stderr
    assert len(list(target_folder(file_target_env).rglob("*.manifest.json"))) == 1
    run = _run_of(tenants, resource)
    assert (run["state"], run["backup_id"]) == ("succeeded", first.stdout.strip())


MANIFEST = "shop/2026/11/30/20261130T010000Z-abcdef.manifest.json"


# every route, with credentials that get its body read if it reads one: (method, rule, path, headers, reads JSON)
def _routes(resource_id, api_token: str, run_id, run_token: str) -> list[tuple[str, str, str, dict, bool]]:
    api = {"Authorization": f"Bearer {api_token}"}
    basic = {"Authorization": "Basic " + base64.b64encode(f"{ADDON_ID}:{ADDON_PASSWORD}".encode()).decode()}
    backups = "/api/v1/resources/<uuid:resource_id>/backups"
    return [
        ("POST", backups, f"/api/v1/resources/{resource_id}/backups", api, False),
        ("GET", backups, f"/api/v1/resources/{resource_id}/backups", api, False),
        ("GET", backups + "/<backup_id>", f"/api/v1/resources/{resource_id}/backups/20261127T214800Z-3f9a2c", api,
         False),
        ("GET", "/api/v1/resources/<uuid:resource_id>", f"/api/v1/resources/{resource_id}", api, False),
        ("PATCH", "/api/v1/resources/<uuid:resource_id>", f"/api/v1/resources/{resource_id}", api, True),
        ("POST", "/api/v1/resources/<uuid:resource_id>/runs/claim", f"/api/v1/resources/{resource_id}/runs/claim",
         api, False),
        ("GET", "/api/v1/runs/<uuid:run_id>", f"/api/v1/runs/{run_id}", api, False),
        ("POST", "/api/v1/runs/<uuid:run_id>/events", f"/api/v1/runs/{run_id}/events",
         {"Authorization": f"Bearer {run_token}"}, True),
        *[(method, f"/api/v1/runs/<uuid:run_id>/storage/{rule}", f"/api/v1/runs/{run_id}/storage/{path}",
           {"Authorization": f"Bearer {run_token}"}, reads_json) for method, rule, path, reads_json in (
            ("POST", "uploads", "uploads", True),
            ("POST", "uploads/<uuid:upload>/parts/<int:number>", f"uploads/{uuid.uuid4()}/parts/1", True),
            ("POST", "uploads/<uuid:upload>/complete", f"uploads/{uuid.uuid4()}/complete", True),
            ("DELETE", "uploads/<uuid:upload>", f"uploads/{uuid.uuid4()}", False),
            ("PUT", "objects/<path:key>", f"objects/{MANIFEST}", False))],
        ("GET", "/api/v1/resources/<uuid:resource_id>/storage/objects",
         f"/api/v1/resources/{resource_id}/storage/objects", api, False),
        ("GET", "/api/v1/resources/<uuid:resource_id>/storage/objects/<path:key>",
         f"/api/v1/resources/{resource_id}/storage/objects/{MANIFEST}", api, False),
        ("GET", "/dashboard/backups/<path:key>", f"/dashboard/backups/{MANIFEST}", {}, False),
        ("POST", "/heroku/resources", "/heroku/resources", basic, True),
        ("PUT", "/heroku/resources/<uuid:resource_id>", f"/heroku/resources/{resource_id}", basic, True),
        ("DELETE", "/heroku/resources/<uuid:resource_id>", f"/heroku/resources/{uuid.uuid4()}", basic, False),
        ("POST", "/heroku/sso", "/heroku/sso", {}, False),
        ("GET", "/dashboard", "/dashboard", {}, False),
        ("POST", "/dashboard/backups", "/dashboard/backups", {}, False),
        ("POST", "/dashboard/settings", "/dashboard/settings", {}, False),
    ]


MB = 1024 * 1024


def test_the_body_table_covers_every_route(heroku_app):
    rules = {(method, rule.rule) for rule in heroku_app.url_map.iter_rules() if rule.endpoint != "static"
             for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert rules == {(method, rule) for method, rule, *_ in _routes("r", "t", "u", "v")}


def test_huge_and_deep_bodies_are_refused_without_the_workers_growing(tenants):
    resource, token = tenants.provision()
    run_id, run_token = _claimed_run(tenants, resource, token)
    routes = _routes(resource, token, run_id, run_token)
    huge, deep, deeper = b"[{}," * (30 * MB // 4), b"[" * 60_000, b"[" * 200_000
    for method, _, path, headers, _ in routes:  # each path runs once with a body it refuses, small
        _exchange(tenants.url, method, path, headers, b"[{}," * 30_000)
        _exchange(tenants.url, method, path, headers, deep)
    before = _peaks(tenants.web.pid)
    for method, _, path, headers, reads_json in routes:
        assert _exchange(tenants.url, method, path, headers, huge)[0] == 413, (method, path)
        assert _exchange(tenants.url, method, path, headers, deeper)[0] == 413, (method, path)
        status, answer = _exchange(tenants.url, method, path, headers, huge, chunked=True)  # no length said
        assert status == 413 if reads_json else status < 500, (method, path, status, answer[:300])
        status, answer = _exchange(tenants.url, method, path, headers, deep)
        assert status == 400 and b"not JSON" in answer if reads_json else status < 500, (method, path, answer[:300])
    after = _peaks(tenants.web.pid)
    assert before.keys() == after.keys() and len(after) == 2
    for pid, peak in after.items():
        assert peak - before[pid] < 4 * MB, f"worker {pid} grew from {before[pid] / MB:.1f} to {peak / MB:.1f} MiB"


def _claimed_run(plane: Plane, resource_id, api_token: str) -> tuple[str, str]:
    """A run of the resource, claimed as a worker claims it: its id and token (it is not launched)."""
    plane.call("POST", f"/api/v1/resources/{resource_id}/backups", api_token)
    with connect(plane.db) as conn:
        [(run, token)] = runs.claim(conn, limit=1, resource_id=resource_id)
    return str(run["id"]), token


def _peaks(master: int) -> dict[int, int]:
    """Each gunicorn worker's peak resident memory so far (VmHWM), in bytes."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    peaks = {}
    for pid in map(int, children):
        status = Path(f"/proc/{pid}/status").read_text()
        peaks[pid] = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024
    return peaks


def _exchange(base: str, method: str, path: str, headers: dict, body: bytes, *, chunked: bool = False
              ) -> tuple[int, bytes]:
    """Send ``body`` until the server answers (it need not read it all); the status and the answer."""
    port = int(base.rsplit(":", 1)[1])
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{framing}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "Connection: close\r\n\r\n").encode()
    pieces = [body[start:start + 64 * 1024] for start in range(0, len(body), 64 * 1024)]
    if chunked:
        pieces = [b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces] + [b"0\r\n\r\n"]
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(head)
        with contextlib.suppress(OSError):  # the server closes as soon as it has answered
            for piece in pieces:
                if select.select([sock], [], [], 0)[0]:
                    break  # answered: what is left is not wanted
                sock.sendall(piece)
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
    status_line = answer.partition(b"\r\n")[0].split()
    assert len(status_line) >= 2, f"{method} {path}: no answer ({answer[:100]!r})"
    return int(status_line[1]), answer


def test_gunicorn_refuses_long_request_lines_and_too_many_headers(tenants):
    long_line = requests.get(f"{tenants.url}/api/v1/runs/{'x' * 3000}", timeout=WAIT)
    many = requests.get(f"{tenants.url}/dashboard", headers={f"X-H{n}": "x" for n in range(60)}, timeout=WAIT)
    assert (long_line.status_code, many.status_code) == (414, 431)
