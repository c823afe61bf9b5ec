"""Parts, retries and the in-flight limit, with stand-in uploads and targets whose failures we choose."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from runner import transfer
from runner.errors import ObjectNotFound, StorageError, Terminated, TransientStorageError
from runner.targets import Upload
from runner.targets.local import LocalTarget
from runner.targets.retrying import RetryingTarget, RetryingUpload, RetryPolicy


class FlakyUpload(Upload):
    """Stores parts in memory; fails the first ``failures[n]`` sends of part n."""

    def __init__(self, failures: dict[int, int], *, error=TransientStorageError, size: int = 1024, delay=0.01):
        self.parts: dict[int, bytes] = {}
        self.attempts: dict[int, int] = {}
        self.failures = failures
        self.error = error
        self.size = size
        self.delay = delay
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()

    def part_size(self, number: int) -> int:
        return self.size

    def send(self, number: int, data: bytes) -> None:
        with self.lock:
            self.attempts[number] = self.attempts.get(number, 0) + 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            threading.Event().wait(self.delay)
            if self.attempts[number] <= self.failures.get(number, 0):
                raise self.error(f"part {number} failed")
            self.parts[number] = bytes(data)
        finally:
            with self.lock:
                self.in_flight -= 1

    def complete(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def joined(self) -> bytes:
        return b"".join(self.parts[n] for n in sorted(self.parts))


FAST = RetryPolicy(attempts=5, backoff_first=0.001, backoff_max=0.01)


def retried(upload: Upload, policy: RetryPolicy = FAST) -> RetryingUpload:
    return RetryingUpload(upload, policy, "db/x.dump.gpg")


@pytest.mark.parametrize("in_flight", [1, 3])
def test_transient_failures_are_retried_from_memory(in_flight):
    data = os.urandom(10 * 1024 + 17)
    upload = FlakyUpload({2: 2, 5: 4})
    size, sha256 = transfer.upload_stream(io.BytesIO(data), retried(upload), in_flight=in_flight)
    assert upload.joined() == data and size == len(data)
    assert sha256 == hashlib.sha256(data).hexdigest()
    assert upload.attempts[2] == 3 and upload.attempts[5] == 5 and upload.attempts[1] == 1
    assert upload.most_in_flight <= in_flight


def test_a_part_that_keeps_failing_gives_up_after_the_last_attempt():
    upload = FlakyUpload({3: 99})
    with pytest.raises(StorageError, match="gave up after 5 attempts") as raised:
        transfer.upload_stream(io.BytesIO(os.urandom(8 * 1024)), retried(upload), in_flight=2)
    assert not isinstance(raised.value, TransientStorageError)
    assert upload.attempts[3] == FAST.attempts


def test_a_permanent_failure_is_not_retried():
    upload = FlakyUpload({1: 1}, error=StorageError)
    with pytest.raises(StorageError, match="part 1 failed"):
        transfer.upload_stream(io.BytesIO(b"x" * 5000), retried(upload), in_flight=1)
    assert upload.attempts == {1: 1}


def test_a_stop_is_not_retried():
    upload = FlakyUpload({1: 1}, error=lambda message: Terminated(signal.SIGTERM, "SIGTERM"))
    with pytest.raises(Terminated):
        transfer.upload_stream(io.BytesIO(b"x" * 5000), retried(upload), in_flight=1)
    assert upload.attempts == {1: 1}


def test_abort_stops_the_retries_waiting_at_once():
    upload = FlakyUpload({1: 99})
    slow = retried(upload, RetryPolicy(attempts=5, backoff_first=60, backoff_max=60))
    sender = threading.Thread(target=lambda: pytest.raises(StorageError, slow.send, 1, b"x"))
    started = time.monotonic()
    sender.start()
    while not upload.attempts:
        time.sleep(0.001)
    slow.abort()
    sender.join(5)
    assert not sender.is_alive() and time.monotonic() - started < 5
    assert upload.attempts == {1: 1}


def test_parts_in_flight_are_bounded():
    upload = FlakyUpload({})
    transfer.upload_stream(io.BytesIO(os.urandom(64 * 1024)), upload, in_flight=4)
    assert 1 < upload.most_in_flight <= 4


def test_a_failure_waits_for_the_parts_in_flight():
    upload = FlakyUpload({2: 1}, error=StorageError, delay=0.2)
    with pytest.raises(StorageError, match="part 2 failed"):
        transfer.upload_stream(io.BytesIO(os.urandom(16 * 1024)), upload, in_flight=4)
    assert upload.in_flight == 0


def test_an_empty_stream_is_one_empty_part():
    upload = FlakyUpload({})
    assert transfer.upload_stream(io.BytesIO(b""), upload, in_flight=2)[0] == 0
    assert upload.parts == {1: b""}


class FlakyTarget(LocalTarget):
    """A folder whose calls fail transiently the first ``failures[name]`` times."""

    def __init__(self, root, failures: dict[str, int]):
        super().__init__(root)
        self.failures = failures
        self.calls: dict[str, int] = {}

    def _flake(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        if self.calls[name] <= self.failures.get(name, 0):
            raise TransientStorageError(f"{name} failed")

    def list(self, prefix=""):
        self._flake("list")
        return super().list(prefix)

    def stat(self, key):
        self._flake("stat")
        return super().stat(key)

    def delete(self, key):
        self._flake("delete")
        super().delete(key)

    def put(self, key, data):
        self._flake("put")
        super().put(key, data)

    def open(self, key, offset=0):
        self._flake("open")
        return FlakyReader(super().open(key, offset), self)


class FlakyReader(io.RawIOBase):
    """Fails a read transiently whenever the target's ``read`` budget says so."""

    def __init__(self, stream, target: FlakyTarget):
        self.stream, self.target = stream, target

    def readinto(self, buffer) -> int:
        self.target._flake("read")
        return self.stream.readinto(buffer)

    def close(self) -> None:
        self.stream.close()
        super().close()


def test_every_call_of_the_target_is_retried(tmp_path):
    backend = FlakyTarget(tmp_path, {"put": 2, "list": 1, "stat": 3, "delete": 1})
    target = RetryingTarget(backend, FAST)
    target.put("db/x", b"data")
    assert [o.key for o in target.list()] == ["db/x"]
    assert target.stat("db/x").size == 4
    target.delete("db/x")
    assert backend.calls == {"put": 3, "list": 2, "stat": 4, "delete": 2}
    with pytest.raises(ObjectNotFound):  # permanent: tried once
        target.stat("db/x")
    assert backend.calls["stat"] == 5


def test_a_read_that_fails_halfway_goes_on_where_it_stopped(tmp_path):
    data = os.urandom(300_000)
    (tmp_path / "obj").write_bytes(data)
    backend = FlakyTarget(tmp_path, {})
    with RetryingTarget(backend, FAST).open("obj") as stream:
        first = stream.read(100_000)
        backend.failures = {"read": backend.calls["read"] + 1, "open": backend.calls["open"] + 1}
        rest = stream.read()
    assert first + rest == data
    assert backend.calls["open"] == 3  # the first open, one that failed, one that worked


def test_a_folder_target_imports_neither_boto3_nor_paramiko(tmp_path):
    code = (
        "import sys\n"
        "from runner.config import Config\n"
        "from runner.targets import open_target\n"
        f"open_target(Config.from_env({{'REMORA_TARGET_URL': 'file://{tmp_path}'}})).list()\n"
        "print(sorted(m for m in ('boto3', 'botocore', 'paramiko') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
