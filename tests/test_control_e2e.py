"""End to end: remora-control (web and clock) with the local launcher makes a real backup on an HTTP trigger."""

from __future__ import annotations

import json
import subprocess
import time

import requests

from tests.controlplane import REPO, control_argv, control_env, start_web
from tests.helpers import ok
from tests.servers.seaweed import PREFIX
from tests.servers.util import free_port

WAIT = 90  # seconds for the whole backup


def _wait_for_end(url: str, headers: dict) -> dict:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        listed = requests.get(url, headers=headers, timeout=5).json()["runs"]
        if listed and listed[0]["state"] not in ("queued", "launched", "running"):
            return listed[0]
        time.sleep(0.3)
    raise AssertionError(f"the run did not end within {WAIT}s: {listed}")


def test_trigger_over_http_makes_a_real_backup(pg_cluster, database_env, gpg_env, s3_target_env, s3_server,
                                               s3_bucket):
    env = control_env(pg_cluster.url(pg_cluster.create_database(sample=False)))
    migrated = ok(subprocess.run(control_argv("migrate"), env=env, cwd=REPO, capture_output=True, text=True))
    assert "applied 0001_initial" in migrated.stderr
    created = ok(subprocess.run(control_argv("resource", "create", "--app", "demo-helper"), env=env, cwd=REPO,
                                capture_output=True, text=True))
    resource = json.loads(created.stdout)
    port = free_port()
    web_env = {**env, **database_env, "REMORA_GPG_PUBLIC_KEYS": gpg_env["REMORA_GPG_PUBLIC_KEYS"],
               **s3_target_env, "PORT": str(port), "REMORA_LAUNCHER": "local",
               "REMORA_CONTROL_URL": f"http://127.0.0.1:{port}"}
    web = start_web(web_env, port)
    clock = subprocess.Popen(control_argv("clock"), env=web_env, cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        backups = f"http://127.0.0.1:{port}/api/v1/resources/{resource['id']}/backups"
        headers = {"Authorization": f"Bearer {resource['api_token']}"}
        answer = requests.post(backups, headers=headers, timeout=10)
        assert answer.status_code == 202, answer.text
        assert answer.json()["run"]["state"] == "queued"  # the clock launches it
        run = _wait_for_end(backups, headers)
    finally:
        web.terminate()
        clock.terminate()
        log = web.communicate(timeout=30)[0] + clock.communicate(timeout=30)[0]
    assert run["state"] == "succeeded", log
    assert run["id"] == answer.json()["run"]["id"]
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket, Prefix=PREFIX)["Contents"]]
    [manifest_key] = [k for k in keys if k.endswith(".manifest.json")]
    manifest = json.loads(s3_server.client().get_object(Bucket=s3_bucket, Key=manifest_key)["Body"].read())
    assert run["backup"] == {"id": manifest["id"], "sha256": manifest["sha256"],
                             "dump_bytes": manifest["dump_bytes"], "encrypted_bytes": manifest["encrypted_bytes"]}
    assert run["bytes"] == manifest["encrypted_bytes"]
    assert "backup complete" in log  # the runner's own log went there too, so the next line means something
    assert resource["api_token"] not in log
