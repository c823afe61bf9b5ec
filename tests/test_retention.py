"""The retention policy (runner/retention.py): examples, its parser, and properties checked by hypothesis."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings, strategies as st

from runner import catalog, prune
from runner.config import Config
from runner.errors import UsageError
from runner.retention import KINDS, Policy, parse, plan
from runner.targets import ObjectInfo

UTC = datetime.timezone.utc


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def backups(*moments: str) -> dict[str, datetime.datetime]:
    """Backups named by their times (the planner needs only distinct ids and their times)."""
    return {moment: at(moment) for moment in moments}


def kept(decisions) -> dict[str, tuple[str, ...]]:
    return {d.id: d.reasons for d in decisions if d.keep}


# --- examples ------------------------------------------------------------------------------------


def test_daily_keeps_the_newest_of_each_of_the_last_days_that_have_a_backup():
    times = backups("2026-11-27T22:00", "2026-11-27T08:00", "2026-11-25T23:59", "2026-11-20T01:00")
    assert kept(plan(Policy(daily=2), times)) == {
        "2026-11-27T22:00": ("newest", "daily 2026-11-27"),
        "2026-11-25T23:59": ("daily 2026-11-25",),  # a day without a backup does not count
    }


def test_kinds_add_up_and_each_reason_is_given():
    times = backups("2026-11-27T10:00", "2026-11-26T10:00", "2026-11-16T10:00", "2026-10-31T10:00", "2025-12-31T10:00")
    assert kept(plan(Policy(daily=1, weekly=2, monthly=3, yearly=2), times)) == {
        "2026-11-27T10:00": ("newest", "daily 2026-11-27", "weekly 2026-W48", "monthly 2026-11", "yearly 2026"),
        "2026-11-16T10:00": ("weekly 2026-W47",),
        "2026-10-31T10:00": ("monthly 2026-10",),
        "2025-12-31T10:00": ("monthly 2025-12", "yearly 2025"),
    }


def test_weeks_are_iso_weeks_across_the_new_year():
    # Thursday 2026-12-31 and Sunday 2027-01-03 are both in 2026-W53; Monday 2027-01-04 starts 2027-W01
    times = backups("2027-01-04T00:00", "2027-01-03T23:00", "2026-12-31T12:00", "2026-12-27T12:00")
    assert kept(plan(Policy(weekly=3), times)) == {
        "2027-01-04T00:00": ("newest", "weekly 2027-W01"),
        "2027-01-03T23:00": ("weekly 2026-W53",),
        "2026-12-27T12:00": ("weekly 2026-W52",),
    }


def test_days_are_utc_days():
    times = {
        "late": datetime.datetime.fromisoformat("2026-11-27T23:30-05:00"),  # 04:30 on the 28th in UTC
        "early": at("2026-11-28T01:00"),
    }
    assert kept(plan(Policy(daily=5), times)) == {"late": ("newest", "daily 2026-11-28")}


def test_the_newest_is_kept_even_when_the_policy_keeps_nothing():
    times = backups("2026-11-27T10:00", "2026-11-26T10:00")
    assert kept(plan(Policy(), times)) == {"2026-11-27T10:00": ("newest",)}
    assert plan(Policy(daily=3), {}) == []


# --- the parser ------------------------------------------------------------------------------------


def test_parse_takes_any_subset_of_the_kinds():
    assert parse("daily=7,weekly=4,monthly=12", source="X") == Policy(daily=7, weekly=4, monthly=12)
    assert parse(" yearly = 3 , daily=0", source="X") == Policy(yearly=3)
    assert str(Policy(daily=7, monthly=12)) == "daily=7,monthly=12"
    assert str(Policy()) == "daily=0,weekly=0,monthly=0,yearly=0"


@pytest.mark.parametrize("text, says", [
    ("hourly=24", "'hourly=24'"),
    ("daily", "'daily'"),
    ("daily=-1", "daily must be a whole number"),
    ("daily=7,weekly=four", "weekly must be a whole number"),
    ("daily=1,daily=2", "gives daily twice"),
    ("", "''"),
    ("daily=7,", "''"),
    ("daily=٣", "daily must be a whole number"),
])
def test_parse_refuses_bad_policies_naming_the_source(text, says):
    with pytest.raises(UsageError, match="^--keep ") as caught:
        parse(text, source="--keep")
    assert says in caught.value.message


def test_the_config_reads_the_variable_and_the_flag_wins():
    assert Config.from_env({"REMORA_RETENTION": "daily=3"}).retention == Policy(daily=3)
    assert Config.from_env({"REMORA_RETENTION": "daily=3"}, keep="weekly=2").retention == Policy(weekly=2)
    assert Config.from_env({}).retention is None
    with pytest.raises(UsageError) as caught:
        Config.from_env({"REMORA_RETENTION": "daily=x", "REMORA_S3_CONCURRENCY": "0"})
    assert "REMORA_RETENTION daily must be a whole number" in caught.value.message
    assert "REMORA_S3_CONCURRENCY" in caught.value.message  # every problem at once


# --- properties ------------------------------------------------------------------------------------

moments = st.datetimes(
    min_value=datetime.datetime(2024, 1, 1), max_value=datetime.datetime(2028, 12, 31), timezones=st.just(UTC)
)
# ids as the catalog makes them: they sort by time, and a random tail keeps them apart within a second
sets_of_backups = st.lists(st.tuples(moments, st.integers(0, 0xFFFFFF)), max_size=60).map(
    lambda items: {f"{t:%Y%m%dT%H%M%SZ}-{n:06x}": t.replace(microsecond=0) for t, n in items}
)
counts = st.integers(0, 6)
policies = st.builds(Policy, daily=counts, weekly=counts, monthly=counts, yearly=counts)
PERIODS = {
    "daily": lambda t: f"{t:%Y-%m-%d}",
    "weekly": lambda t: "{:04d}-W{:02d}".format(*t.isocalendar()[:2]),
    "monthly": lambda t: f"{t:%Y-%m}",
    "yearly": lambda t: f"{t:%Y}",
}


@given(policies, sets_of_backups)
def test_every_backup_is_decided_once_and_the_newest_is_kept(policy, times):
    decisions = plan(policy, times)
    assert [d.id for d in decisions] == sorted(times)  # ids sort by time: oldest first
    if times:
        newest = max(times)
        assert "newest" in kept(decisions)[newest]
    assert len(kept(decisions)) <= 1 + sum(getattr(policy, kind) for kind in KINDS)


@given(policies, sets_of_backups)
def test_each_kind_keeps_the_newest_of_its_most_recent_periods(policy, times):
    decisions = kept(plan(policy, times))
    for kind, period_of in PERIODS.items():
        periods = sorted({period_of(t) for t in times.values()}, reverse=True)
        expected = {
            period: max(i for i, t in times.items() if period_of(t) == period)
            for period in periods[: getattr(policy, kind)]
        }
        actual = {
            reason.split(" ", 1)[1]: backup_id
            for backup_id, reasons in decisions.items()
            for reason in reasons
            if reason.startswith(kind + " ")
        }
        assert actual == expected, kind


@given(policies, sets_of_backups)
def test_pruning_what_was_kept_keeps_it_all(policy, times):
    first = kept(plan(policy, times))
    again = plan(policy, {i: times[i] for i in first})
    assert kept(again) == first


@given(policies, sets_of_backups, moments)
@settings(max_examples=200)
def test_an_older_backup_never_displaces_a_kept_one(policy, times, moment):
    if times and moment >= min(times.values()):
        moment = min(times.values()) - datetime.timedelta(seconds=1)
    older = {**times, f"{moment:%Y%m%dT%H%M%SZ}-000000": moment.replace(microsecond=0)}
    assert set(kept(plan(policy, times))) <= set(kept(plan(policy, older)))


labelled_backups = st.lists(
    st.tuples(st.sampled_from(["shop", "crm", "db-2"]), moments, st.integers(0, 0xFFFFFF)), max_size=40
).map(lambda items: {(label, f"{t:%Y%m%dT%H%M%SZ}-{n:06x}"): t.replace(microsecond=0) for label, t, n in items})


@given(policies, labelled_backups)
def test_the_plan_of_prune_and_of_the_add_ons_clock_deletes_exactly_what_the_policy_does_not_keep(policy, backups):
    """``prune.decide`` is the one plan: ``remora-backup prune``, a run's prune after its backup and the add-on's
    clock (control/expiry.py) all carry it out, each label judged on its own, each backup manifest first."""
    now = datetime.datetime(2029, 1, 1, tzinfo=UTC)
    objects = {key: ObjectInfo(key, 1, now) for label, backup_id in backups
               for key in (catalog.archive_key(label, backup_id), catalog.manifest_key(label, backup_id))}
    steps = prune.decide(objects, [], policy, now=now, leftover_age=datetime.timedelta(hours=24))
    expected = []
    for label in {label for label, _ in backups}:
        times = {backup_id: t for (each, backup_id), t in backups.items() if each == label}
        expected += [(catalog.manifest_key(label, d.id), catalog.archive_key(label, d.id))
                     for d in plan(policy, times) if not d.keep]
    assert sorted(step.keys for step in steps if step.verb == "delete") == sorted(expected)
    assert len(steps) == len(backups)
