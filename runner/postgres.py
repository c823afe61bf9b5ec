"""PostgreSQL: connection settings for the tools, server facts, and argv builders.

The tools never see the URL: ``libpq_env`` turns it into libpq's environment variables, so the
password reaches pg_dump and pg_restore through their environment, never their argv.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from collections.abc import Mapping
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


def inspect(params: dict[str, str], *, variable: str) -> Server:
    """Connect once and read what the backup needs to know about the server."""
    try:
        with psycopg.connect(**params, connect_timeout=int(params.get("connect_timeout", 15))) as conn:
            row = conn.execute(
                "select current_database(), current_setting('server_version_num')::int"
            ).fetchone()
    except psycopg.OperationalError as e:
        raise CredentialError(
            f"cannot connect with {variable}: {_first_line(e)}",
            hint="check the host, the database name and the credential",
        ) from e
    return Server(dbname=row[0], version_num=row[1])


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def find_tool(name: str, server_major: int, *, search: list[Path] | None = None) -> tuple[Path, int]:
    """The ``pg_dump``/``pg_restore`` whose major is the server's, else the oldest newer one."""
    candidates: dict[int, Path] = {}
    dirs = [Path(p) for p in (search if search is not None else [shutil.which(name) or ""])]
    dirs = [p.parent if p.name == name else p for p in dirs if str(p)] + TOOL_DIRS
    for folder in dirs:
        tool = folder / name
        if tool.is_file() and (major := tool_major(tool)) >= server_major:
            candidates.setdefault(major, tool)
    if not candidates:
        raise UsageError(
            f"no {name} of version {server_major} or newer found for a PostgreSQL {server_major} server",
            hint=f"install postgresql-client-{server_major}",
        )
    major = min(candidates)
    return candidates[major], major


def tool_major(tool: Path) -> int:
    """The major version a PostgreSQL client tool reports, e.g. 15 for 'pg_dump (PostgreSQL) 15.8'."""
    out = subprocess.run([str(tool), "--version"], env={}, capture_output=True, text=True, check=False).stdout
    match = re.search(r"\)\s+(\d+)", out)
    return int(match.group(1)) if match else -1


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
