"""Cron schedules in the resource's time zone: five fields, no more often than the minimum interval."""

from __future__ import annotations

import datetime
import functools
import zoneinfo

from croniter import croniter

MIN_INTERVAL = datetime.timedelta(hours=1)  # a plan may allow less; none does yet
MAX_LENGTH = 100
DAY_MINUTES = 24 * 60


class ScheduleError(ValueError):
    """A cron expression or time zone that cannot be used."""


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check(schedule: str | None, timezone: str, *, min_interval: datetime.timedelta = MIN_INTERVAL) -> None:
    """Raise ScheduleError naming what is wrong with a schedule or time zone.

    croniter takes 6 and 7 fields (seconds, years) and expressions that never fire: each would
    raise later, in the clock. So the fields are counted, the next and the previous firing are
    both computed here, and the firings of one day must be ``min_interval`` apart.
    """
    if not isinstance(timezone, str) or timezone not in _zones():
        raise ScheduleError(f"time zone {_shown(timezone)} is not known (e.g. 'Europe/Paris')")
    if schedule is None:
        return
    if not isinstance(schedule, str) or len(schedule) > MAX_LENGTH or len(schedule.split()) != 5:
        raise ScheduleError(f"schedule {_shown(schedule)} is not a cron expression of five fields "
                            "(minute hour day month weekday, e.g. '0 3 * * *')")
    now = datetime.datetime.now(datetime.timezone.utc)
    try:
        next_after(schedule, timezone, now)
        period(schedule, timezone, now)
        gap = _shortest_gap(schedule)
    except Exception as e:  # noqa: BLE001 - croniter raises many kinds; every one means "unusable"
        raise ScheduleError(f"schedule {_shown(schedule)} cannot be used ({_why(e)})") from e
    if gap < min_interval:
        raise ScheduleError(f"schedule {_shown(schedule)} fires {_minutes(gap)} apart; "
                            f"the shortest interval allowed is {_minutes(min_interval)}")


def _shortest_gap(schedule: str) -> datetime.timedelta:
    """The shortest time between two firings, from the minute and hour fields (a day wraps to the next)."""
    fields, _ = croniter.expand(schedule)
    minutes = range(60) if fields[0] == ["*"] else fields[0]
    hours = range(24) if fields[1] == ["*"] else fields[1]
    times = sorted({hour * 60 + minute for hour in hours for minute in minutes})
    gaps = [later - earlier for earlier, later in zip(times, times[1:] + [times[0] + DAY_MINUTES])]
    return datetime.timedelta(minutes=min(gaps))


# a clock pass asks this for every due resource at one moment, and most resources share a schedule
# (the add-on's default, daily at 03:00): parsing the cron expression each time was a quarter of a pass
@functools.lru_cache(maxsize=1024)
def next_after(schedule: str, timezone: str, moment: datetime.datetime) -> datetime.datetime:
    """The first time after ``moment`` that ``schedule`` fires, in UTC."""
    local = moment.astimezone(zoneinfo.ZoneInfo(timezone))
    return croniter(schedule, local).get_next(datetime.datetime).astimezone(datetime.timezone.utc)


@functools.lru_cache(maxsize=1024)  # asked for every scheduled resource at one moment, as next_after is
def period(schedule: str, timezone: str, moment: datetime.datetime) -> datetime.timedelta:
    """The gap between the last firing before ``moment`` and the one before it: the backup window."""
    local = moment.astimezone(zoneinfo.ZoneInfo(timezone))
    it = croniter(schedule, local)
    last = it.get_prev(datetime.datetime)
    return last - it.get_prev(datetime.datetime)


def _shown(value) -> str:
    return repr(value[:MAX_LENGTH] + "…" if len(value) > MAX_LENGTH else value) if isinstance(value, str) \
        else type(value).__name__


def _why(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


def _minutes(gap: datetime.timedelta) -> str:
    minutes = int(gap.total_seconds() // 60)
    return f"{minutes} minute{'s' * (minutes != 1)}"
