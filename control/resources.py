"""Resources: one per add-on (or per `resource create`), each with its API token and schedule."""

from __future__ import annotations

import datetime
import urllib.parse
import uuid

from psycopg import Connection

from control import schedules, tokens


class SettingError(ValueError):
    """A schedule, time zone or webhook that cannot be used; the message names it."""


def check_settings(*, schedule: str | None, timezone: str, alert_webhook: str | None) -> None:
    try:
        schedules.check(schedule, timezone)
    except schedules.ScheduleError as e:
        raise SettingError(str(e)) from e
    if alert_webhook is not None and urllib.parse.urlsplit(alert_webhook).scheme not in ("http", "https"):
        raise SettingError(f"alert webhook {alert_webhook!r} is not an http(s) URL")


def create(conn: Connection, *, app: str | None, resource_id: uuid.UUID | None = None, plan: str = "local",
           region: str | None = None, schedule: str | None = None, timezone: str = "UTC",
           alert_webhook: str | None = None, api_token: str | None = None) -> tuple[dict, str]:
    """Insert a resource; return its row and its API token (shown once, stored only as a hash)."""
    check_settings(schedule=schedule, timezone=timezone, alert_webhook=alert_webhook)
    api_token = api_token or tokens.new_token()
    now = datetime.datetime.now(datetime.timezone.utc)
    next_run_at = schedules.next_after(schedule, timezone, now) if schedule else None
    row = conn.execute(
        "insert into resources (id, app, plan, region, api_token_hash, schedule, timezone, next_run_at,"
        " alert_webhook) values (%s, %s, %s, %s, %s, %s, %s, %s, %s) returning *",
        (resource_id or uuid.uuid4(), app, plan, region, tokens.digest(api_token), schedule, timezone,
         next_run_at, alert_webhook),
    ).fetchone()
    return row, api_token


def by_api_token(conn: Connection, api_token: str) -> dict | None:
    """The live resource this API token belongs to.

    Looked up by the token's SHA-256: the lookup's timing tells nothing about the token itself.
    """
    return conn.execute(
        "select * from resources where api_token_hash = %s and deprovisioned_at is null",
        (tokens.digest(api_token),),
    ).fetchone()


def get(conn: Connection, resource_id) -> dict | None:
    return conn.execute(
        "select * from resources where id = %s and deprovisioned_at is null", (resource_id,)
    ).fetchone()
