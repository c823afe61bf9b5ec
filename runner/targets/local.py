"""file:///path — a folder on this machine (or a mounted volume).

Uploads go to a hidden temporary name beside the final one, are fsynced, then renamed: a crash
leaves at most a ``.*.part`` file, which ``list`` ignores and never mistakes for an object.
"""

from __future__ import annotations

import datetime
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import SplitResult, unquote

from runner.config import Config
from runner.errors import ObjectNotFound, StorageError
from runner.targets.base import Leftover, ObjectInfo, Target, Upload, upload_key_of

_TEMP_SUFFIX = ".part"
_FULL = (errno.ENOSPC, errno.EDQUOT)


def from_url(parts: SplitResult, config: Config) -> LocalTarget:
    return LocalTarget(Path(unquote(parts.path)))


def _failure(action: str, path: Path, error: OSError) -> StorageError:
    reason = error.strerror or str(error)
    hint = "free some space" if error.errno in _FULL else "check the folder exists and is writable"
    return StorageError(f"cannot {action} {path}: {reason}", hint=hint)


class LocalTarget(Target):
    def __init__(self, root: Path):
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def begin(self, key: str) -> Upload:
        return _LocalUpload(self._path(key))

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        return [info for info in self._files() if info.key.startswith(prefix) and not _is_temp(info.key)]

    def _files(self) -> Iterator[ObjectInfo]:
        """Every file under the root, temporary ones included; one removed while we look is skipped."""
        if not self.root.is_dir():
            raise StorageError(f"no folder {self.root}", hint="create it or fix REMORA_TARGET_URL")
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                path = Path(dirpath, name)
                try:
                    st = path.stat()
                except FileNotFoundError:  # completed, aborted or deleted meanwhile
                    continue
                yield self._info(path.relative_to(self.root).as_posix(), st)

    def stat(self, key: str) -> ObjectInfo:
        try:
            return self._info(key, self._path(key).stat())
        except FileNotFoundError as e:
            raise ObjectNotFound(f"no object {key}") from e
        except OSError as e:
            raise _failure("read", self._path(key), e) from e

    def open(self, key: str, offset: int = 0) -> BinaryIO:
        try:
            stream = open(self._path(key), "rb")
            stream.seek(offset)
            return stream
        except FileNotFoundError as e:
            raise ObjectNotFound(f"no object {key}") from e
        except OSError as e:
            raise _failure("read", self._path(key), e) from e

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as e:
            raise _failure("delete", self._path(key), e) from e

    @staticmethod
    def _info(key: str, st: os.stat_result) -> ObjectInfo:
        modified = datetime.datetime.fromtimestamp(st.st_mtime, datetime.timezone.utc)
        return ObjectInfo(key=key, size=st.st_size, modified=modified)

    def leftovers(self, prefix: str = "") -> list[Leftover]:
        found = []
        for info in self._files():
            key = upload_key_of(info.key)
            if key is not None and key.startswith(prefix):
                found.append(Leftover(key, info.modified, handle=info.key))
        return found

    def discard(self, leftover: Leftover) -> None:
        self.delete(leftover.handle)


class _LocalUpload(Upload):
    """Parts arrive in order (max_in_flight is 1) and are written at their offsets."""

    def __init__(self, path: Path):
        self._path = path
        self._temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{_TEMP_SUFFIX}")
        self._offsets: dict[int, int] = {1: 0}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self._temp, "xb")
        except OSError as e:
            raise _failure("write", path.parent, e) from e

    def send(self, number: int, data: bytes) -> None:
        offset = self._offsets[number]
        try:
            self._file.seek(offset)
            self._file.write(data)
        except OSError as e:
            raise _failure("write", self._temp, e) from e
        self._offsets[number + 1] = offset + len(data)

    def complete(self) -> None:
        try:
            self._file.truncate()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._temp, self._path)
            _fsync_dir(self._path.parent)
        except OSError as e:
            raise _failure("write", self._path, e) from e

    def abort(self) -> None:
        self._file.close()
        self._temp.unlink(missing_ok=True)


def _is_temp(key: str) -> bool:
    name = key.rpartition("/")[2]
    return name.startswith(".") and name.endswith(_TEMP_SUFFIX)


def _fsync_dir(path: Path) -> None:
    """Make the rename itself durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
