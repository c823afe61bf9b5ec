"""Fault injection: every fault of tests/faults/table.py, against every target it applies to,
ends in exactly one of the two outcomes tests/faults/harness.py allows."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.controlplane import clock_pass
from tests.faults.harness import MIB, FaultRun, Stored, assert_outcome
from tests.faults.proxy import FaultProxy, Refuse
from tests.faults.table import ATTEMPTS, FAULTS, Fault
from tests.helpers import REPO, target_folder
from tests.managed import SMALL_PARTS
from tests.servers.postgres import add_blob_table
from tests.servers.sshd import running_sshd, sftp_env

# fast retries and a short patience, so that the suite stays quick; a row may change them
RUNNER_ENV = {
    "REMORA_RETRY_ATTEMPTS": str(ATTEMPTS),
    "REMORA_RETRY_BACKOFF_MAX": "0.2",
    "REMORA_STORAGE_TIMEOUT": "10",
}


@pytest.fixture(scope="session")
def medium_database(pg_cluster) -> str:
    """The sample schema and 12 MiB of incompressible bytes: an archive of two SFTP parts, three S3 parts."""
    name = pg_cluster.create_database()
    add_blob_table(pg_cluster, name, 12)
    return name


CASES = [pytest.param(fault, target, id=f"{fault.name}-{target}") for fault in FAULTS for target in fault.targets]


@pytest.mark.parametrize("fault, target", CASES)
def test_fault(fault: Fault, target: str, request, pg_cluster, gpg_env):
    database = request.getfixturevalue(f"{fault.database}_database")
    with _TARGETS[target](request, fault) as (target_env, proxy, stored, uploading, helpers):
        env = {"REMORA_DATABASE_URL": pg_cluster.reader_url(database), **gpg_env, **target_env, **RUNNER_ENV}
        run = FaultRun(
            target=target,
            env={**env, **fault.env},
            check_env=env,
            cluster=pg_cluster,
            database=database,
            proxy=proxy,
            stored=stored,
            uploading=uploading,
            helpers=helpers,
        )
        assert_outcome(run, fault.inject(run), fault.outcome)


@contextlib.contextmanager
def _file(request, fault: Fault):
    env = request.getfixturevalue("file_target_env")
    folder = target_folder(env)
    yield env, None, lambda: _files(folder), lambda: _temp_bytes(folder) >= MIB, {}


@contextlib.contextmanager
def _sftp(request, fault: Fault):
    server = request.getfixturevalue("sshd_server")
    tmp_path = request.getfixturevalue("tmp_path")
    folder = server.root / uuid.uuid4().hex[:12]
    folder.mkdir()
    with FaultProxy(server.port, opens_with=b"SSH-") as proxy, contextlib.ExitStack() as impostors:
        env = sftp_env(server, folder)
        env["REMORA_TARGET_URL"] = f"sftp://{server.user}@127.0.0.1:{proxy.port}{folder}"
        env["REMORA_SFTP_KNOWN_HOSTS"] = f"[127.0.0.1]:{proxy.port} " + server.known_hosts_line.split(" ", 1)[1]

        def make_impostor() -> int:
            return impostors.enter_context(running_sshd(tmp_path / f"impostor-{uuid.uuid4().hex[:6]}")).port

        yield env, proxy, lambda: _files(folder), lambda: _temp_bytes(folder) >= MIB, {"impostor": make_impostor}


@contextlib.contextmanager
def _s3(request, fault: Fault):
    env = dict(request.getfixturevalue("s3_target_env"))
    client = request.getfixturevalue("s3_server").client()
    bucket = request.getfixturevalue("s3_bucket")
    upstream = urlsplit(env["AWS_ENDPOINT_URL_S3"]).port
    with FaultProxy(upstream, http=fault.http) as proxy:
        env["AWS_ENDPOINT_URL_S3"] = f"http://127.0.0.1:{proxy.port}"

        def stored() -> Stored:
            objects = client.list_objects_v2(Bucket=bucket).get("Contents", [])
            uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
            return Stored([o["Key"] for o in objects], [f"upload of {u['Key']}" for u in uploads])

        def uploading() -> bool:
            for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
                parts = client.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                if parts.get("Parts"):
                    return True
            return False

        yield env, proxy, stored, uploading, {}


@contextlib.contextmanager
def _managed(request, fault: Fault):
    """The add-on's storage, through a run of a managed resource whose control plane is behind the proxy."""
    plane = request.getfixturevalue("managed_plane")
    client = request.getfixturevalue("s3_server").client()
    resource, api_token = plane.resource()
    run, token = plane.run(resource)
    folder = plane.store.folder(resource["id"])
    with FaultProxy(urlsplit(plane.url).port, http=fault.http) as proxy:
        env = {**plane.run_env(run, token), **plane.api_env(resource, api_token), **SMALL_PARTS,
               "REMORA_CONTROL_URL": f"http://127.0.0.1:{proxy.port}"}

        def stored() -> Stored:
            objects = client.list_objects_v2(Bucket=plane.store.bucket, Prefix=folder).get("Contents", [])
            uploads = client.list_multipart_uploads(Bucket=plane.store.bucket, Prefix=folder).get("Uploads", [])
            return Stored([o["Key"] for o in objects], [f"upload of {u['Key']}" for u in uploads])

        def expire() -> None:
            with plane.pool.connection() as conn:
                conn.execute("update runs set created_at = created_at - interval '30 days' where id = %s", (run["id"],))

        def clock() -> None:
            clock_pass(plane.app)

        yield env, proxy, stored, lambda: bool(stored().unfinished), {"expire": expire, "clock": clock}


_TARGETS = {"file": _file, "sftp": _sftp, "s3": _s3, "managed": _managed}


def _files(folder: Path) -> Stored:
    paths = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    temporary = [p for p in paths if Path(p).name.startswith(".") and p.endswith(".part")]
    return Stored([p for p in paths if p not in temporary], temporary)


def _temp_bytes(folder: Path) -> int:
    total = 0
    for path in folder.rglob(".*.part"):
        with contextlib.suppress(FileNotFoundError):  # renamed or removed meanwhile
            total += path.stat().st_size
    return total


def test_the_documented_table_is_the_fault_table():
    check = subprocess.run(
        [sys.executable, "scripts/fault_table.py", "--check"], cwd=REPO, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_stray_client_takes_no_fault_meant_for_ssh(sshd_server):
    """A connection that does not speak SSH (a leftover client of another test) leaves the plan alone."""
    with FaultProxy(sshd_server.port, opens_with=b"SSH-") as proxy:
        proxy.plan(Refuse())
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as stray:
            stray.sendall(b"POST /api/v1/runs/x/events HTTP/1.1\r\n\r\n")
            assert stray.recv(7) == b"SSH-2.0"  # passed on to sshd untouched
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as runner:
            runner.sendall(b"SSH-2.0-test\r\n")
            with contextlib.suppress(ConnectionResetError):
                assert runner.recv(7) == b""  # refused
        assert proxy.fired == [Refuse()]
