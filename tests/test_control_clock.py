"""The clock: schedules in their time zones, claimed by exactly one of several clocks."""

from __future__ import annotations

import datetime
import subprocess
import threading

import pytest

from control import clock, db, schedules
from tests.controlplane import (REPO, RecordingLauncher, connect, control_argv, control_env, due_schedules,
                               make_resource)

UTC = datetime.timezone.utc
SCHEDULES = 1000


def test_schedules_fire_in_their_time_zone():
    winter = datetime.datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    summer = datetime.datetime(2026, 7, 10, 12, 0, tzinfo=UTC)
    assert schedules.next_after("0 3 * * *", "Europe/Paris", winter) == datetime.datetime(2026, 1, 11, 2, tzinfo=UTC)
    assert schedules.next_after("0 3 * * *", "Europe/Paris", summer) == datetime.datetime(2026, 7, 11, 1, tzinfo=UTC)
    assert schedules.period("0 */6 * * *", "UTC", winter) == datetime.timedelta(hours=6)


def test_two_clocks_over_a_thousand_due_schedules_launch_exactly_a_thousand_runs(app, control_db):
    due_schedules(control_db, SCHEDULES)
    launcher = RecordingLauncher()
    start = threading.Barrier(2)
    launched: list[int] = []

    def one_clock():
        with db.open_pool(control_db, max_size=2) as pool:  # each clock has its own connections
            start.wait()
            launched.append(clock.launch_due(pool, launcher, app.config))

    clocks = [threading.Thread(target=one_clock) for _ in range(2)]
    for thread in clocks:
        thread.start()
    for thread in clocks:
        thread.join()
    assert sum(launched) == SCHEDULES and min(launched) > 0, launched  # both clocks took a share
    with connect(control_db) as conn:
        counts = conn.execute(
            "select count(*) as runs, count(distinct resource_id) as resources,"
            " count(*) filter (where state = 'launched') as launched from runs").fetchone()
        behind = conn.execute("select count(*) as n from resources where next_run_at <= now()").fetchone()["n"]
    assert counts == {"runs": SCHEDULES, "resources": SCHEDULES, "launched": SCHEDULES}
    assert len({spec.run_id for spec in launcher.specs}) == SCHEDULES
    assert behind == 0


def test_the_clock_command_launches_a_due_schedule(app, control_db):
    resource, _ = make_resource(app, schedule="0 3 * * *")
    with connect(control_db) as conn:
        conn.execute("update resources set next_run_at = now() - interval '1 minute'")
    env = {**control_env(control_db), "REMORA_CONTROL_URL": "http://127.0.0.1:9"}
    result = subprocess.run(control_argv("clock", "--once"), env=env, cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "launched 1 runs" in result.stderr
    with connect(control_db) as conn:
        run = conn.execute("select * from runs").fetchone()
        following = conn.execute("select next_run_at from resources").fetchone()["next_run_at"]
    assert (run["trigger"], run["state"], run["resource_id"]) == ("schedule", "launched", resource["id"])
    assert run["handle"].isdigit()  # the local launcher's pid
    assert following > datetime.datetime.now(UTC) and following.astimezone(UTC).hour == 3



def test_a_schedule_fires_no_closer_than_the_minimum_counting_across_midnight():
    for allowed in ("0 * * * *", "30 2 * * *", "0 0 29 2 *", "0 23,0 * * *", "15 */2 * * 1-5", "0 0 L * *"):
        schedules.check(allowed, "Europe/Paris")
    for refused, gap in (("*/30 * * * *", "30 minutes"), ("0,59 * * * *", "1 minute"), ("5,55 0 * * *", "50 minutes")):
        with pytest.raises(schedules.ScheduleError, match=f"fires {gap} apart"):
            schedules.check(refused, "UTC")
    with pytest.raises(schedules.ScheduleError, match="fires 60 minutes apart"):  # 23:00, then 00:00
        schedules.check("0 0,23 * * *", "UTC", min_interval=datetime.timedelta(hours=2))
