"""Incidents: a resource whose backups went missing; its webhook is told when one opens and when it closes.

Opening or closing an incident queues a delivery in the same transaction (control/deliveries.py
sends it later, outside any transaction), so the webhook is told at least once, in order.
"""

from __future__ import annotations

import datetime
import logging

from psycopg import Connection
from psycopg.types.json import Jsonb

from control import resources, runs, schedules

log = logging.getLogger(__name__)
_CHANGED = "returning id, app, alert_webhook_sealed, alert_reason, alert_opened_at"


def open_incident(conn: Connection, resource_id, reason: str) -> bool:
    """Open an incident unless one is open already; True if this call opened it."""
    opened = conn.execute(
        "update resources set alert_open = true, alert_reason = %s, alert_opened_at = now()"
        f" where id = %s and not alert_open {_CHANGED}", (reason, resource_id),
    ).fetchone()
    if opened is not None:
        _tell(conn, opened, "missing")
    return opened is not None


def close_recovered(conn: Connection) -> int:
    """Close every incident whose resource has had a successful backup since it opened."""
    closed = conn.execute(
        "update resources s set alert_open = false where alert_open and exists (select 1 from runs r"
        " where r.resource_id = s.id and r.state = 'succeeded' and r.finished_at > s.alert_opened_at)"
        f" {_CHANGED}"
    ).fetchall()
    for resource in closed:
        _tell(conn, resource, "recovered")
    return len(closed)


def _tell(conn: Connection, resource: dict, event: str) -> None:
    if resource["alert_webhook_sealed"] is None:
        return
    body = {"event": f"backups.{event}", "resource_id": str(resource["id"]), "app": resource["app"],
            "reason": resource["alert_reason"] if event == "missing" else None,
            "since": resource["alert_opened_at"].isoformat()}
    conn.execute("insert into webhook_deliveries (resource_id, body) values (%s, %s)", (resource["id"], Jsonb(body)))


def open_overdue(conn: Connection, *, slack: datetime.timedelta, now: datetime.datetime) -> int:
    """Open an incident for each scheduled resource with no success within one schedule period plus ``slack``."""
    candidates = conn.execute(
        "select s.id, s.schedule, s.timezone, greatest(s.created_at, max(r.finished_at)) as since"
        " from resources s left join runs r on r.resource_id = s.id and r.state = 'succeeded'"
        " where s.schedule is not null and s.deprovisioned_at is null and not s.alert_open"
        " group by s.id"
    ).fetchall()
    opened = 0
    for row in candidates:
        try:
            window = schedules.period(row["schedule"], row["timezone"], now) + slack
        except Exception as e:  # noqa: BLE001 - a stored schedule that raises is its resource's problem alone
            log.warning("resource %s: its schedule cannot be used (%s)", row["id"], type(e).__name__)
            opened += _open(conn, row["id"], f"its schedule {row['schedule']!r} cannot be used ({type(e).__name__})")
            continue
        if now - row["since"] > window:
            opened += _open(conn, row["id"], f"no successful backup in {window}")
    return opened


def open_silent(conn: Connection, *, silence: datetime.timedelta, now: datetime.datetime) -> int:
    """Open an incident for each pulled resource whose helper app has not asked for a run for ``silence``."""
    silent = conn.execute(
        "select id, greatest(pulled_at, last_asked_at) as since, last_asked_at from resources"
        " where run_mode = 'pulled' and deprovisioned_at is null and not alert_open"
        " and greatest(pulled_at, last_asked_at) < %s", (now - silence,),
    ).fetchall()
    opened = 0
    for row in silent:
        asked = f"it last asked at {runs.iso(row['last_asked_at'])}" if row["last_asked_at"] else "it never asked"
        opened += _open(conn, row["id"], f"the helper app has not asked for a run since {runs.iso(row['since'])}"
                        f" ({asked}): is its Heroku Scheduler job `{resources.SCHEDULER_JOB}` there, and running?")
    return opened


def _open(conn: Connection, resource_id, reason: str) -> bool:
    """open_incident in a savepoint: one resource's failure leaves the others' incidents."""
    try:
        with conn.transaction():
            return open_incident(conn, resource_id, reason)
    except Exception:  # noqa: BLE001 - logged with its resource; the others go on
        log.exception("resource %s: could not open an incident", resource_id)
        return False
