"""The manifest: plain JSON beside each archive, written last, the backup's commit marker.

It holds no secret. Its ``format`` field versions the layout; readers refuse formats they do
not know rather than guess.
"""

from __future__ import annotations

import dataclasses
import json

from runner.errors import IntegrityError

FORMAT = 1


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
    format: int = FORMAT

    def to_bytes(self) -> bytes:
        return (json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, *, key: str) -> Manifest:
        """Parse a manifest read from ``key``; anything malformed is an integrity failure."""
        try:
            fields = json.loads(data)
            if fields.get("format") != FORMAT:
                raise IntegrityError(
                    f"manifest {key} has format {fields.get('format')!r}, this runner reads {FORMAT}",
                    hint="use a newer remora-backup",
                )
            return cls(**fields)
        except (ValueError, TypeError, AttributeError) as e:
            raise IntegrityError(f"manifest {key} is not a valid manifest: {e}") from e
