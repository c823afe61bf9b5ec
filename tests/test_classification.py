"""Which failures are worth retrying: each target sorts its errors into transient and permanent.

Transient: timeouts, resets, a dropped or refused connection, 5xx, throttling. Permanent: access
denied, no such bucket, failed login, host key mismatch, disk full, quota, permission denied. The
real servers show most of these in test_s3.py, test_sftp.py and the fault suite; here every kind
of answer is classified, including those no test server can be made to give.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import paramiko
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    ConnectionClosedError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
    SSLError,
)

from runner.config import Config
from runner.errors import ObjectNotFound, StorageError, TransientStorageError, UsageError
from runner.targets import local, managed, sftp
from runner.targets.s3 import S3Target
from tests.helpers import REPO
from tests.receiver import answering
from tests.servers.util import free_ports

TRANSIENT, PERMANENT, MISSING = "transient", "permanent", "missing"


def kind(error: Exception) -> str:
    if isinstance(error, TransientStorageError):
        return TRANSIENT
    if isinstance(error, ObjectNotFound):
        return MISSING
    assert isinstance(error, StorageError) and error.exit_code == 6, error
    return PERMANENT


@pytest.fixture(scope="module")
def s3_target():
    client = boto3.client("s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
                          aws_access_key_id="x", aws_secret_access_key="y")
    return S3Target(bucket="bucket", prefix="backups", client=client, part_size=5 * 2**20, in_flight=1)


def s3_failure(target: S3Target, error: Exception) -> StorageError | UsageError:
    with pytest.raises((StorageError, UsageError)) as raised, target.errors("upload part 2 of", "db/x"):
        raise error
    assert raised.value.__cause__ is error
    return raised.value


@pytest.mark.parametrize("code, status, expected", [
    ("SlowDown", 503, TRANSIENT),
    ("ServiceUnavailable", 503, TRANSIENT),
    ("InternalError", 500, TRANSIENT),
    ("502", 502, TRANSIENT),  # a proxy's HTML error page: no S3 code
    ("RequestTimeout", 400, TRANSIENT),
    ("Throttling", 400, TRANSIENT),
    ("TooManyRequests", 429, TRANSIENT),
    ("BadDigest", 400, TRANSIENT),  # our checksum is of the bytes in memory: damaged on the way
    ("AccessDenied", 403, PERMANENT),
    ("InvalidAccessKeyId", 403, PERMANENT),
    ("SignatureDoesNotMatch", 403, PERMANENT),
    ("ExpiredToken", 400, PERMANENT),
    ("AccountProblem", 403, PERMANENT),
    ("NoSuchBucket", 404, PERMANENT),
    ("NoSuchUpload", 404, PERMANENT),  # the upload was aborted under us (a lifecycle rule)
    ("EntityTooSmall", 400, PERMANENT),
    ("InvalidBucketState", 409, PERMANENT),
    ("NoSuchKey", 404, MISSING),
])
def test_s3_answers(s3_target, code, status, expected):
    answer = {"Error": {"Code": code, "Message": "said"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    error = s3_failure(s3_target, ClientError(answer, "UploadPart"))
    assert kind(error) == expected
    assert "s3://bucket/backups/db/x" in error.one_line() or code == "NoSuchBucket"


@pytest.mark.parametrize("error, expected", [
    (EndpointConnectionError(endpoint_url="http://s3"), TRANSIENT),
    (ConnectTimeoutError(endpoint_url="http://s3"), TRANSIENT),
    (ReadTimeoutError(endpoint_url="http://s3"), TRANSIENT),
    (ConnectionClosedError(endpoint_url="http://s3"), TRANSIENT),
    (ResponseStreamingError(error="connection reset"), TRANSIENT),
    (IncompleteReadError(actual_bytes=1, expected_bytes=2), TRANSIENT),
    (SSLError(endpoint_url="http://s3", error="certificate verify failed"), PERMANENT),
])
def test_s3_transport_failures(s3_target, error, expected):
    assert kind(s3_failure(s3_target, error)) == expected


def test_s3_without_credentials_is_a_usage_error(s3_target):
    error = s3_failure(s3_target, NoCredentialsError())
    assert isinstance(error, UsageError) and "AWS_ACCESS_KEY_ID" in error.one_line()


@pytest.mark.parametrize("error, alive, expected, hint", [
    (EOFError(), True, TRANSIENT, "reachable"),
    (TimeoutError("timed out"), True, TRANSIENT, "reachable"),
    (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), True, TRANSIENT, "reachable"),
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), False, TRANSIENT, "reachable"),
    (ConnectionAbortedError(errno.ECONNABORTED, "the link took no byte"), True, TRANSIENT, "reachable"),
    (paramiko.SSHException("Error reading SSH protocol banner"), False, TRANSIENT, "reachable"),
    (OSError("Failure"), False, TRANSIENT, "reachable"),  # whatever it says: the link died under it
    (paramiko.AuthenticationException("Authentication failed."), False, PERMANENT, "authorized_keys"),
    (paramiko.IncompatiblePeer("no acceptable kex algorithm"), False, PERMANENT, "shares no"),
    (PermissionError(errno.EACCES, "Permission denied"), True, PERMANENT, "let the SFTP user write"),
    (FileNotFoundError(errno.ENOENT, "No such file"), True, PERMANENT, "create the folder"),
    # OpenSSH's sftp-server answers a full disk or a quota with SSH_FX_FAILURE: "Failure"
    (OSError("Failure"), True, PERMANENT, "disk full"),
])
def test_sftp_failures(error, alive, expected, hint):
    failure = sftp._failure("cannot write /x", error, alive=alive)
    assert kind(failure) == expected
    assert hint in failure.one_line()


def test_a_lost_connection_is_said_in_words():
    failure = sftp._failure("cannot write /x", EOFError(), alive=True)
    assert failure.message == "cannot write /x: the connection was lost"


@pytest.mark.parametrize("number, hint", [
    (errno.ENOSPC, "free some space"),
    (errno.EDQUOT, "free some space"),
    (errno.EACCES, "writable"),
    (errno.EROFS, "writable"),
])
def test_local_failures_are_permanent(number, hint):
    failure = local._failure("write", Path("/backups/x"), OSError(number, os.strerror(number)))
    assert kind(failure) == PERMANENT and hint in failure.one_line()


def test_a_send_that_makes_no_progress_ends_paramikos_transport():
    """paramiko retries a timed-out send until its transport is closed; the guard's error ends it."""
    ours, theirs = socket.socketpair()  # nobody ever reads ``theirs``
    ours.settimeout(0.05)  # what paramiko sets on the socket under a transport
    started = time.monotonic()
    with pytest.raises(EOFError):
        paramiko.Packetizer(sftp._StallGuard(ours, 0.5)).write_all(b"x" * (8 * 2**20))
    assert 0.5 <= time.monotonic() - started < 5
    ours.close()
    theirs.close()


def test_a_slow_link_is_not_a_stalled_one():
    ours, theirs = socket.socketpair()
    ours.settimeout(0.05)
    theirs.setblocking(False)
    guard = sftp._StallGuard(ours, 0.3)
    for _ in range(10):  # a full buffer, again and again, for longer than the timeout in all
        with pytest.raises(TimeoutError):
            while True:
                guard.send(b"x" * 65536)
        time.sleep(0.05)
        with contextlib.suppress(BlockingIOError):
            while theirs.recv(1 << 20):  # the reader catches up
                pass
    assert guard.send(b"x") == 1
    ours.close()
    theirs.close()


@pytest.mark.parametrize("variable, value", [
    ("REMORA_RETRY_ATTEMPTS", "0"),
    ("REMORA_RETRY_ATTEMPTS", "many"),
    ("REMORA_RETRY_BACKOFF_MAX", "-1"),
    ("REMORA_RETRY_BACKOFF_MAX", "1e3"),
    ("REMORA_STORAGE_TIMEOUT", "0"),
    ("REMORA_STORAGE_TIMEOUT", "soon"),
])
def test_retry_and_timeout_settings_are_checked(variable, value):
    with pytest.raises(UsageError, match=variable):
        Config.from_env({variable: value})


def test_retry_and_timeout_settings():
    config = Config.from_env({"REMORA_RETRY_ATTEMPTS": "3", "REMORA_RETRY_BACKOFF_MAX": "0.25",
                              "REMORA_STORAGE_TIMEOUT": "2.5"})
    assert (config.retry_attempts, config.retry_backoff_max, config.storage_timeout) == (3, 0.25, 2.5)
    default = Config.from_env({})
    assert (default.retry_attempts, default.retry_backoff_max, default.storage_timeout) == (5, 20.0, 60.0)


STOPPABLE = """
import time
from runner import shutdown
from runner.errors import Terminated
try:
    with shutdown.stop_on_signals():
        print("ready", flush=True)
        time.sleep(30)
except Terminated as stop:
    print("cleaning up", flush=True)
    time.sleep(0.5)  # a second signal now must not cut the cleanup short
    print(stop.exit_code, stop.name, flush=True)
"""


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, "143 SIGTERM"), (signal.SIGINT, "130 SIGINT")])
def test_a_stop_signal_raises_terminated_once(signum, code):
    child = subprocess.Popen([sys.executable, "-c", STOPPABLE], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "ready\n"
    child.send_signal(signum)
    assert child.stdout.readline() == "cleaning up\n"
    child.send_signal(signum)
    assert child.communicate(timeout=10)[0] == f"{code}\n"
    assert child.returncode == 0


# --- the add-on's storage: the control plane's and S3's answers, and none at all -------------------


def managed_target(url: str):
    env = {"REMORA_API_URL": f"{url}/api/v1/resources/r", "REMORA_API_TOKEN": "api-token",
           "REMORA_CONTROL_URL": url, "REMORA_RUN_ID": "run", "REMORA_RUN_TOKEN": "run-token",
           "REMORA_STORAGE_TIMEOUT": "2"}
    return managed.from_config(Config.from_env(env))


@pytest.mark.parametrize("status, body, headers, expected", [
    (503, b'{"error": "the add-on\'s storage failed; try again later"}', None, TRANSIENT),
    (502, b"<html>bad gateway</html>", None, TRANSIENT),
    (429, b'{"error": "slow down"}', None, TRANSIENT),
    (401, b'{"error": "invalid run token"}', None, PERMANENT),
    (403, b'{"error": "run has ended (succeeded) or outlived its time to live"}', None, PERMANENT),
    (409, b'{"error": "backup id x belongs to another run"}', None, PERMANENT),
    (302, b"", {"Location": "http://127.0.0.1:9/elsewhere"}, PERMANENT),  # never followed, token and all
    (200, b"[1, 2]", None, PERMANENT),
    (200, b"not json", None, PERMANENT),
    (200, b'{"upload": "../../etc"}', None, PERMANENT),
    (200, b"[" * 5000, None, PERMANENT),  # deeper than json's parser goes: not JSON, not a crash
    (409, b"[" * 5000, None, PERMANENT),
], ids=["503", "502-html", "429", "401", "403", "409", "redirect", "json-list", "not-json", "odd-upload", "too-deep",
        "too-deep-error"])
def test_the_add_ons_answers_to_a_run_are_sorted(status, body, headers, expected):
    with answering(status, body, headers) as url, managed_target(url) as target:
        with pytest.raises(StorageError) as caught:
            target.begin("db/2026/11/30/20261130T010000Z-abcdef.dump.gpg")
    assert kind(caught.value) == expected, caught.value
    assert "run-token" not in caught.value.one_line()


@pytest.mark.parametrize("status, body, expected", [
    (400, b"<Error><Code>BadDigest</Code><Message>damaged</Message></Error>", TRANSIENT),
    (403, b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>", TRANSIENT),
    (500, b"<Error><Code>InternalError</Code></Error>", TRANSIENT),
    (403, b"<Error><Code>SignatureDoesNotMatch</Code><Message>no</Message></Error>", PERMANENT),
    (404, b"<Error><Code>NoSuchUpload</Code></Error>", PERMANENT),
], ids=["bad-digest", "expired", "500", "signature", "no-upload"])
def test_s3s_answers_to_a_presigned_part_are_sorted(status, body, expected):
    with answering(status, body) as url, managed_target("http://127.0.0.1:9") as target:
        with pytest.raises(StorageError) as caught:
            target.s3_put(f"{url}/bucket/key?partNumber=1", b"part", {}, action="upload part 1")
    assert kind(caught.value) == expected, caught.value


def test_an_add_on_out_of_reach_or_answering_too_much_is_sorted():
    (closed,) = free_ports(1)
    with managed_target(f"http://127.0.0.1:{closed}") as target, pytest.raises(StorageError) as caught:
        target.list()
    assert kind(caught.value) == TRANSIENT
    huge = b'{"objects": [' + b" " * (managed.MAX_ANSWER + 1) + b"]}"
    with answering(200, huge) as url, managed_target(url) as target, pytest.raises(StorageError) as caught:
        target.list()
    assert kind(caught.value) == PERMANENT and "MiB" in caught.value.message
    with answering(404, b'{"error": "no such object"}') as url, managed_target(url) as target:
        with pytest.raises(ObjectNotFound):
            target.stat("db/2026/11/30/20261130T010000Z-abcdef.manifest.json")
