"""Whether the database credential will do for a backup: it reads everything pg_dump reads and changes nothing.

The judgement is in ``write_paths`` (every way to a write) and ``reading`` (what pg_dump reads);
this module runs both for the credential's role, refuses, and says what to run about it.
"""

from __future__ import annotations

import dataclasses

import psycopg
import structlog

from runner import reading, write_paths
from runner.errors import CredentialError
from runner.write_paths import Finding

log = structlog.get_logger()
SHOWN = 5  # findings named in a message; the rest are counted
READER_ROLE = "backup_reader"  # the read-only role the messages (and the guides) make


@dataclasses.dataclass(frozen=True)
class Inspection:
    """What a role can change, and what pg_dump will read that it cannot."""

    role: str
    database: str
    owns_database: bool
    superuser: bool
    writes: list[Finding]
    gaps: list[Finding]

    @property
    def fixable(self) -> bool:
        """Whether statements can make this role read-only; not the database's owner or a superuser."""
        return not (self.owns_database or self.superuser)


def inspect(conn: psycopg.Connection, role: str | None = None) -> Inspection:
    """Judge ``role`` (default: the connection's own) by the catalogs, which any role may read."""
    role, database, owns, superuser = conn.execute(
        "select r.rolname, current_database(), d.datdba = r.oid, r.rolsuper from pg_roles r, pg_database d"
        " where r.rolname = coalesce(%s, current_user) and d.datname = current_database()", (role,)
    ).fetchone()
    return Inspection(role=role, database=database, owns_database=owns, superuser=superuser,
                      writes=write_paths.find(conn, role), gaps=reading.gaps(conn, role))


def check(conn: psycopg.Connection, *, variable: str, allow_write: bool, on_dyno: bool = False) -> str:
    """Refuse a credential that can write (unless allowed) or cannot read; say which it is."""
    found = inspect(conn)
    who = f"the credential in {variable} (role {found.role})"
    if found.writes and not allow_write:
        raise CredentialError(
            f"{who} can change the database: {listing(found.writes)}; refusing before anything is stored",
            hint=make_read_only(found, variable=variable, on_dyno=on_dyno)
            + "; or, knowingly, pass --allow-write-credential",
        )
    if found.gaps:
        raise CredentialError(
            f"{who} cannot read everything pg_dump reads: {listing(found.gaps)}; nothing was stored",
            hint=_grant_reading(found, on_dyno=on_dyno),
        )
    if not found.writes:
        return "read-only"
    log.warning(
        f"{who} can change the database; going on because of --allow-write-credential",
        found=listing(found.writes),
    )
    return "read-write"


def make_read_only(found: Inspection, *, variable: str, on_dyno: bool) -> str:
    """What to run so that backups use a role that only reads; the Heroku commands only on a dyno."""
    if found.fixable:
        return (f"as a superuser, run {statements(found.writes)}; {grants_command(on_dyno)}"
                f" prints every statement that makes {found.role} read-only")
    if on_dyno:
        return (f"use a read-only credential: {heroku_credential(variable)}; then run what"
                f" `{grants_command(on_dyno)}` prints with `heroku pg:psql -a APP`")
    return (f"back up as a role that only reads: CREATE ROLE {READER_ROLE} LOGIN PASSWORD '…', then run what"
            f" `{grants_command(on_dyno, role=READER_ROLE)}` prints, as the database's owner or a superuser")


def heroku_credential(variable: str) -> str:
    """The Heroku commands that make the read-only credential and attach it to the helper app as ``variable``."""
    make = f"heroku pg:credentials:create --name {READER_ROLE} -a APP"
    # an attachment --as NAME sets NAME_URL, and keeps it current when Heroku rotates the credential
    attach = (f"heroku addons:attach APP::DATABASE --credential {READER_ROLE} --as {variable.removesuffix('_URL')}"
              " -a HELPER_APP")
    return f"`{make}`, attach it with `{attach}`"


def grants_command(on_dyno: bool, *, role: str | None = None) -> str:
    """The command that prints the GRANTs, as the customer runs it where they are."""
    flag = f" --role {role}" if role else ""
    return f"heroku run bin/remora-backup grants{flag} -a HELPER_APP" if on_dyno else f"remora-backup grants{flag}"


def _grant_reading(found: Inspection, *, on_dyno: bool) -> str:
    hint = f"as the owner, run {statements(found.gaps)}"
    if any(gap.fix.endswith(" BYPASSRLS") for gap in found.gaps):
        hint += (f" (BYPASSRLS lets {found.role} read every row and nothing more, and needs a superuser;"
                 " ALTER TABLE … DISABLE ROW LEVEL SECURITY would turn the application's isolation off)")
    return hint + f"; `{grants_command(on_dyno)}` prints every statement"


def statements(findings: list[Finding]) -> str:
    """The first few distinct fixes, ';'-separated, counting the rest."""
    fixes = list(dict.fromkeys(f.fix for f in findings if f.fix))
    return _count("; ".join(fixes[:SHOWN]), len(fixes))


def listing(findings: list[Finding]) -> str:
    """The first few findings, ';'-separated, counting the rest."""
    return _count("; ".join(f.what for f in findings[:SHOWN]), len(findings))


def _count(shown: str, total: int) -> str:
    return shown + (f"; ... and {total - SHOWN} more" if total > SHOWN else "")
