"""The clock: queues scheduled runs and launches the queue, finds lost runs, raises and clears alerts, and is
the only one that deletes in the add-on's storage (control/expiry.py).

Any number of clocks may run side by side: each claims due schedules with
``SELECT … FOR NO KEY UPDATE SKIP LOCKED`` in the transaction that queues their runs and moves the
schedules on, so a schedule's time is claimed by exactly one clock. Launching happens after that
transaction commits (control/worker.py): a slow Platform API never holds a lock.

Every resource and every run is handled on its own (a savepoint, or a transaction of its own),
and every phase of a pass on its own: a row that raises is logged with its resource's id and
recorded where its owner sees it, and never stops the others.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Mapping

import psycopg
from psycopg import Connection
from psycopg_pool import ConnectionPool

from control import alerts, db, deliveries, expiry, launchers, oauth, resources, runs, schedules, worker
from control.launchers import GONE, RUNNING, UNKNOWN, Launcher
from control.store import Store

log = logging.getLogger(__name__)

BATCH = 50  # schedules claimed per transaction


def queue_due(pool: ConnectionPool, *, now: datetime.datetime, time_to_live: int) -> int:
    """Queue a run for every schedule due at ``now`` and move each on; return how many were queued."""
    queued, unusable = 0, []
    while True:
        with pool.connection() as conn:
            due = conn.execute(
                "select * from resources where next_run_at <= %s and deprovisioned_at is null"
                " and not (id = any(%s::uuid[])) order by next_run_at for no key update skip locked limit %s",
                (now, unusable, BATCH),
            ).fetchall()
            done, left_out = _queue_batch(conn, due, now=now, time_to_live=time_to_live)
            queued, unusable = queued + done, unusable + left_out
        if not due:
            return queued


def queue_if_due(conn: Connection, resource_id, *, now: datetime.datetime, time_to_live: int) -> int:
    """Queue the resource's scheduled run if it is due and no clock has queued it yet (its helper app asks)."""
    due = conn.execute(
        "select * from resources where id = %s and next_run_at <= %s and deprovisioned_at is null"
        " for no key update skip locked", (resource_id, now),
    ).fetchall()
    return _queue_batch(conn, due, now=now, time_to_live=time_to_live)[0]


def _queue_batch(conn: Connection, due: list[dict], *, now: datetime.datetime,
                 time_to_live: int) -> tuple[int, list]:
    """Queue the due resources' runs and move their schedules on; (how many, ids that could not be recorded)."""
    following, failures = {}, []
    for resource in due:
        try:  # missed times are not caught up: one run now stands for them, the next is in the future
            following[resource["id"]] = schedules.next_after(resource["schedule"], resource["timezone"], now)
        except Exception as e:  # noqa: BLE001 - one resource's schedule is its problem alone
            failures.append((resource, e))
    queued = _queue_all(conn, [r for r in due if r["id"] in following], following, failures,
                        time_to_live=time_to_live)
    return queued, [r["id"] for r, e in failures if not _unusable(conn, r, e, time_to_live=time_to_live)]


def _queue_all(conn: Connection, resources: list[dict], following: dict, failures: list, *,
               time_to_live: int) -> int:
    """Queue the batch in two statements; should they fail, one resource at a time (each in a savepoint)."""
    try:
        with conn.transaction():
            return _queue(conn, resources, following, time_to_live=time_to_live)
    except Exception:  # noqa: BLE001 - the row at fault is found below, and only it is left out
        log.exception("queueing %d scheduled runs at once failed; one resource at a time", len(resources))
    queued = 0
    for resource in resources:
        try:
            with conn.transaction():
                queued += _queue(conn, [resource], following, time_to_live=time_to_live)
        except Exception as e:  # noqa: BLE001 - recorded as the resource's own failure
            failures.append((resource, e))
    return queued


def _queue(conn: Connection, resources: list[dict], following: dict, *, time_to_live: int) -> int:
    ids = [r["id"] for r in resources]
    # a resource with an active run gets none (on conflict): that run stands for this time
    queued = conn.execute(
        "insert into runs (id, resource_id, trigger, scheduled_for, time_to_live) select gen_random_uuid(), r, "
        "'schedule', s, %s from unnest(%s::uuid[], %s::timestamptz[]) as t(r, s) on conflict do nothing",
        (time_to_live, ids, [r["next_run_at"] for r in resources])).rowcount
    conn.execute("update resources set next_run_at = t.f from unnest(%s::uuid[], %s::timestamptz[]) as t(id, f)"
                 " where resources.id = t.id", (ids, [following[i] for i in ids]))
    return queued


def _unusable(conn: Connection, resource: dict, error: Exception, *, time_to_live: int) -> bool:
    """Stop a schedule that raised, and tell its owner: a failed run, an incident, the reason kept."""
    reason = (f"the schedule {resource['schedule']!r} cannot be used ({type(error).__name__}); scheduled "
              "backups stop until it is changed")
    log.warning("resource %s: %s", resource["id"], reason, exc_info=not isinstance(error, ValueError))
    try:
        with conn.transaction():
            conn.execute("update resources set next_run_at = null, schedule_error = %s where id = %s",
                         (reason, resource["id"]))
            runs.failed(conn, resource["id"], trigger="schedule", scheduled_for=resource["next_run_at"],
                        time_to_live=time_to_live, error=reason)
            alerts.open_incident(conn, resource["id"], reason)
        return True
    except Exception:  # noqa: BLE001 - logged; the pass goes on without this resource
        log.exception("resource %s: could not record that its schedule cannot be used", resource["id"])
        return False


def launch_due(pool: ConnectionPool, launcher: Launcher, config: Mapping) -> int:
    """Queue every schedule due when this pass began, then launch the queue; return how many were launched."""
    # one moment for the whole pass: a schedule that comes due while a long pass launches waits for
    # the next pass, instead of the pass chasing the clock
    now = datetime.datetime.now(datetime.timezone.utc)
    queue_due(pool, now=now, time_to_live=config["RUN_TTL"])
    return worker.launch_queued(pool, launcher, config)


def sweep_lost(pool: ConnectionPool, launcher: Launcher, config: Mapping) -> int:
    """Mark lost every run that outlived its time to live, or whose launch came to nothing; open incidents."""
    grace = config["LOST_GRACE"]
    with pool.connection() as conn:
        overdue = conn.execute(
            "select r.*, s.app, s.run_mode from runs r join resources s on s.id = r.resource_id"
            " where r.state = any(%s) and ("
            " r.created_at + make_interval(secs => r.time_to_live + %s) < now()"
            " or (r.handle is null and r.last_event_at is null and r.claimed_at + make_interval(secs => %s) < now()))"
            " limit %s", (list(runs.ACTIVE), grace, grace, BATCH * 4),
        ).fetchall()
    lost = 0
    for run in overdue:
        try:
            lost += _lose(pool, run, _why_lost(launcher, run))
        except Exception:  # noqa: BLE001 - logged with its run; the others are swept
            log.exception("run %s of resource %s: could not be swept", run["id"], run["resource_id"])
    return lost


def _why_lost(launcher: Launcher, run: dict) -> str:
    if run["claimed_at"] is None and run["run_mode"] == "pulled":
        return (f"no report within its time to live; its helper app never asked for it (is its Heroku Scheduler "
                f"job `{resources.SCHEDULER_JOB}` there?)")
    if run["claimed_at"] is None:
        return "no report within its time to live; no worker launched it (is `remora-control clock` running?)"
    if run["launched_at"] is None:
        return "its launch was interrupted"
    if run["handle"] is None:
        return "its launch was not confirmed and no process of it reported"
    if run["handle"] == runs.PULLED:
        return "no report within its time to live; the helper app took it and never reported its end"
    try:
        # asked outside any transaction: the Platform API may be slow
        dyno = launcher.state(resource_id=str(run["resource_id"]), app=run["app"], handle=run["handle"])
    except Exception:  # noqa: BLE001 - an unexpected answer about one run is that run's alone
        log.exception("run %s of resource %s: its process's state is unknown", run["id"], run["resource_id"])
        dyno = UNKNOWN
    return "no report within its time to live; " + {
        RUNNING: "its process still runs past its time to live", GONE: "its process is gone"}.get(
        dyno, "its process cannot be found")


def _lose(pool: ConnectionPool, run: dict, reason: str) -> int:
    with pool.connection() as conn:
        # another clock may have got there first, or the run may have just reported
        if not conn.execute("update runs set state = 'lost', finished_at = now(), error = %s"
                            " where id = %s and state = any(%s)", (reason, run["id"], list(runs.ACTIVE))).rowcount:
            return 0
        alerts.open_incident(conn, run["resource_id"], f"run {run['id']} was lost: {reason}")
        return 1


def _incidents(pool: ConnectionPool, config: Mapping) -> tuple[int, int]:
    slack = datetime.timedelta(seconds=config["RUN_TTL"] + config["LOST_GRACE"])
    now = datetime.datetime.now(datetime.timezone.utc)
    with pool.connection() as conn:
        recovered = alerts.close_recovered(conn)
        overdue = alerts.open_overdue(conn, slack=slack, now=now)
        overdue += alerts.open_silent(conn, silence=datetime.timedelta(seconds=config["HELPER_SILENCE"]), now=now)
    return recovered, overdue


def tick(pool: ConnectionPool, launcher: Launcher, config: Mapping, store: Store | None = None) -> None:
    """One pass of everything the clock does; each part goes on whatever the others did."""
    # first, within the five minutes a provision's grant lives, and before launches need its tokens
    redeemed = _part("exchanging provision grants", 0, oauth.redeem_pending, pool, config)
    launched = _part("launching scheduled runs", 0, launch_due, pool, launcher, config)
    lost = _part("finding lost runs", 0, sweep_lost, pool, launcher, config)
    recovered, overdue = _part("raising and clearing incidents", (0, 0), _incidents, pool, config)
    told = _part("telling webhooks", 0, deliveries.deliver, pool, config)
    removed = _part("cleaning the add-on's storage", 0, expiry.run, pool, store, config["STORAGE_GRACE"])
    if redeemed or launched or lost or recovered or overdue or told or removed:
        log.info("%d grants exchanged, launched %d runs, %d runs lost, %d incidents opened for missing backups,"
                 " %d closed, %d webhooks told, %d removed from the add-on's storage",
                 redeemed, launched, lost, overdue, recovered, told, removed)


def _part(name: str, nothing, step: Callable, *args):
    try:
        return step(*args)
    except Exception:  # noqa: BLE001 - a database hiccup in one part must not stop the others
        log.exception("clock: %s failed; trying again at the next pass", name)
        return nothing


def main(config: Mapping, *, once: bool) -> None:
    """A pass every CLOCK_INTERVAL seconds until stopped (or once); between passes, launch what triggers queue."""
    logging.basicConfig(level=logging.INFO, format="level=%(levelname)s logger=%(name)s msg=%(message)r")
    with db.open_pool(config["DATABASE_URL"], max_size=worker.THREADS + 1) as pool:
        launcher = launchers.from_config(config, pool)
        store = Store.from_config(config)
        while True:
            try:
                with worker.listening(config["DATABASE_URL"]) as listener:
                    return _run(pool, launcher, config, store, listener, once=once)
            except psycopg.OperationalError:  # a database hiccup must not stop the schedules for good
                log.exception("clock: lost the database; trying again in %d s", config["CLOCK_INTERVAL"])
                time.sleep(config["CLOCK_INTERVAL"])


def _run(pool: ConnectionPool, launcher: Launcher, config: Mapping, store: Store | None, listener: Connection, *,
         once: bool) -> None:
    while True:
        tick(pool, launcher, config, store)
        if once:
            return
        next_pass = time.monotonic() + config["CLOCK_INTERVAL"]
        while (left := next_pass - time.monotonic()) > 0:
            if worker.wait(listener, timeout=left):
                _part("launching triggered runs", 0, worker.launch_queued, pool, launcher, config)
