"""PostgreSQL: connection settings for the tools, server facts, and argv builders.

The tools never see the URL: ``libpq_env`` turns it into libpq's environment variables, so the
password reaches pg_dump and pg_restore through their environment, never their argv.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from runner.config import Secret
from runner.errors import CredentialError, UsageError

# libpq's connection keywords and the variables that carry them
_ENV_NAMES = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "options": "PGOPTIONS",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}
TOOL_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


@dataclasses.dataclass(frozen=True)
class Server:
    dbname: str
    version_num: int  # server_version_num, e.g. 150018

    @property
    def major(self) -> int:
        return self.version_num // 10000

    @property
    def version(self) -> str:
        """e.g. '15.18'"""
        return f"{self.major}.{self.version_num % 10000}"


def connection_params(url: Secret, *, variable: str) -> dict[str, str]:
    """libpq's keywords for ``url``; a malformed URL is named by its variable, never shown."""
    try:
        params = conninfo_to_dict(url.reveal())
    except psycopg.ProgrammingError as e:
        raise UsageError(f"{variable} is not a valid PostgreSQL URL") from e
    unknown = sorted(set(params) - set(_ENV_NAMES))
    if unknown:
        raise UsageError(f"{variable} has parameters the runner does not pass on: {', '.join(unknown)}")
    if not params.get("dbname"):
        raise UsageError(f"{variable} names no database")
    return {key: str(value) for key, value in params.items()}


def libpq_env(params: dict[str, str], base: Mapping[str, str]) -> dict[str, str]:
    """``base`` plus the libpq variables that describe ``params``."""
    return {**base, **{_ENV_NAMES[key]: value for key, value in params.items()}}


@contextlib.contextmanager
def connect(params: dict[str, str], *, variable: str) -> Iterator[psycopg.Connection]:
    """A read-only session on the database; failing to connect, or to query, is a credential error."""
    try:
        conn = psycopg.connect(**params, connect_timeout=int(params.get("connect_timeout", 15)))
    except psycopg.OperationalError as e:
        raise CredentialError(
            f"cannot connect with {variable}: {_first_line(e)}",
            hint="check the host, the database name and the credential",
        ) from e
    conn.read_only = True  # our own queries can't change anything either
    try:
        with conn:
            yield conn
    except psycopg.Error as e:
        raise CredentialError(f"cannot inspect the database with {variable}: {_first_line(e)}") from e


def server_facts(conn: psycopg.Connection) -> Server:
    """What the backup needs to know about the server."""
    row = conn.execute("select current_database(), current_setting('server_version_num')::int").fetchone()
    return Server(dbname=row[0], version_num=row[1])


def inspect(params: dict[str, str], *, variable: str) -> Server:
    """Connect once and read what the backup needs to know about the server."""
    with connect(params, variable=variable) as conn:
        return server_facts(conn)


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def find_tool(name: str, server_major: int, *, path: str) -> tuple[Path, int]:
    """The ``pg_dump``/``pg_restore`` whose major is the server's, else the oldest newer one.

    Looks in every folder of ``path`` (a PATH value), then in Debian's /usr/lib/postgresql/*/bin.
    An older tool is never used: pg_dump refuses a newer server, and pg_restore a newer archive.
    """
    found: dict[int, Path] = {}
    for folder in [Path(p) for p in path.split(os.pathsep) if p] + TOOL_DIRS:
        tool = folder / name
        # not a link to another name: Debian's pg_wrapper picks a version of its own at each run
        if tool.is_file() and os.access(tool, os.X_OK) and tool.resolve().name == name:
            found.setdefault(tool_major(tool), tool)
    usable = [major for major in found if major >= server_major]
    if not usable:
        seen = ", ".join(f"{name} {major} ({tool})" for major, tool in sorted(found.items())) or "none"
        raise UsageError(
            f"needs {name} {server_major} or newer for PostgreSQL {server_major}; found: {seen}",
            hint=f"install postgresql-client-{server_major}, or put its bin folder on PATH",
        )
    major = min(usable)
    return found[major], major


def tool_major(tool: Path) -> int:
    """The major version a PostgreSQL client tool reports, e.g. 15 for 'pg_dump (PostgreSQL) 15.8'."""
    out = subprocess.run([str(tool), "--version"], env={}, capture_output=True, text=True, check=False).stdout
    match = re.search(r"\)\s+(\d+)", out)
    return int(match.group(1)) if match else -1


def dump_compression(pg_dump: Path, major: int, *, gzip_level: int) -> str:
    """zstd where this pg_dump has it (16 and later, if built with it), else gzip at ``gzip_level``.

    The default level, 3, is measured (pg_dump 15, the benchmark's 1 GB database; `make bench`):
    on its text and numbers (pgbench tables, prose, JSON), level 1 made 120 MB in 4.7 s, level 3
    109 MB in 6.5–7.0 s, level 4 108 MB in 6.1–6.9 s, level 6 (pg_dump's default) 98 MB in 18.6 s.
    On its random bytes, level 1 took 4.7 s, level 3 7.6 s, level 4 10.9 s, for the same size.
    Level 3 is the fastest that stays within 15% of the default's size on text, at under half its
    time; a database of already-compressed blobs does better with REMORA_GZIP_LEVEL=1.
    """
    if major >= 16 and _accepts_zstd(pg_dump):
        return "zstd"
    return str(gzip_level)


def _accepts_zstd(pg_dump: Path) -> bool:
    # pg_dump checks --compress before it connects: a build without zstd says so at once, and
    # one with it goes on to try a connection to a socket that does not exist.
    argv = [str(pg_dump), "--compress=zstd", "--schema-only", "--no-password", "--dbname=host=/nonexistent dbname=x"]
    probe = subprocess.run(argv, env={}, capture_output=True, text=True, check=False)
    return "compress" not in probe.stderr.lower()


def dump_argv(pg_dump: Path, *, compression: str) -> list[str]:
    """pg_dump writing a custom-format archive to stdout; the connection comes from PG*."""
    return [str(pg_dump), "--format=custom", f"--compress={compression}", "--no-password"]


def restore_argv(
    pg_restore: Path, *, dbname: str, clean: bool, jobs: int, archive: Path | None = None
) -> list[str]:
    """pg_restore into ``dbname`` (connection from PG*), stopping at the first error.

    Owners and grants are not restored: the restoring credential is rarely the source's owner
    (Heroku's own restore does the same). One job restores in one transaction: all or nothing.
    """
    argv = [str(pg_restore), "--no-password", "--exit-on-error", "--no-owner", "--no-acl"]
    argv += ["--dbname", dbname]
    if clean:
        argv += ["--clean", "--if-exists"]
    argv += [f"--jobs={jobs}", str(archive)] if jobs > 1 else ["--single-transaction"]
    return argv


def read_all_argv(pg_restore: Path) -> list[str]:
    """pg_restore reading the whole archive on stdin into nothing.

    Stronger than ``--list``, which stops after the table of contents: this decompresses every
    entry, and it reads the stream to its end, so gpg gets to check the message's integrity too.
    """
    return [str(pg_restore), "--file=/dev/null"]
