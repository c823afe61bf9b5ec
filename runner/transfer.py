"""Moving a byte stream into a target: parts, checksums, bounded concurrency, progress.

Retries are not here: the target comes wrapped in ``runner.targets.retrying``, which retries each
part from the bytes held in memory, never by re-reading the source. Memory is bounded by
(in-flight parts + the one being filled) × part size.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import threading
import time
from typing import BinaryIO

import structlog

from runner.targets import Upload

log = structlog.get_logger()

PROGRESS_EVERY = 5.0  # seconds
_progress_listeners: list = []  # callables given the bytes done each time progress is logged


class PartSender:
    """Sends numbered parts through an Upload, at most ``in_flight`` at once.

    With one in flight, parts go on the caller's thread. Otherwise each part gets a daemon
    thread of its own, so that a stop (SIGTERM) never waits for a send stuck on a dead link:
    neither the runner's cleanup nor the interpreter's exit joins them.
    """

    def __init__(self, upload: Upload, *, in_flight: int):
        self._upload = upload
        self._in_flight = in_flight
        self._slots = threading.BoundedSemaphore(in_flight)
        self._pending: list[concurrent.futures.Future] = []

    def send(self, number: int, data: bytes) -> None:
        """Send a part, or queue it; blocks while ``in_flight`` parts are already being sent."""
        if self._in_flight == 1:
            self._upload.send(number, data)
            return
        self._raise_first_failure()
        self._slots.acquire()
        future: concurrent.futures.Future = concurrent.futures.Future()
        threading.Thread(target=self._run, args=(future, number, data), name=f"part-{number}", daemon=True).start()
        self._pending.append(future)

    def _run(self, future: concurrent.futures.Future, number: int, data: bytes) -> None:
        try:
            self._upload.send(number, data)
        except BaseException as e:  # handed to the caller's thread, which raises it
            future.set_exception(e)
        else:
            future.set_result(None)
        finally:
            self._slots.release()

    def finish(self) -> None:
        """Wait for every part; raise the first failure."""
        self.wait()
        self._raise_first_failure()

    def wait(self) -> None:
        """Wait until no part is being sent."""
        concurrent.futures.wait(self._pending)

    def _raise_first_failure(self) -> None:
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
    except Exception:
        # Let parts in flight end before the caller aborts: a part that lands after an S3
        # abort can bring the upload back. A stop (BaseException) does not wait.
        sender.wait()
        raise
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
