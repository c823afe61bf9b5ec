"""S3's multipart limits, the part sizes that keep any stream within them, and the checksum S3 checks
each part against (s3:// and the add-on's storage)."""

from __future__ import annotations

import base64
import hashlib

from runner.errors import StorageError
from runner.targets.base import MIB

MAX_PARTS = 10_000
MAX_PART_SIZE = 5 * 1024 * MIB
PARTS_PER_STEP = 1_000  # part size doubles after every this many parts


def part_size(base: int, number: int) -> int:
    """Bytes in part ``number``: ``base`` for parts 1-1000, doubling every 1000 more, up to 5 GiB.

    A stream of unknown length can't pick its part size up front; growing it keeps even a
    multi-terabyte dump under S3's 10,000 parts while small dumps keep small parts.
    """
    return min(base * 2 ** ((number - 1) // PARTS_PER_STEP), MAX_PART_SIZE)


def check_number(number: int, upload: str) -> None:
    """Refuse a part S3 would refuse: parts are numbered 1 to 10,000."""
    if not 1 <= number <= MAX_PARTS:
        raise StorageError(f"cannot upload part {number} of {upload}: S3 allows parts 1 to {MAX_PARTS}")


def check_whole(numbers: list[int], upload: str) -> None:
    """Refuse to complete an upload whose parts (sorted numbers) have a gap: S3 would join 1 and 3 into a hole."""
    if numbers != list(range(1, len(numbers) + 1)):
        raise StorageError(f"upload of {upload} is missing parts")


def checksum(data: bytes) -> str:
    """The SHA-256 of bytes in memory, base64, as S3 takes it: S3 refuses a part that arrived otherwise."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
