"""The clock with 1% of its resources poisoned: schedules stored that raise (as a legacy value would).

The same rounds as the `clock` row, but each clock process makes a whole pass (``clock.tick``):
the poisoned resources must cost the others nothing, and each must be stopped and shown to its
owner (a failed run, an incident).
"""

from __future__ import annotations

from bench.context import Bench
from bench.measure import Figure
from bench.rows import clock

ORDER = 65
TITLE = "control plane: a clock pass with 1% of resources poisoned"
SHARE = 100  # one resource in this many is poisoned


def run(bench: Bench) -> list[Figure]:
    return [clock.measure(bench, row="poisoned", step="tick", poisoned=bench.settings.schedules // SHARE)]
