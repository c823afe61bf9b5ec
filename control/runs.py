"""Runs: created, launched, then moved along by the runner's events until they end.

    queued → launched → running → succeeded | failed | lost
"""

from __future__ import annotations

import datetime
import logging
import re
import uuid

from psycopg import Connection
from psycopg_pool import ConnectionPool

from control import tokens
from control.launchers import Launcher, LaunchError, LaunchSpec

log = logging.getLogger(__name__)

ACTIVE = ("queued", "launched", "running")
ENDED = ("succeeded", "failed", "lost")
MAX_ERROR = 1000  # characters of the runner's one-line error kept


class EventError(ValueError):
    """An event whose body is not one the runner sends."""


def create(conn: Connection, resource: dict, *, trigger: str, time_to_live: int,
           scheduled_for: datetime.datetime | None = None) -> tuple[dict, str]:
    """Insert a queued run; return it and its token (handed to the run, stored only as a hash)."""
    token = tokens.new_token()
    row = conn.execute(
        "insert into runs (id, resource_id, trigger, scheduled_for, token_hash, time_to_live)"
        " values (%s, %s, %s, %s, %s, %s) returning *",
        (uuid.uuid4(), resource["id"], trigger, scheduled_for, tokens.digest(token), time_to_live),
    ).fetchone()
    return row, token


def launch(pool: ConnectionPool, launcher: Launcher, run: dict, token: str, resource: dict,
           control_url: str) -> dict:
    """Start the run's process, outside any transaction; a launch that fails marks the run failed."""
    spec = LaunchSpec(run_id=str(run["id"]), resource_id=str(resource["id"]), app=resource["app"],
                      control_url=control_url, time_to_live=run["time_to_live"], run_token=token)
    try:
        handle = launcher.launch(spec)
    except Exception as e:  # noqa: BLE001 - whatever happened, the run must not wait to be found lost
        if not isinstance(e, LaunchError):
            log.exception("launching run %s failed", run["id"])
        message = str(e) if isinstance(e, LaunchError) else f"internal error while launching ({type(e).__name__})"
        return _end(pool, run["id"], state="failed", error=f"launch failed: {message}")
    with pool.connection() as conn:
        # the runner may already have reported: never move a run backwards
        return conn.execute(
            "update runs set handle = %s, launched_at = now(),"
            " state = case when state = 'queued' then 'launched' else state end"
            " where id = %s returning *",
            (handle, run["id"]),
        ).fetchone()


def _end(pool: ConnectionPool, run_id, *, state: str, error: str) -> dict:
    with pool.connection() as conn:
        return conn.execute(
            "update runs set state = %s, error = %s, finished_at = now() where id = %s returning *",
            (state, error[:MAX_ERROR], run_id),
        ).fetchone()


def accepts_events(run: dict, *, grace: int, now: datetime.datetime | None = None) -> bool:
    """A run's token is good until the run ends or outlives its time to live plus the grace."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return run["state"] in ACTIVE and now < deadline(run, grace=grace)


def deadline(run: dict, *, grace: int) -> datetime.datetime:
    return run["created_at"] + datetime.timedelta(seconds=run["time_to_live"] + grace)


def apply_event(conn: Connection, run_id, event: dict) -> dict | None:
    """Record one event; None if the run ended meanwhile. Raises EventError for a bad body."""
    sets, values = _event_update(event)
    return conn.execute(
        f"update runs set {sets}, last_event_at = now() where id = %s and state = any(%s) returning *",
        (*values, run_id, list(ACTIVE)),
    ).fetchone()


def _event_update(event: dict) -> tuple[str, tuple]:
    kind = event.get("type")
    if kind == "started":
        return "state = 'running'", ()
    if kind == "progress":
        return "state = 'running', bytes_done = %s", (_count(event, "bytes"),)
    if kind == "succeeded":
        sha256 = event.get("sha256")
        if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise EventError("sha256 must be 64 lowercase hex digits")
        backup_id = event.get("backup_id")
        if not isinstance(backup_id, str) or not re.fullmatch(r"[0-9A-Za-z-]{1,64}", backup_id):
            raise EventError("backup_id must be a backup id")
        return (
            "state = 'succeeded', finished_at = now(), backup_id = %s, dump_bytes = %s,"
            " encrypted_bytes = %s, sha256 = %s, bytes_done = %s",
            (backup_id, _count(event, "dump_bytes"), _count(event, "encrypted_bytes"), sha256,
             event["encrypted_bytes"]),
        )
    if kind == "failed":
        error = event.get("error")
        if not isinstance(error, str):
            raise EventError("error must be a string")
        return ("state = 'failed', finished_at = now(), exit_code = %s, error = %s",
                (_count(event, "exit_code"), error[:MAX_ERROR]))
    raise EventError("type must be one of started, progress, succeeded, failed")


def _count(event: dict, name: str) -> int:
    value = event.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise EventError(f"{name} must be a whole number")
    return value


def newest(conn: Connection, resource_id, *, limit: int, offset: int = 0) -> list[dict]:
    """A resource's runs, newest first."""
    return conn.execute(
        "select * from runs where resource_id = %s order by created_at desc, id desc limit %s offset %s",
        (resource_id, limit, offset),
    ).fetchall()


def public(run: dict) -> dict:
    """A run as the API shows it: no token hash, times in ISO 8601."""
    ended = run["finished_at"]
    return {
        "id": str(run["id"]),
        "resource_id": str(run["resource_id"]),
        "state": run["state"],
        "trigger": run["trigger"],
        "created_at": _iso(run["created_at"]),
        "launched_at": _iso(run["launched_at"]),
        "finished_at": _iso(ended),
        "duration_seconds": round((ended - run["created_at"]).total_seconds(), 1) if ended else None,
        "bytes": run["bytes_done"],
        "backup": None if run["backup_id"] is None else {
            "id": run["backup_id"], "dump_bytes": run["dump_bytes"],
            "encrypted_bytes": run["encrypted_bytes"], "sha256": run["sha256"],
        },
        "exit_code": run["exit_code"],
        "error": run["error"],
    }


def _iso(moment: datetime.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
