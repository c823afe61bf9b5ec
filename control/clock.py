"""The clock: launches scheduled runs, finds lost runs, raises and clears alerts.

Any number of clocks may run side by side: each claims due schedules with
``SELECT … FOR UPDATE SKIP LOCKED`` in the transaction that creates their runs and moves the
schedules on, so a schedule's time is claimed by exactly one clock. Launching happens after
that transaction commits: a slow Platform API never holds a lock.
"""

from __future__ import annotations

import datetime
import logging
import time

from psycopg_pool import ConnectionPool

from control import alerts, db, launchers, runs, schedules
from control.launchers import GONE, RUNNING, Launcher

log = logging.getLogger(__name__)

BATCH = 50  # schedules claimed per transaction


def claim_due(
    pool: ConnectionPool, *, now: datetime.datetime, time_to_live: int, limit: int = BATCH
) -> list[tuple[dict, str, dict]]:
    """Create a run for up to ``limit`` schedules due at ``now`` and move each on; (run, token, resource)."""
    with pool.connection() as conn:
        due = conn.execute(
            "select * from resources where next_run_at <= %s and deprovisioned_at is null"
            " order by next_run_at for update skip locked limit %s",
            (now, limit),
        ).fetchall()
        claimed = []
        for resource in due:
            run, token = runs.create(conn, resource, trigger="schedule", time_to_live=time_to_live,
                                     scheduled_for=resource["next_run_at"])
            # missed times are not caught up: one run now stands for them, the next is in the future
            following = schedules.next_after(resource["schedule"], resource["timezone"], now)
            conn.execute("update resources set next_run_at = %s where id = %s", (following, resource["id"]))
            claimed.append((run, token, resource))
    return claimed


def launch_due(pool: ConnectionPool, launcher: Launcher, config) -> int:
    """Claim and launch every schedule due when this pass began; return how many runs were launched."""
    # one moment for the whole pass: a schedule that comes due while a long pass launches waits for
    # the next pass, instead of the pass chasing the clock
    now = datetime.datetime.now(datetime.timezone.utc)
    launched = 0
    while claimed := claim_due(pool, now=now, time_to_live=config["RUN_TTL"]):
        for run, token, resource in claimed:
            runs.launch(pool, launcher, run, token, resource, config["CONTROL_URL"])
        launched += len(claimed)
    return launched


def sweep_lost(pool: ConnectionPool, launcher: Launcher, config) -> int:
    """Mark lost every run that outlived its time to live plus the grace without ending; open incidents."""
    with pool.connection() as conn:
        overdue = conn.execute(
            "select r.*, s.app from runs r join resources s on s.id = r.resource_id"
            " where r.state = any(%s) and r.created_at + make_interval(secs => r.time_to_live + %s) < now()"
            " limit %s", (list(runs.ACTIVE), config["LOST_GRACE"], BATCH * 4),
        ).fetchall()
    lost = 0
    for run in overdue:
        # asked outside any transaction: the Platform API may be slow
        dyno = launcher.state(resource_id=str(run["resource_id"]), app=run["app"], handle=run["handle"]) \
            if run["handle"] else GONE
        reason = {RUNNING: "its process still runs past its time to live",
                  GONE: "its process is gone"}.get(dyno, "its process cannot be found")
        with pool.connection() as conn:
            # another clock may have got there first, or the run may have just reported
            if conn.execute(
                "update runs set state = 'lost', finished_at = now(), error = %s"
                " where id = %s and state = any(%s)",
                (f"no report within its time to live; {reason}", run["id"], list(runs.ACTIVE)),
            ).rowcount:
                lost += 1
                alerts.open_incident(conn, run["resource_id"], f"run {run['id']} was lost: {reason}")
    return lost


def tick(pool: ConnectionPool, launcher: Launcher, config) -> None:
    """One pass of everything the clock does."""
    launched = launch_due(pool, launcher, config)
    lost = sweep_lost(pool, launcher, config)
    slack = datetime.timedelta(seconds=config["RUN_TTL"] + config["LOST_GRACE"])
    with pool.connection() as conn:
        recovered = alerts.close_recovered(conn)
        overdue = alerts.open_overdue(conn, slack=slack, now=datetime.datetime.now(datetime.timezone.utc))
    notified = alerts.notify(pool)
    if launched or lost or recovered or overdue or notified:
        log.info("launched %d scheduled runs, %d runs lost, %d incidents opened for missing backups,"
                 " %d closed, %d webhooks told", launched, lost, overdue, recovered, notified)


def main(config, *, once: bool) -> None:
    """Tick every CLOCK_INTERVAL seconds until stopped (or once)."""
    logging.basicConfig(level=logging.INFO, format="level=%(levelname)s logger=%(name)s msg=%(message)r")
    with db.open_pool(config["DATABASE_URL"]) as pool:
        launcher = launchers.from_config(config, pool)
        while True:
            try:
                tick(pool, launcher, config)
            except Exception:  # noqa: BLE001 - a database hiccup must not stop the schedules for good
                log.exception("clock tick failed; trying again at the next one")
            if once:
                return
            time.sleep(config["CLOCK_INTERVAL"])
