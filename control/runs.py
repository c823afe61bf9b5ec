"""Runs: queued, claimed and launched by a worker, then moved along by the runner's events until they end.

    queued → launched → running → succeeded | failed | lost

A resource has at most one active (queued, launched or running) run: a unique index says so, and
whoever queues a run while another is active gets that one instead. A run's token is made when a
worker claims it to launch (it is stored only as a hash), so a queued run has none. The first
``started`` event claims the run for the process that sent it; any other process of the same run
is told so (409) and stops without dumping.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import re
import uuid

from psycopg import Connection

from control import inputs, resources, tokens
from control.launchers import Launcher, LaunchError, LaunchRefused, LaunchSpec, LaunchUnconfirmed

log = logging.getLogger(__name__)

ACTIVE = ("queued", "launched", "running")
ENDED = ("succeeded", "failed", "lost")
MAX_ERROR = 1000  # characters of the runner's one-line error kept
MAX_COUNT = 2**63 - 1  # bigint
MAX_EXIT_CODE = 255
BACKUP_ID = re.compile(r"[0-9A-Za-z-]{1,64}")  # a backup id as a run reports it
PULLED = "run-due"  # the handle of a run its helper app took (control/pulling.py): no launcher knows its process


class EventError(ValueError):
    """An event whose body is not one the runner sends."""


class RunEnded(Exception):
    """The run has ended: it takes no more events."""


class StartedElsewhere(Exception):
    """Another process of this run sent ``started`` first."""


def enqueue(conn: Connection, resource_id, *, trigger: str, time_to_live: int) -> dict | None:
    """Queue a run; None if the resource has an active run already."""
    return conn.execute(
        "insert into runs (id, resource_id, trigger, time_to_live) values (%s, %s, %s, %s)"
        " on conflict do nothing returning *",
        (uuid.uuid4(), resource_id, trigger, time_to_live),
    ).fetchone()


def failed(conn: Connection, resource_id, *, trigger: str, time_to_live: int, error: str,
           scheduled_for: datetime.datetime | None = None) -> None:
    """Record a run that failed before it could be queued, where its owner sees runs."""
    conn.execute(
        "insert into runs (id, resource_id, trigger, scheduled_for, state, time_to_live, finished_at, error)"
        " values (%s, %s, %s, %s, 'failed', %s, now(), %s) on conflict do nothing",
        (uuid.uuid4(), resource_id, trigger, scheduled_for, time_to_live, error[:MAX_ERROR]),
    )


def get(conn: Connection, run_id) -> dict | None:
    return conn.execute("select * from runs where id = %s", (run_id,)).fetchone()


def active(conn: Connection, resource_id) -> dict | None:
    return conn.execute("select * from runs where resource_id = %s and state = any(%s)",
                        (resource_id, list(ACTIVE))).fetchone()


def claim(conn: Connection, *, limit: int, resource_id=None, launched_only: bool = False) -> list[tuple[dict, str]]:
    """Take up to ``limit`` queued runs (of one resource, if given) to launch, oldest first; (run, its new token).

    Each run comes with its resource's ``app``. Claimed runs are skipped by every other claim, so
    any number of workers can take from the queue at once. ``launched_only`` leaves the runs of
    pulled resources to their helper apps.
    """
    due = conn.execute(
        "select r.*, s.app from runs r join resources s on s.id = r.resource_id"
        " where r.state = 'queued' and r.claimed_at is null and (%s::uuid is null or r.resource_id = %s)"
        " and (not %s or s.run_mode = 'launched') order by r.created_at limit %s for update of r skip locked",
        (resource_id, resource_id, launched_only, limit),
    ).fetchall()
    claimed = [(run, tokens.new_token()) for run in due]
    conn.execute("update runs set claimed_at = now(), token_hash = t.hash from unnest(%s::uuid[], %s::bytea[])"
                 " as t(id, hash) where runs.id = t.id",
                 ([run["id"] for run, _ in claimed], [tokens.digest(token) for _, token in claimed]))
    return claimed


@dataclasses.dataclass(frozen=True)
class Launch:
    """What became of one claimed run's launch: its process's handle (None if unconfirmed), or why it failed.

    ``refused``: the platform will not start processes for its resource; the run goes back to the
    queue, for its helper app to ask for, with this note.
    """

    run_id: uuid.UUID
    handle: str | None = None
    error: str | None = None
    resource_id: uuid.UUID | None = None
    refused: str | None = None


def launch(launcher: Launcher, run: dict, token: str, control_url: str) -> Launch:
    """Start a claimed run's process, outside any transaction; never raises (``record`` keeps the outcome).

    A launch whose outcome is unknown (Heroku may have started the dyno) leaves the run launched
    without a handle: its process reports if it exists, and the clock finds it lost if it does not.
    """
    spec = LaunchSpec(run_id=str(run["id"]), resource_id=str(run["resource_id"]), app=run["app"],
                      control_url=control_url, time_to_live=run["time_to_live"], run_token=token)
    try:
        return Launch(run["id"], handle=launcher.launch(spec))
    except LaunchUnconfirmed as e:
        log.warning("run %s of resource %s: %s", run["id"], run["resource_id"], e)
        return Launch(run["id"])
    except LaunchRefused as e:
        log.warning("run %s of resource %s: %s; its runs are pulled from now on", run["id"], run["resource_id"], e)
        return Launch(run["id"], resource_id=run["resource_id"], refused=_refused(e))
    except LaunchError as e:
        return Launch(run["id"], error=f"launch failed: {e}"[:MAX_ERROR])
    except Exception as e:  # noqa: BLE001 - whatever happened, the run must not wait to be found lost
        log.exception("launching run %s of resource %s failed", run["id"], run["resource_id"])
        return Launch(run["id"], error=f"launch failed: internal error while launching ({type(e).__name__})")


def _refused(error: LaunchRefused) -> str:
    return (f"Heroku refused to start a dyno for this run ({error}). The add-on may not start dynos on the "
            f"helper app, so its runs now wait for the helper app to ask: {resources.SCHEDULER_SETUP}")[:MAX_ERROR]


def record(conn: Connection, launches: list[Launch]) -> None:
    """Keep what became of launches: launched (never moving a run backwards: it may have reported), failed,
    or refused (back in the queue, for its helper app, and its resource pulled)."""
    for launch in (launch for launch in launches if launch.refused is not None):
        conn.execute("update runs set claimed_at = null, token_hash = null, error = %s where id = %s"
                     " and state = 'queued'", (launch.refused, launch.run_id))
        resources.pull(conn, launch.resource_id, launch.refused)
    launches = [launch for launch in launches if launch.refused is None]
    done = [launch for launch in launches if launch.error is None]
    conn.execute(
        "update runs set handle = t.handle, launched_at = now(),"
        " state = case when state = 'queued' then 'launched' else state end"
        " from unnest(%s::uuid[], %s::text[]) as t(id, handle) where runs.id = t.id",
        ([launch.run_id for launch in done], [launch.handle for launch in done]))
    failed = [launch for launch in launches if launch.error is not None]
    conn.execute(
        "update runs set state = 'failed', error = t.error, finished_at = now()"
        " from unnest(%s::uuid[], %s::text[]) as t(id, error) where runs.id = t.id and state = any(%s)",
        ([launch.run_id for launch in failed], [launch.error for launch in failed], list(ACTIVE)))


def accepts_events(run: dict, *, grace: int, now: datetime.datetime | None = None) -> bool:
    """A run's token is good until the run ends or outlives its time to live plus the grace."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return run["state"] in ACTIVE and now < deadline(run, grace=grace)


def deadline(run: dict, *, grace: int) -> datetime.datetime:
    return run["created_at"] + datetime.timedelta(seconds=run["time_to_live"] + grace)


def record_event(conn: Connection, run: dict, event: dict, *, grace: int) -> dict:
    """Record one event of ``run``; the run as it is now.

    Raises EventError for a bad body, StartedElsewhere for a second process's ``started``, and
    RunEnded once the run has ended or outlived its time to live.
    """
    sets, values = _event_update(event)
    process = values[0] if event.get("type") == "started" else None
    if process is not None and run["started_by"] not in (None, process):
        raise StartedElsewhere
    if not accepts_events(run, grace=grace):
        raise RunEnded
    updated = conn.execute(
        f"update runs set {sets}, last_event_at = now() where id = %s and state = any(%s)"
        " and (%s::text is null or started_by is null or started_by = %s) returning *",
        (*values, run["id"], list(ACTIVE), process, process),
    ).fetchone()
    if updated is not None:
        return updated
    # a process of the same run got there first, or the run ended meanwhile
    if process is not None and get(conn, run["id"])["started_by"] not in (None, process):
        raise StartedElsewhere
    raise RunEnded


def _event_update(event: dict) -> tuple[str, tuple]:
    kind = event.get("type")
    if kind == "started":
        process = event.get("process", "")  # a runner older than the claim sends none
        if not isinstance(process, str) or not re.fullmatch(r"[0-9A-Za-z_-]{0,64}", process):
            raise EventError("process must be up to 64 letters, digits, - or _")
        return "state = 'running', started_by = coalesce(started_by, %s)", (process,)
    if kind == "progress":
        return "state = 'running', bytes_done = %s", (_count(event, "bytes"),)
    if kind == "succeeded":
        sha256 = event.get("sha256")
        if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise EventError("sha256 must be 64 lowercase hex digits")
        backup_id = event.get("backup_id")
        if not isinstance(backup_id, str) or not BACKUP_ID.fullmatch(backup_id):
            raise EventError("backup_id must be a backup id")
        encrypted = _count(event, "encrypted_bytes")
        return (
            "state = 'succeeded', finished_at = now(), backup_id = %s, dump_bytes = %s,"
            " encrypted_bytes = %s, sha256 = %s, bytes_done = %s",
            (backup_id, _count(event, "dump_bytes"), encrypted, sha256, encrypted),
        )
    if kind == "failed":
        error = event.get("error")
        if not isinstance(error, str):
            raise EventError("error must be a string")
        return ("state = 'failed', finished_at = now(), exit_code = %s, error = %s",
                (_count(event, "exit_code", most=MAX_EXIT_CODE), _text(error)))
    raise EventError("type must be one of started, progress, succeeded, failed")


def _count(event: dict, name: str, *, most: int = MAX_COUNT) -> int:
    value = event.get(name)
    if not inputs.is_count(value, most=most):
        raise EventError(f"{name} must be a whole number from 0 to {most}")
    return value


def _text(value: str) -> str:
    """A runner's error as stored: PostgreSQL text holds no NUL, and a page shows no control characters."""
    return "".join(c if c.isprintable() else " " for c in value[:MAX_ERROR])


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
        "created_at": iso(run["created_at"]),
        "launched_at": iso(run["launched_at"]),
        "finished_at": iso(ended),
        "duration_seconds": round((ended - run["created_at"]).total_seconds(), 1) if ended else None,
        "bytes": run["bytes_done"],
        "backup": None if run["backup_id"] is None else {
            "id": run["backup_id"], "dump_bytes": run["dump_bytes"],
            "encrypted_bytes": run["encrypted_bytes"], "sha256": run["sha256"],
        },
        "exit_code": run["exit_code"],
        "error": run["error"],
    }


def iso(moment: datetime.datetime | None) -> str | None:
    """A time as the API shows it: ISO 8601, UTC, with a Z."""
    return None if moment is None else moment.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
