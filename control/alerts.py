"""Incidents: a resource whose backups went missing, and the webhook told once when it opens and closes.

The incident's state (open or not) and what the webhook was last told are kept apart, so that a
webhook that could not be reached is told at the next tick, and told once.
"""

from __future__ import annotations

import datetime
import logging

import requests
from psycopg import Connection
from psycopg_pool import ConnectionPool

from control import schedules

log = logging.getLogger(__name__)
TIMEOUT = 10  # seconds
BATCH = 50


def open_incident(conn: Connection, resource_id, reason: str) -> bool:
    """Open an incident unless one is open already; True if this call opened it."""
    return conn.execute(
        "update resources set alert_open = true, alert_reason = %s, alert_opened_at = now()"
        " where id = %s and not alert_open", (reason, resource_id),
    ).rowcount == 1


def close_recovered(conn: Connection) -> int:
    """Close every incident whose resource has had a successful backup since it opened."""
    return conn.execute(
        "update resources s set alert_open = false where alert_open and exists (select 1 from runs r"
        " where r.resource_id = s.id and r.state = 'succeeded' and r.finished_at > s.alert_opened_at)"
    ).rowcount


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
        window = schedules.period(row["schedule"], row["timezone"], now) + slack
        if now - row["since"] > window:
            opened += open_incident(conn, row["id"], f"no successful backup in {window}")
    return opened


def notify(pool: ConnectionPool) -> int:
    """Tell each webhook what it has not been told yet; return how many were delivered."""
    delivered = 0
    with pool.connection() as conn:
        due = conn.execute(
            "select * from resources where alert_webhook is not null and ("
            " (alert_open and alert_notified is distinct from 'missing')"
            " or (not alert_open and alert_notified = 'missing'))"
            " for update skip locked limit %s", (BATCH,),
        ).fetchall()
        for resource in due:
            event = "missing" if resource["alert_open"] else "recovered"
            if _post(resource, event):
                conn.execute("update resources set alert_notified = %s where id = %s", (event, resource["id"]))
                delivered += 1
    return delivered


def _post(resource: dict, event: str) -> bool:
    body = {"event": f"backups.{event}", "resource_id": str(resource["id"]), "app": resource["app"],
            "reason": resource["alert_reason"] if event == "missing" else None,
            "since": resource["alert_opened_at"].isoformat()}
    try:
        answer = requests.post(resource["alert_webhook"], json=body, timeout=TIMEOUT)
    except requests.RequestException as e:
        log.warning("alert webhook of %s unreachable (%s); trying again next tick", resource["id"], type(e).__name__)
        return False
    if answer.status_code >= 300:
        log.warning("alert webhook of %s answered %s; trying again next tick", resource["id"], answer.status_code)
    return answer.status_code < 300
