"""Retries around the whole target interface, once, instead of in every backend.

Like restic's RetryBackend and duplicity's BackendWrapper: ``RetryingTarget`` wraps a backend,
and every call the backend answers with ``TransientStorageError`` is tried again after a capped,
jittered exponential wait, up to ``attempts`` tries in all. A permanent ``StorageError`` goes
straight through, as does anything that is not a storage error: ``Terminated`` (SIGTERM) is
never delayed by a backoff.

- A part is retried from the bytes the caller holds in memory; nothing re-runs the dump.
- A read that fails halfway reopens the object where it stopped (``Target.open(key, offset)``).
- ``abort()`` wakes the upload's retries that are waiting and stops them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import threading
from collections.abc import Callable
from typing import BinaryIO, TypeVar

import structlog
import tenacity

from runner.errors import StorageError, TransientStorageError
from runner.targets.base import ObjectInfo, Target, Upload

log = structlog.get_logger()
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a transient storage failure is tried again."""

    attempts: int = 5
    backoff_first: float = 0.5  # seconds; each later wait doubles, plus up to this much jitter
    backoff_max: float = 20.0

    def call(self, fn: Callable[..., T], *args, what: str, stop: threading.Event | None = None) -> T:
        """``fn(*args)``, retried on transient storage errors until it succeeds, fails for good,
        runs out of attempts, or ``stop`` is set."""
        stop = stop or threading.Event()
        retryer = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TransientStorageError),
            stop=tenacity.stop_after_attempt(self.attempts) | tenacity.stop_when_event_set(stop),
            wait=tenacity.wait_exponential_jitter(
                multiplier=self.backoff_first, max=self.backoff_max, jitter=self.backoff_first
            ),
            sleep=stop.wait,  # a wait that abort() can cut short; a signal interrupts it too
            before_sleep=lambda state: log.warning(
                "retrying", what=what, attempt=state.attempt_number, error=state.outcome.exception().message
            ),
            reraise=True,
        )
        try:
            return retryer(fn, *args)
        except TransientStorageError as e:
            tries = retryer.statistics.get("attempt_number", self.attempts)
            raise StorageError(f"{e.message} (gave up after {tries} attempts)", hint=e.hint) from e


class RetryingTarget(Target):
    """A target whose every call retries transient failures by ``policy``."""

    def __init__(self, backend: Target, policy: RetryPolicy):
        self.backend = backend
        self.policy = policy
        self.max_in_flight = backend.max_in_flight

    def begin(self, key: str) -> Upload:
        upload = self.policy.call(self.backend.begin, key, what=f"begin {key}")
        return RetryingUpload(upload, self.policy, key)

    def put(self, key: str, data: bytes) -> None:
        self.policy.call(self.backend.put, key, data, what=f"write {key}")

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        return self.policy.call(self.backend.list, prefix, what=f"list {prefix or '/'}")

    def stat(self, key: str) -> ObjectInfo:
        return self.policy.call(self.backend.stat, key, what=f"stat {key}")

    def open(self, key: str, offset: int = 0) -> BinaryIO:
        return _ResumingReader(self, key, offset)

    def delete(self, key: str) -> None:
        self.policy.call(self.backend.delete, key, what=f"delete {key}")

    def leftovers(self, prefix: str = "") -> list[Leftover]:
        return self.policy.call(self.backend.leftovers, prefix, what=f"list leftovers {prefix or '/'}")

    def discard(self, leftover: Leftover) -> None:
        self.policy.call(self.backend.discard, leftover, what=f"discard {leftover.key}")

    def close(self) -> None:
        self.backend.close()


class RetryingUpload(Upload):
    """An upload whose parts and completion retry transient failures."""

    def __init__(self, upload: Upload, policy: RetryPolicy, key: str):
        self._upload = upload
        self._policy = policy
        self._key = key
        self._stopped = threading.Event()

    def part_size(self, number: int) -> int:
        return self._upload.part_size(number)

    def send(self, number: int, data: bytes) -> None:
        what = f"send part {number} of {self._key}"
        self._policy.call(self._upload.send, number, data, what=what, stop=self._stopped)

    def complete(self) -> None:
        self._policy.call(self._upload.complete, what=f"complete {self._key}", stop=self._stopped)

    def abort(self) -> None:
        self._stopped.set()
        self._upload.abort()


class _ResumingReader(io.RawIOBase):
    """An object being read; after a transient failure it is reopened at the first byte not read."""

    def __init__(self, target: RetryingTarget, key: str, offset: int):
        super().__init__()
        self._backend, self._policy, self._key = target.backend, target.policy, key
        self._position = offset
        self._stream: BinaryIO | None = self._policy.call(self._backend.open, key, offset, what=f"open {key}")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._policy.call(self._readinto, buffer, what=f"read {self._key}")

    def _readinto(self, buffer) -> int:
        if self._stream is None:
            self._stream = self._backend.open(self._key, self._position)
        try:
            count = self._stream.readinto(buffer)
        except TransientStorageError:
            self._drop_stream()
            raise
        self._position += count
        return count

    def _drop_stream(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            with contextlib.suppress(Exception):  # a stream on a dead link may fail to close
                stream.close()

    def close(self) -> None:
        if not self.closed:
            self._drop_stream()
        super().close()
