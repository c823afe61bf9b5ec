"""End to end: remora-control (web and clock) with the local launcher makes a real backup on an HTTP trigger, to a
target of the customer's own or to the add-on's storage."""

from __future__ import annotations

import contextlib
import datetime
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from tests.controlplane import REPO, connect, control_argv, control_env, start_web
from tests.helpers import PG_BIN, base_env, dump_sql, libpq_env, ok, remora
from tests.procs import with_marker
from tests.servers.gpg import signing_env
from tests.servers.seaweed import PREFIX, storage_variables
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


def _resource(env: dict[str, str], *options: str) -> dict:
    """A resource made by `remora-control resource create` in a control database that `migrate` made."""
    migrated = ok(subprocess.run(control_argv("migrate"), env=env, cwd=REPO, capture_output=True, text=True))
    assert "applied 0001_initial" in migrated.stderr
    created = ok(subprocess.run(control_argv("resource", "create", "--app", "demo-helper", *options), env=env,
                                cwd=REPO, capture_output=True, text=True))
    return json.loads(created.stdout)


@contextlib.contextmanager
def _serving(web_env: dict[str, str], port: int) -> Iterator[list[str]]:
    """`remora-control web` and `clock` with ``web_env`` (the local launcher); their output once they stopped."""
    web = start_web(web_env, port)
    clock = subprocess.Popen(control_argv("clock"), env=web_env, cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    logs: list[str] = []
    try:
        yield logs
    finally:
        web.terminate()
        clock.terminate()
        logs.append(web.communicate(timeout=30)[0] + clock.communicate(timeout=30)[0])


def _trigger(backups: str, headers: dict) -> dict:
    answer = requests.post(backups, headers=headers, timeout=10)
    assert answer.status_code == 202, answer.text
    assert answer.json()["run"]["state"] == "queued"  # the clock launches it
    return answer.json()["run"]


def test_trigger_over_http_makes_a_real_backup(pg_cluster, database_env, gpg_env, s3_target_env, s3_server,
                                               s3_bucket):
    env = control_env(pg_cluster.url(pg_cluster.create_database(sample=False)))
    resource = _resource(env)
    port = free_port()
    web_env = {**env, **database_env, "REMORA_GPG_PUBLIC_KEYS": gpg_env["REMORA_GPG_PUBLIC_KEYS"],
               **s3_target_env, "PORT": str(port), "REMORA_LAUNCHER": "local",
               "REMORA_CONTROL_URL": f"http://127.0.0.1:{port}"}
    with _serving(web_env, port) as logs:
        backups = f"http://127.0.0.1:{port}/api/v1/resources/{resource['id']}/backups"
        headers = {"Authorization": f"Bearer {resource['api_token']}"}
        triggered = _trigger(backups, headers)
        run = _wait_for_end(backups, headers)
    [log] = logs
    assert run["state"] == "succeeded", log
    assert run["id"] == triggered["id"]
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket, Prefix=PREFIX)["Contents"]]
    [manifest_key] = [k for k in keys if k.endswith(".manifest.json")]
    manifest = json.loads(s3_server.client().get_object(Bucket=s3_bucket, Key=manifest_key)["Body"].read())
    assert run["backup"] == {"id": manifest["id"], "sha256": manifest["sha256"],
                             "dump_bytes": manifest["dump_bytes"], "encrypted_bytes": manifest["encrypted_bytes"]}
    assert run["bytes"] == manifest["encrypted_bytes"]
    assert "backup complete" in log  # the runner's own log went there too, so the next line means something
    assert resource["api_token"] not in log


def _runner_of(run_id: str, timeout: float = 60) -> tuple[bytes, bytes]:
    """The environment and argv of the running runner of ``run_id``, read from /proc while it runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in with_marker(f"REMORA_RUN_ID={run_id}"):
            proc = Path("/proc") / str(pid)
            with contextlib.suppress(OSError):
                return (proc / "environ").read_bytes(), (proc / "cmdline").read_bytes()
        time.sleep(0.005)
    raise AssertionError(f"no runner of run {run_id} was seen running")


def test_a_managed_run_holds_no_storage_secret_and_the_customer_restores_it(
        pg_cluster, database, database_env, gpg_key, signing_key, s3_server, storage_config, tmp_path):
    env = control_env(pg_cluster.url(pg_cluster.create_database(sample=False)))
    resource = _resource(env, "--plan", "standard")
    port = free_port()
    storage = storage_variables(storage_config)
    api = {"REMORA_API_URL": f"http://127.0.0.1:{port}/api/v1/resources/{resource['id']}",
           "REMORA_API_TOKEN": resource["api_token"]}
    # the helper app's config vars (no target of its own) beside the control plane's, as the local launcher passes them
    web_env = {**env, **storage, **database_env, "REMORA_GPG_PUBLIC_KEYS": gpg_key.public, **signing_env(signing_key),
               **api, "PORT": str(port), "REMORA_LAUNCHER": "local", "REMORA_CONTROL_URL": f"http://127.0.0.1:{port}"}
    with _serving(web_env, port) as logs:
        backups = f"{api['REMORA_API_URL']}/backups"
        headers = {"Authorization": f"Bearer {resource['api_token']}"}
        environ, argv = _runner_of(_trigger(backups, headers)["id"])
        run = _wait_for_end(backups, headers)

        assert run["state"] == "succeeded", run
        for name in ("REMORA_STORAGE_ACCESS_KEY_ID", "REMORA_STORAGE_SECRET_ACCESS_KEY", "REMORA_STORAGE_URL"):
            assert storage[name].encode() not in argv + environ, name
        assert not [v for v in environ.split(b"\0") if v.startswith(b"REMORA_STORAGE_")]
        assert api["REMORA_API_TOKEN"].encode() in environ, "the run holds the helper app's API token"
        bucket, prefix = storage_config["STORAGE_URL"].removeprefix("s3://").split("/", 1)
        admin = s3_server.client()
        keys = [o["Key"] for o in admin.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]
        assert sorted(k.rsplit(".", 2)[-2] + "." + k.rsplit(".", 1)[-1] for k in keys) == ["dump.gpg", "manifest.json"]
        assert all(k.startswith(f"{prefix}/{resource['id']}/{database}/") for k in keys)
        taken = datetime.datetime.fromisoformat(run["created_at"])
        for key in keys:  # locked a day from the backup, against everyone
            head = admin.head_object(Bucket=bucket, Key=key)
            assert head["ObjectLockMode"] == "COMPLIANCE"
            assert head["ObjectLockRetainUntilDate"] >= taken + datetime.timedelta(days=1)
        with connect(env["DATABASE_URL"]) as conn:
            committed = conn.execute("select committed_at, sha256 from runs").fetchone()
        assert committed["committed_at"] is not None and committed["sha256"] == run["backup"]["sha256"]

        # the customer's side: the add-on's URL and token, and the private key, nothing of the storage's
        customer = {**api, "REMORA_GPG_PRIVATE_KEY": gpg_key.private, "REMORA_GPG_SIGNERS": signing_key.public}
        checked = ok(remora("check", env={**database_env, **customer, **signing_env(signing_key),
                                           "REMORA_GPG_PUBLIC_KEYS": gpg_key.public}))
        assert "target      ok    the add-on's storage: 2 objects" in checked.stdout
        restored = pg_cluster.create_database(sample=False)
        ok(remora("restore", "latest", "--to", "TO_URL", env={**customer, "TO_URL": pg_cluster.url(restored)}))
        [archive] = [k.split(f"{resource['id']}/", 1)[1] for k in keys if k.endswith(".dump.gpg")]
        link = requests.get(f"{api['REMORA_API_URL']}/storage/objects/{archive}", headers=headers, timeout=10).json()
        (tmp_path / "backup.dump.gpg").write_bytes(requests.get(link["url"], timeout=30).content)
    [log] = logs
    assert storage["REMORA_STORAGE_SECRET_ACCESS_KEY"] not in log
    by_hand = pg_cluster.create_database(sample=False)
    _plain_restore(gpg_key, signing_key, tmp_path / "backup.dump.gpg", pg_cluster, by_hand)
    source = dump_sql(pg_cluster.url(database))
    assert dump_sql(pg_cluster.url(restored)) == source
    assert dump_sql(pg_cluster.url(by_hand)) == source


def _plain_restore(gpg_key, signing_key, archive: Path, cluster, dbname: str) -> None:
    """``gpg --decrypt FILE | pg_restore``, as a customer does with nothing of this project; the signature checked."""
    gpg_key.gpg("--import", input=signing_key.public.encode()).check_returncode()  # the signer's public key
    gpg = subprocess.Popen(["gpg", "--homedir", str(gpg_key.home), "--batch", "--decrypt", str(archive)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pg_restore = subprocess.run([str(PG_BIN / "pg_restore"), "--no-owner", "--no-acl", "--exit-on-error",
                                 "--dbname", dbname], stdin=gpg.stdout,
                                env={**base_env(), **libpq_env(cluster.url(dbname))}, capture_output=True, text=True)
    gpg.stdout.close()
    said = gpg.stderr.read().decode()
    assert gpg.wait() == 0, said
    assert 'Good signature from "Acme backup signer' in said, said
    assert pg_restore.returncode == 0, pg_restore.stderr
