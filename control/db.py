"""State in PostgreSQL: a connection pool per process, and migrations applied in order."""

from __future__ import annotations

from importlib import resources

import psycopg
from flask import Flask, current_app
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

# any two `migrate` commands at once wait for each other instead of racing
_MIGRATE_LOCK = 0x52454D4F52  # "REMOR"


def open_pool(url: str, *, max_size: int = 4) -> ConnectionPool:
    """A pool of dict-row connections; each `with pool.connection()` block is one transaction."""
    return ConnectionPool(url, min_size=1, max_size=max_size, kwargs={"row_factory": dict_row}, open=True)


def init_app(app: Flask) -> None:
    app.extensions["remora.pool"] = open_pool(app.config["DATABASE_URL"])


def pool() -> ConnectionPool:
    return current_app.extensions["remora.pool"]


def migrations() -> list[tuple[str, str]]:
    """(version, SQL) of every migration shipped, in order."""
    folder = resources.files("control") / "migrations"
    files = sorted(f for f in folder.iterdir() if f.name.endswith(".sql"))
    return [(f.name.removesuffix(".sql"), f.read_text()) for f in files]


def migrate(url: str) -> list[str]:
    """Apply the migrations not applied yet, each in its own transaction; return their versions."""
    applied = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(%s)", (_MIGRATE_LOCK,))
        conn.execute(
            "create table if not exists schema_migrations"
            " (version text primary key, applied_at timestamptz not null default now())"
        )
        done = {row[0] for row in conn.execute("select version from schema_migrations")}
        for version, sql in migrations():
            if version in done:
                continue
            with conn.transaction():
                conn.execute(sql)
                conn.execute("insert into schema_migrations (version) values (%s)", (version,))
            applied.append(version)
        conn.execute("select pg_advisory_unlock(%s)", (_MIGRATE_LOCK,))
    return applied
