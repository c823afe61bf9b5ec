"""The worker: launches queued runs, outside any transaction and off every request's path.

Triggers (the API, the dashboard) and the clock's schedules only queue runs. A worker claims a
batch of them with ``SKIP LOCKED`` (``runs.claim``), so any number of workers share the queue,
and launches them a few at a time in threads: a slow or rate-limited Platform API holds up one
thread, not the queue. The clock process is the worker: it launches after each pass, and at once
when a trigger NOTIFYs it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Iterator, Mapping

import psycopg
from psycopg import Connection
from psycopg_pool import ConnectionPool

from control import runs
from control.launchers import Launcher

CHANNEL = "remora_queued"
BATCH = 50
THREADS = 4  # launches at once (the heroku launcher takes a pool connection for a resource's OAuth token)


def notify(conn: Connection) -> None:
    """Wake the workers once this transaction commits: a run was queued."""
    conn.execute("select pg_notify(%s, '')", (CHANNEL,))


def launch_queued(pool: ConnectionPool, launcher: Launcher, config: Mapping) -> int:
    """Claim and launch every queued run; return how many were launched (or failed to)."""
    launched = 0
    with concurrent.futures.ThreadPoolExecutor(THREADS, thread_name_prefix="launch") as threads:
        while claimed := _claim(pool):
            launches = list(threads.map(lambda item: runs.launch(launcher, *item, config["CONTROL_URL"]), claimed))
            with pool.connection() as conn:
                runs.record(conn, launches)
            launched += len(claimed)
    return launched


def _claim(pool: ConnectionPool) -> list[tuple[dict, str]]:
    with pool.connection() as conn:
        return runs.claim(conn, limit=BATCH, launched_only=True)  # a pulled resource's runs are its helper app's


@contextlib.contextmanager
def listening(url: str) -> Iterator[Connection]:
    """A connection of its own that hears when runs are queued."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"listen {CHANNEL}")
        yield conn


def wait(listener: Connection, *, timeout: float) -> bool:
    """Until a run is queued or ``timeout`` seconds pass; True if one was."""
    return any(True for _ in listener.notifies(timeout=timeout, stop_after=1))
