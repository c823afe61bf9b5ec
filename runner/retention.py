"""Retention: which backups a grandfather-father-son policy keeps. Pure: no storage, no clock.

The semantics are restic's ``forget --keep-daily/--keep-weekly/...``, in UTC:

- For each kind of period (days, ISO weeks, months, years) with a count N, walk the backups newest
  first and keep the newest backup of each of the N most recent periods that hold a backup.
  Periods without a backup don't count: ``daily=7`` keeps the last 7 days that have one, however
  far back they reach.
- A backup is kept if any kind keeps it (the union), with every reason that applies.
- The newest backup is always kept, whatever the policy says, even if every count is 0.

Weeks are ISO weeks (Monday to Sunday, numbered in the ISO year: 2027-01-01 is in 2026-W53).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Mapping

from runner.errors import UsageError

_PERIODS: dict[str, Callable[[datetime.datetime], str]] = {
    "daily": lambda t: f"{t:%Y-%m-%d}",
    "weekly": lambda t: "{:04d}-W{:02d}".format(*t.isocalendar()[:2]),
    "monthly": lambda t: f"{t:%Y-%m}",
    "yearly": lambda t: f"{t:%Y}",
}
KINDS = tuple(_PERIODS)
EXAMPLE = "daily=7,weekly=4,monthly=12"


@dataclasses.dataclass(frozen=True)
class Policy:
    """How many periods of each kind to keep a backup from; 0 keeps none of that kind."""

    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0

    def __str__(self) -> str:
        counts = [f"{kind}={getattr(self, kind)}" for kind in KINDS if getattr(self, kind)]
        return ",".join(counts or [f"{kind}=0" for kind in KINDS])


@dataclasses.dataclass(frozen=True)
class Decision:
    """A backup and why it is kept; no reasons means it is deleted."""

    id: str
    reasons: tuple[str, ...]

    @property
    def keep(self) -> bool:
        return bool(self.reasons)


def parse(text: str, *, source: str) -> Policy:
    """Parse ``daily=7,weekly=4,...`` (any subset of the kinds); errors name ``source``."""
    counts: dict[str, int] = {}
    for item in text.split(","):
        kind, equals, number = (part.strip() for part in item.partition("="))
        if kind not in KINDS or not equals:
            raise UsageError(
                f"{source} has {item.strip()!r}: each item is KIND=COUNT with KIND one of {', '.join(KINDS)}",
                hint=f"e.g. {EXAMPLE}",
            )
        if not (number.isascii() and number.isdigit()):
            raise UsageError(
                f"{source} {kind} must be a whole number (0 or more), not {number!r}", hint=f"e.g. {EXAMPLE}"
            )
        if kind in counts:
            raise UsageError(f"{source} gives {kind} twice", hint=f"e.g. {EXAMPLE}")
        counts[kind] = int(number)
    return Policy(**counts)


def plan(policy: Policy, times: Mapping[str, datetime.datetime]) -> list[Decision]:
    """Decide for every backup (id → when it was taken) whether ``policy`` keeps it; oldest first."""
    newest_first = sorted(times, key=lambda backup_id: (_utc(times[backup_id]), backup_id), reverse=True)
    reasons: dict[str, list[str]] = {backup_id: [] for backup_id in newest_first}
    if newest_first:
        reasons[newest_first[0]].append("newest")
    for kind, period_of in _PERIODS.items():
        left, last = getattr(policy, kind), None
        for backup_id in newest_first:
            if left == 0:
                break
            period = period_of(_utc(times[backup_id]))
            # newest first, so the first backup seen in a period is that period's newest
            if period != last:
                reasons[backup_id].append(f"{kind} {period}")
                left, last = left - 1, period
    return [Decision(backup_id, tuple(reasons[backup_id])) for backup_id in reversed(newest_first)]


def _utc(moment: datetime.datetime) -> datetime.datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{moment} has no time zone")
    return moment.astimezone(datetime.timezone.utc)
