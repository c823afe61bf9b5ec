"""S3's multipart limits, and the part sizes that keep any stream within them (s3:// and the add-on's storage)."""

from __future__ import annotations

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
