"""Where backups live in a target, and how to find them.

    <label>/<YYYY>/<MM>/<DD>/<id>.dump.gpg        the OpenPGP message of a pg_dump archive
    <label>/<YYYY>/<MM>/<DD>/<id>.manifest.json   written last: the commit marker

An archive without its manifest is incomplete: it is never listed, verified or restored.
"""

from __future__ import annotations

import datetime
import re
import secrets
from typing import NamedTuple

import structlog

from runner import manifest
from runner.errors import IntegrityError, ObjectNotFound, UsageError
from runner.manifest import Manifest
from runner.targets import Target

log = structlog.get_logger()
ARCHIVE_SUFFIX = ".dump.gpg"
MANIFEST_SUFFIX = ".manifest.json"


def new_id(now: datetime.datetime) -> str:
    """An id that sorts by time, e.g. 20261127T214800Z-3f9a2c."""
    return now.astimezone(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)


def _check_id(backup_id: str) -> re.Match:
    match = manifest.ID.fullmatch(backup_id)
    if match is None:
        raise UsageError(f"{backup_id!r} is not a backup id (like 20261127T214800Z-3f9a2c) or 'latest'")
    return match


def _folder(label: str, backup_id: str) -> str:
    year, month, day = _check_id(backup_id).groups()
    return f"{label}/{year}/{month}/{day}/{backup_id}"


def archive_key(label: str, backup_id: str) -> str:
    return _folder(label, backup_id) + ARCHIVE_SUFFIX


def manifest_key(label: str, backup_id: str) -> str:
    return _folder(label, backup_id) + MANIFEST_SUFFIX


def read_manifest(target: Target, key: str) -> Manifest:
    """The manifest at ``key``, checked; no more than ``manifest.MAX_BYTES`` (and one) are read."""
    file = parse_key(key)
    if file is None or file.suffix != MANIFEST_SUFFIX:
        raise IntegrityError(f"{key} is not where a manifest belongs")
    data = bytearray()
    with target.open(key) as stream:
        while len(data) <= manifest.MAX_BYTES and (chunk := stream.read(manifest.MAX_BYTES + 1 - len(data))):
            data += chunk
    return Manifest.from_bytes(bytes(data), key=key, label=file.label, backup_id=file.id)


def id_time(backup_id: str) -> datetime.datetime:
    """When a backup started, to the second, as its id says."""
    _check_id(backup_id)
    return datetime.datetime.strptime(backup_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)


class BackupFile(NamedTuple):
    label: str
    id: str
    suffix: str  # ARCHIVE_SUFFIX or MANIFEST_SUFFIX


def parse_key(key: str) -> BackupFile | None:
    """What ``key`` holds if it is where a backup's archive or manifest belongs; None for any other key."""
    label, name = key.split("/", 1)[0], key.rsplit("/", 1)[-1]
    if not manifest.LABEL.fullmatch(label):
        return None
    for suffix in (ARCHIVE_SUFFIX, MANIFEST_SUFFIX):
        backup_id = name.removesuffix(suffix)
        if manifest.ID.fullmatch(backup_id) and key == _folder(label, backup_id) + suffix:
            return BackupFile(label, backup_id, suffix)
    return None


def manifest_keys(target: Target, label: str | None) -> dict[str, str]:
    """Every complete backup's id → manifest key, for one label or for all."""
    found = {}
    for info in target.list(f"{label}/" if label else ""):
        file = parse_key(info.key)
        if file is not None and file.suffix == MANIFEST_SUFFIX:
            found[file.id] = info.key
    return found


def backups(target: Target, label: str | None) -> list[Manifest]:
    """Every complete backup, oldest first; a manifest that is not valid is reported and skipped."""
    found = []
    for _, key in sorted(manifest_keys(target, label).items()):
        try:
            found.append(read_manifest(target, key))
        except IntegrityError as e:
            log.warning(f"skipped: {e.message}")
    return found


def resolve(target: Target, label: str | None, ref: str) -> Manifest:
    """The manifest of backup ``ref`` (an id, or 'latest') of ``label`` (None: of any label)."""
    if ref != "latest":
        _check_id(ref)
        key = manifest_key(label, ref) if label else manifest_keys(target, None).get(ref)
        missing = UsageError(f"no complete backup {ref} in the target", hint="see remora-backup list")
        if key is None:
            raise missing
        try:
            return read_manifest(target, key)
        except ObjectNotFound as e:
            raise missing from e
    keys = manifest_keys(target, label)
    if not keys:
        raise UsageError(f"no complete backup{f' of {label}' if label else ''} in the target")
    labels = sorted({key.split("/", 1)[0] for key in keys.values()})
    if len(labels) > 1:
        raise UsageError(
            f"the target holds backups of several databases ({', '.join(labels)}): which one is latest?",
            hint="set REMORA_LABEL or pass --label",
        )
    return read_manifest(target, keys[max(keys)])
