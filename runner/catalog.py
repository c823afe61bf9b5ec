"""Where backups live in a target, and how to find them.

    <label>/<YYYY>/<MM>/<DD>/<id>.dump.gpg        the OpenPGP message of a pg_dump archive
    <label>/<YYYY>/<MM>/<DD>/<id>.manifest.json   written last: the commit marker

An archive without its manifest is incomplete: it is never listed, verified or restored.
"""

from __future__ import annotations

import datetime
import re
import secrets

from runner.errors import ObjectNotFound, UsageError
from runner.manifest import Manifest
from runner.targets import Target

ARCHIVE_SUFFIX = ".dump.gpg"
MANIFEST_SUFFIX = ".manifest.json"
_ID = re.compile(r"(\d{4})(\d{2})(\d{2})T\d{6}Z-[0-9a-f]{6}")


def new_id(now: datetime.datetime) -> str:
    """An id that sorts by time, e.g. 20261127T214800Z-3f9a2c."""
    return now.astimezone(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)


def _folder(label: str, backup_id: str) -> str:
    match = _ID.fullmatch(backup_id)
    if match is None:
        raise UsageError(f"{backup_id!r} is not a backup id (like 20261127T214800Z-3f9a2c) or 'latest'")
    year, month, day = match.groups()
    return f"{label}/{year}/{month}/{day}/{backup_id}"


def archive_key(label: str, backup_id: str) -> str:
    return _folder(label, backup_id) + ARCHIVE_SUFFIX


def manifest_key(label: str, backup_id: str) -> str:
    return _folder(label, backup_id) + MANIFEST_SUFFIX


def read_manifest(target: Target, key: str) -> Manifest:
    with target.open(key) as stream:
        return Manifest.from_bytes(stream.read(), key=key)


def manifest_keys(target: Target, label: str | None) -> dict[str, str]:
    """Every complete backup's id → manifest key, for one label or for all."""
    found = {}
    for info in target.list(f"{label}/" if label else ""):
        name = info.key.rsplit("/", 1)[-1]
        if name.endswith(MANIFEST_SUFFIX) and _ID.fullmatch(name[: -len(MANIFEST_SUFFIX)]):
            found[name[: -len(MANIFEST_SUFFIX)]] = info.key
    return found


def backups(target: Target, label: str | None) -> list[Manifest]:
    """Every complete backup, oldest first."""
    keys = manifest_keys(target, label)
    return [read_manifest(target, keys[backup_id]) for backup_id in sorted(keys)]


def resolve(target: Target, label: str | None, ref: str) -> Manifest:
    """The manifest of backup ``ref`` (an id, or 'latest')."""
    if ref == "latest":
        keys = manifest_keys(target, label)
        if not keys:
            raise UsageError(f"no complete backup{f' of {label}' if label else ''} in the target")
        return read_manifest(target, keys[max(keys)])
    if label is None:
        matches = [key for backup_id, key in manifest_keys(target, None).items() if backup_id == ref]
        if not matches:
            raise UsageError(f"no complete backup {ref} in the target", hint="see remora-backup list")
        return read_manifest(target, matches[0])
    try:
        return read_manifest(target, manifest_key(label, ref))
    except ObjectNotFound as e:
        raise UsageError(f"no complete backup {ref} of {label}", hint="see remora-backup list") from e
