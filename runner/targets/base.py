"""The storage target interface. Every backend (file, S3, SFTP) implements exactly this.

Keys are '/'-separated paths relative to the target's root (the URL's path or prefix), e.g.
``mydb/2026/11/27/20261127T214800Z-3f9a2c.dump.gpg``.

Errors: a backend raises ``TransientStorageError`` for failures worth retrying (timeouts,
connection resets and drops, 5xx, throttling) and ``StorageError`` for permanent ones (access
denied, no such bucket, host key mismatch, failed login, disk full, quota, permission denied),
always ``from`` the original exception. ``ObjectNotFound`` (permanent) means the key does not
exist. After a transient error the next call must work again if the server does (reconnecting
as needed). Retrying is not the backend's business: ``runner.targets.retrying`` wraps every
call of this interface, and ``runner.transfer`` limits the parts in flight.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime
import re
import threading
from typing import BinaryIO

MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime.datetime  # timezone-aware, UTC


@dataclasses.dataclass(frozen=True)
class Leftover:
    """What an upload that never completed left behind: a temporary file or an open multipart upload."""

    key: str  # the key the upload was writing
    modified: datetime.datetime  # its last sign of life (timezone-aware, UTC)
    handle: str  # the backend's own name for it: the temporary file's key, or the upload's id


class Upload(abc.ABC):
    """One object being written. Nothing is visible under its key until ``complete()`` returns.

    Parts are numbered from 1 and hold consecutive bytes. ``send`` may be called again with the
    same number and the same bytes after a failure (a retry), and must then store them again.
    Several ``send`` calls may run at once on different threads, up to the target's
    ``max_in_flight``.
    """

    def part_size(self, number: int) -> int:
        """How many bytes part ``number`` should hold (the last part may hold fewer)."""
        return 8 * MIB

    @abc.abstractmethod
    def send(self, number: int, data: bytes) -> None:
        """Store part ``number`` durably enough for ``complete()``."""

    @abc.abstractmethod
    def complete(self) -> None:
        """Make the object visible under its key, whole, in one step."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Remove every trace of this upload. Never raises; safe to call twice or after complete."""


class Target(abc.ABC):
    """A place that stores objects under keys."""

    #: how many ``Upload.send`` calls may run at once
    max_in_flight: int = 1

    @abc.abstractmethod
    def begin(self, key: str) -> Upload:
        """Start writing ``key``; the caller must ``complete()`` or ``abort()`` the upload."""

    def put(self, key: str, data: bytes) -> None:
        """Write a small object in one piece (e.g. a manifest)."""
        upload = self.begin(key)
        try:
            upload.send(1, data)
            upload.complete()
        except BaseException:
            upload.abort()
            raise

    @abc.abstractmethod
    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix``, at any depth, in no particular order.

        Temporary files of unfinished uploads are not listed.
        """

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """The object's size and time; ``ObjectNotFound`` if there is none."""

    @abc.abstractmethod
    def open(self, key: str, offset: int = 0) -> BinaryIO:
        """A readable binary stream of the object from byte ``offset`` on (``read(n)``,
        ``readinto(b)``, ``close()``, context manager)."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""

    def close(self) -> None:
        """Release connections. The target is not used afterwards."""

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @abc.abstractmethod
    def leftovers(self, prefix: str = "") -> list[Leftover]:
        """What uploads of keys starting with ``prefix`` have left, not completed nor aborted.

        A running upload is listed too, and looks like one that was killed: only its ``modified``,
        which a running upload keeps recent, tells them apart.
        """

    @abc.abstractmethod
    def discard(self, leftover: Leftover) -> None:
        """Remove a leftover; one already gone is not an error. Never call it on a running upload."""


class OpenUploads:
    """The uploads a target has begun that hold storage until they end, so that closing it aborts them.

    As s3transfer does: an upload is added the moment it exists, and taken out when it completes or aborts;
    one that is not here has ended, so this is also how an upload knows that it has.
    """

    def __init__(self):
        self._uploads: set[Upload] = set()
        self._lock = threading.Lock()

    def add(self, upload: Upload) -> None:
        with self._lock:
            self._uploads.add(upload)

    def end(self, upload: Upload) -> bool:
        """Take ``upload`` out; False if it had ended already (completed or aborted)."""
        with self._lock:
            if upload not in self._uploads:
                return False
            self._uploads.remove(upload)
            return True

    def abort_all(self) -> None:
        """Abort every upload still open (each takes itself out)."""
        with self._lock:
            uploads = list(self._uploads)
        for upload in uploads:
            upload.abort()


_TEMPORARY = re.compile(r"(?P<folder>(?:.*/)?)\.(?P<name>[^/]+)\.[0-9a-f]{8}\.part")


def upload_key_of(temp_key: str) -> str | None:
    """The key a file or SFTP upload's temporary ``FOLDER/.NAME.RANDOM.part`` was for, if it is one."""
    match = _TEMPORARY.fullmatch(temp_key)
    return match["folder"] + match["name"] if match else None
