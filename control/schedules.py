"""Cron schedules in the resource's time zone."""

from __future__ import annotations

import datetime
import functools
import zoneinfo

from croniter import croniter


class ScheduleError(ValueError):
    """A cron expression or time zone that cannot be used."""


def check(schedule: str | None, timezone: str) -> None:
    """Raise ScheduleError naming what is wrong with a schedule or time zone."""
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
        raise ScheduleError(f"time zone {timezone!r} is not known") from e
    if schedule is not None and not croniter.is_valid(schedule):
        raise ScheduleError(f"schedule {schedule!r} is not a cron expression (e.g. '0 3 * * *')")


# a clock pass asks this for every due resource at one moment, and most resources share a schedule
# (the add-on's default, daily at 03:00): parsing the cron expression each time was a quarter of a pass
@functools.lru_cache(maxsize=1024)
def next_after(schedule: str, timezone: str, moment: datetime.datetime) -> datetime.datetime:
    """The first time after ``moment`` that ``schedule`` fires, in UTC."""
    local = moment.astimezone(zoneinfo.ZoneInfo(timezone))
    return croniter(schedule, local).get_next(datetime.datetime).astimezone(datetime.timezone.utc)


def period(schedule: str, timezone: str, moment: datetime.datetime) -> datetime.timedelta:
    """The gap between the last firing before ``moment`` and the one before it: the backup window."""
    local = moment.astimezone(zoneinfo.ZoneInfo(timezone))
    it = croniter(schedule, local)
    last = it.get_prev(datetime.datetime)
    return last - it.get_prev(datetime.datetime)
