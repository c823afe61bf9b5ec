"""Parts, retries and the in-flight limit, with a stand-in upload whose failures we choose."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import threading

import pytest

from runner import transfer
from runner.errors import StorageError, TransientStorageError
from runner.targets import Upload


class FlakyUpload(Upload):
    """Stores parts in memory; fails the first ``failures[n]`` sends of part n."""

    def __init__(self, failures: dict[int, int], *, error=TransientStorageError, size: int = 1024):
        self.parts: dict[int, bytes] = {}
        self.attempts: dict[int, int] = {}
        self.failures = failures
        self.error = error
        self.size = size
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
            threading.Event().wait(0.01)
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


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(transfer, "BACKOFF_FIRST", 0.001)


@pytest.mark.parametrize("in_flight", [1, 3])
def test_transient_failures_are_retried_from_memory(in_flight):
    data = os.urandom(10 * 1024 + 17)
    upload = FlakyUpload({2: 2, 5: 4})
    size, sha256 = transfer.upload_stream(io.BytesIO(data), upload, in_flight=in_flight)
    assert upload.joined() == data and size == len(data)
    assert sha256 == hashlib.sha256(data).hexdigest()
    assert upload.attempts[2] == 3 and upload.attempts[5] == 5 and upload.attempts[1] == 1
    assert upload.most_in_flight <= in_flight


def test_a_part_that_keeps_failing_gives_up_after_the_last_attempt():
    upload = FlakyUpload({3: 99})
    with pytest.raises(StorageError, match="gave up after 5 attempts") as raised:
        transfer.upload_stream(io.BytesIO(os.urandom(8 * 1024)), upload, in_flight=2)
    assert not isinstance(raised.value, TransientStorageError)
    assert upload.attempts[3] == transfer.ATTEMPTS


def test_a_permanent_failure_is_not_retried():
    upload = FlakyUpload({1: 1}, error=StorageError)
    with pytest.raises(StorageError, match="part 1 failed"):
        transfer.upload_stream(io.BytesIO(b"x" * 5000), upload, in_flight=1)
    assert upload.attempts == {1: 1}


def test_parts_in_flight_are_bounded():
    upload = FlakyUpload({})
    transfer.upload_stream(io.BytesIO(os.urandom(64 * 1024)), upload, in_flight=4)
    assert 1 < upload.most_in_flight <= 4


def test_an_empty_stream_is_one_empty_part():
    upload = FlakyUpload({})
    assert transfer.upload_stream(io.BytesIO(b""), upload, in_flight=2)[0] == 0
    assert upload.parts == {1: b""}


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
