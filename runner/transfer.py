"""Moving a byte stream into a target: parts, checksums, retries, bounded concurrency, progress.

Retries and the in-flight limit wrap ``Upload.send`` here, once, instead of living in every
backend. A part is retried from the bytes already in memory, never by re-reading the source.
Memory is bounded by (in-flight parts + the one being filled) × part size.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import threading
import time
from typing import BinaryIO

import structlog
import tenacity

from runner.errors import StorageError, TransientStorageError
from runner.targets import Upload

log = structlog.get_logger()

ATTEMPTS = 5
BACKOFF_FIRST = 0.5  # seconds
BACKOFF_MAX = 20.0
PROGRESS_EVERY = 5.0  # seconds
_progress_listeners: list = []  # callables given the bytes done each time progress is logged


def retrying(call, *args, what: str):
    """Run ``call(*args)``, retrying transient storage errors with capped, jittered backoff."""
    retryer = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TransientStorageError),
        stop=tenacity.stop_after_attempt(ATTEMPTS),
        wait=tenacity.wait_exponential_jitter(multiplier=BACKOFF_FIRST, max=BACKOFF_MAX, jitter=BACKOFF_FIRST),
        before_sleep=lambda state: log.warning(
            "retrying", what=what, attempt=state.attempt_number, error=state.outcome.exception().message
        ),
        reraise=True,
    )
    try:
        return retryer(call, *args)
    except TransientStorageError as e:
        raise StorageError(f"{e.message} (gave up after {ATTEMPTS} attempts)", hint=e.hint) from e


class PartSender:
    """Sends numbered parts through an Upload, at most ``in_flight`` at once, each with retries."""

    def __init__(self, upload: Upload, *, in_flight: int):
        self._upload = upload
        self._pool = (
            concurrent.futures.ThreadPoolExecutor(in_flight, thread_name_prefix="part")
            if in_flight > 1
            else None
        )
        self._slots = threading.BoundedSemaphore(in_flight)
        self._pending: list[concurrent.futures.Future] = []

    def send(self, number: int, data: bytes) -> None:
        """Queue a part; blocks while ``in_flight`` parts are already being sent."""
        if self._pool is None:
            retrying(self._upload.send, number, data, what=f"part {number}")
            return
        self._raise_first_failure(wait=False)
        self._slots.acquire()
        future = self._pool.submit(retrying, self._upload.send, number, data, what=f"part {number}")
        future.add_done_callback(lambda _: self._slots.release())
        self._pending.append(future)

    def finish(self) -> None:
        """Wait for every part; raise the first failure."""
        self._raise_first_failure(wait=True)
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            for future in self._pending:
                future.cancel()
            self._pool.shutdown(wait=True)

    def _raise_first_failure(self, *, wait: bool) -> None:
        if wait:
            concurrent.futures.wait(self._pending)
        for future in self._pending:
            if future.done() and future.exception() is not None:
                raise future.exception()
        self._pending = [f for f in self._pending if not f.done()]


class Progress:
    """Logs bytes, MiB/s and elapsed time every few seconds."""

    def __init__(self, what: str):
        self.what = what
        self.started = time.monotonic()
        self._next = self.started + PROGRESS_EVERY

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + PROGRESS_EVERY
            elapsed = now - self.started
            log.info(
                self.what,
                bytes=done,
                mib_s=round(done / elapsed / 2**20, 1),
                elapsed_s=round(elapsed, 1),
            )
            for listener in _progress_listeners:
                listener(done)


@contextlib.contextmanager
def progress_listener(callback):
    """Have ``callback(bytes_done)`` called whenever progress is logged, inside the block."""
    _progress_listeners.append(callback)
    try:
        yield
    finally:
        _progress_listeners.remove(callback)


def upload_stream(source: BinaryIO, upload: Upload, *, in_flight: int) -> tuple[int, str]:
    """Read ``source`` to its end into ``upload``'s parts; return (bytes, SHA-256 hex).

    The caller still owns the upload: it completes it only after checking the source's
    producers succeeded, and aborts it otherwise.
    """
    digest = hashlib.sha256()
    sender = PartSender(upload, in_flight=in_flight)
    progress = Progress("uploading")
    total = 0
    number = 1
    try:
        while True:
            part = _read_part(source, upload.part_size(number))
            if not part and number > 1:
                break
            digest.update(part)
            total += len(part)
            sender.send(number, part)
            progress.update(total)
            if len(part) < upload.part_size(number):
                break
            number += 1
        sender.finish()
    finally:
        sender.close()
    return total, digest.hexdigest()


def _read_part(source: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes, fewer only at the end of the stream."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    filled = 0
    while filled < size and (n := source.readinto(view[filled:])):
        filled += n
    view.release()
    del buffer[filled:]
    return bytes(buffer) if filled < size else buffer
