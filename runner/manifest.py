"""The manifest: plain JSON beside each archive, written last, the backup's commit marker.

It holds no secret. Its ``format`` field versions the layout; readers refuse formats they do
not know rather than guess. Format 2 adds ``signer`` and ``signature``: an armored OpenPGP
signature, by the signing key, of the manifest's canonical bytes (``signed_bytes``: every other
field, the archive's SHA-256, id and label included). Format 1, from before signing, has neither.

What is read back comes from storage, which anyone who can write to the target controls: it is
capped in size (``MAX_BYTES``) and every field is checked for its type, format and range before
anything uses it, the id and label against the key it was read from.
"""

from __future__ import annotations

import dataclasses
import json
import re

from runner.errors import IntegrityError

FORMAT = 2
FORMATS = (1, 2)  # those this runner reads
MAX_BYTES = 64 * 1024  # a manifest is about 1 KB; a signature or many recipients add a few
ID = re.compile(r"(\d{4})(\d{2})(\d{2})T\d{6}Z-[0-9a-f]{6}")
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


@dataclasses.dataclass(frozen=True)
class Manifest:
    id: str
    label: str
    database: str
    server_version: str  # e.g. "15.18"
    pg_dump_version: int  # major
    archive_format: str  # "custom"
    compression: str  # pg_dump --compress value, e.g. "zstd" or "1"
    recipients: list[str]  # OpenPGP fingerprints the archive is encrypted to
    dump_bytes: int  # plaintext archive size
    encrypted_bytes: int
    sha256: str  # hex digest of the encrypted object as stored
    started_at: str  # ISO 8601, UTC
    finished_at: str
    runner_version: str
    credential: str = "unchecked"  # "read-only" or "read-write" once the credential is inspected
    signer: str | None = None  # the signing key's (primary) fingerprint; None: not signed
    signature: str | None = None  # armored detached signature of signed_bytes(), by ``signer``
    format: int = FORMAT

    def signed_bytes(self) -> bytes:
        """What the signature covers: every field but the signature, in one canonical form."""
        fields = dataclasses.asdict(self)
        del fields["signature"]
        return _canonical(fields)

    def to_bytes(self) -> bytes:
        return _canonical(dataclasses.asdict(self))

    @property
    def server_major(self) -> int:
        return int(self.server_version.split(".")[0])

    @classmethod
    def from_bytes(cls, data: bytes, *, key: str, label: str | None = None, backup_id: str | None = None) -> Manifest:
        """Parse and check a manifest read from ``key``, which holds backup ``backup_id`` of ``label``.

        Anything malformed, or naming another backup than its key does, is an IntegrityError.
        """
        if len(data) > MAX_BYTES:
            raise IntegrityError(f"manifest {key} is larger than {MAX_BYTES} bytes: not a manifest")
        try:
            fields = json.loads(data)
        except (ValueError, RecursionError) as e:
            raise IntegrityError(f"manifest {key} is not JSON: {e}") from e
        if not isinstance(fields, dict):
            raise IntegrityError(f"manifest {key} is not a JSON object")
        if fields.get("format") not in FORMATS:
            raise IntegrityError(
                f"manifest {key} has format {_shown(fields.get('format'))}, this runner reads {FORMAT}",
                hint="use a newer remora-backup",
            )
        problems = _problems(fields)
        if not problems:
            for name, expected in (("id", backup_id), ("label", label)):
                if expected is not None and fields[name] != expected:
                    problems.append(f"{name} {_shown(fields[name])} is not the {name} of its key, {expected}")
        if problems:
            raise IntegrityError(f"manifest {key} is not a valid manifest: {'; '.join(problems)}",
                                 hint="it was damaged or not written by remora-backup; it is not used")
        return cls(**fields)


def _canonical(fields: dict) -> bytes:
    return (json.dumps(fields, indent=2, sort_keys=True) + "\n").encode()


_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
_FINGERPRINT = re.compile(r"[0-9A-F]{40}|[0-9A-F]{64}")
_SIGNATURE = re.compile(r"-----BEGIN PGP SIGNATURE-----\n[A-Za-z0-9+/=:\s.-]{1,8000}-----END PGP SIGNATURE-----\n?")
_BIG = 2**63 - 1


def _text(pattern: re.Pattern | None = None, *, most: int = 200):
    def check(value) -> str | None:
        if not isinstance(value, str) or not 0 < len(value) <= most:
            return f"must be text of 1 to {most} characters"
        if pattern is not None and not pattern.fullmatch(value):
            return "has not the expected form"
        return None
    return check


def _number(low: int, high: int):
    def check(value) -> str | None:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            return f"must be a whole number from {low} to {high}" if high < _BIG else "must be a whole number"
        return None
    return check


def _one_of(*allowed):
    return lambda value: None if value in allowed else f"must be one of {', '.join(map(str, allowed))}"


def _fingerprints(value) -> str | None:
    if not isinstance(value, list) or len(value) > 100 or not all(
            isinstance(item, str) and _FINGERPRINT.fullmatch(item) for item in value):
        return "must be a list of at most 100 OpenPGP fingerprints"
    return None


def _maybe(check):
    return lambda value: None if value is None else check(value)


_FIELDS = {
    "id": _text(ID),
    "label": _text(LABEL),
    "database": _text(most=63),  # PostgreSQL names are at most 63 bytes; any character may be in one
    "server_version": _text(re.compile(r"\d{1,3}\.\d{1,4}")),
    "pg_dump_version": _number(7, 999),
    "archive_format": _one_of("custom"),
    "compression": _text(re.compile(r"[a-z0-9:=,-]+"), most=40),
    "recipients": _fingerprints,
    "dump_bytes": _number(0, _BIG),
    "encrypted_bytes": _number(0, _BIG),
    "sha256": _text(re.compile(r"[0-9a-f]{64}")),
    "started_at": _text(_ISO),
    "finished_at": _text(_ISO),
    "runner_version": _text(re.compile(r"[0-9A-Za-z.+_-]+"), most=40),
    "credential": _one_of("unchecked", "read-only", "read-write"),
    "signer": _maybe(_text(_FINGERPRINT)),
    "signature": _maybe(_text(_SIGNATURE, most=8000)),
    "format": _one_of(*FORMATS),
}
_OPTIONAL = {"credential", "signer", "signature"}


def _problems(fields: dict) -> list[str]:
    """What is wrong with each field, by name: unknown, missing, or of the wrong type, form or range."""
    problems = [f"unknown field {_shown(name)}" for name in fields if name not in _FIELDS]
    problems += [f"{name} is missing" for name in _FIELDS if name not in fields and name not in _OPTIONAL]
    problems += [f"{name} {_shown(fields[name])} {problem}" for name, check in _FIELDS.items()
                 if name in fields and (problem := check(fields[name])) is not None]
    if not problems and (fields.get("signer") is None) != (fields.get("signature") is None):
        problems.append("signer and signature must come together")
    if not problems and fields["format"] == 1 and fields.get("signer") is not None:
        problems.append("a format 1 manifest is never signed")
    return problems[:5]


def _shown(value) -> str:
    """A value from a manifest, short, for a message (the log escapes control characters)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"
