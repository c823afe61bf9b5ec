"""``remora-backup grants``: the SQL that makes a role a complete read-only credential for the database as it is now.

Every schema, table, sequence and large object pg_dump reads, by owner, with each owner's
default privileges so that what it creates later stays readable; the statements that take away
every path to a write the role has (``REVOKE … FROM PUBLIC`` among them); and BYPASSRLS where
row-level security would hide rows. Nothing else. It reads only the catalogs, so the role itself,
granted nothing yet, can print it.
"""

from __future__ import annotations

import re

import psycopg

from runner import privileges, reading
from runner.errors import UsageError

LO_BATCH = 100  # large objects a GRANT names


def script(conn: psycopg.Connection, role: str | None = None) -> str:
    """The statements, in one transaction, for ``role`` (default: the connection's own)."""
    if role is not None and conn.execute("select from pg_roles where rolname = %s", (role,)).fetchone() is None:
        raise UsageError(f"role {role} does not exist",
                         hint=f"create it first: CREATE ROLE {role} LOGIN PASSWORD '…'")
    found = privileges.inspect(conn, role)
    if not found.fixable:
        what = "owns the database" if found.owns_database else "is a superuser"
        raise UsageError(f"role {found.role} {what}: no GRANT or REVOKE makes it read-only",
                         hint=f"name a role that only reads, e.g. --role {privileges.READER_ROLE}")
    name, database = _ident(conn, found.role), _ident(conn, found.database)
    major = conn.info.server_version // 10000
    lines = [
        _comment(f"Makes role {name} a read-only credential for database {database}, as it is now."),
        "-- Run it as a superuser, or as the role that owns every object (Heroku's default credential).",
        "BEGIN;",
        f"GRANT CONNECT ON DATABASE {database} TO {name};",
    ]
    for owner, objects in reading.owned(conn).items():
        lines += ["", _comment(f"owned by {_ident(conn, owner)}"), *_reading(objects, name)]
        if owner not in (found.role, "pg_database_owner"):
            lines += _defaults(_ident(conn, owner), name, major=major)
    lines += _revokes(found, name)
    lines += ["", "COMMIT;"]
    return "\n".join(lines) + "\n"


def _reading(objects: dict[str, list[str]], role: str) -> list[str]:
    lines = [f"GRANT USAGE ON SCHEMA {schema} TO {role};" for schema in objects.get("schema", [])]
    lines += [f"GRANT SELECT ON TABLE {table} TO {role};" for table in objects.get("table", [])]
    lines += [f"GRANT SELECT ON SEQUENCE {sequence} TO {role};" for sequence in objects.get("sequence", [])]
    blobs = objects.get("large object", [])
    for start in range(0, len(blobs), LO_BATCH):
        lines.append(f"GRANT SELECT ON LARGE OBJECT {', '.join(blobs[start:start + LO_BATCH])} TO {role};")
    return lines


def _defaults(owner: str, role: str, *, major: int) -> list[str]:
    """What ``owner`` creates from now on is readable too (a migration run as another role still is not)."""
    kinds = ["USAGE ON SCHEMAS", "SELECT ON TABLES", "SELECT ON SEQUENCES"]
    if major >= 18:
        kinds.append("SELECT ON LARGE OBJECTS")
    return [f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} GRANT {kind} TO {role};" for kind in kinds]


def _revokes(found: privileges.Inspection, name: str) -> list[str]:
    lines = []
    fixes = list(dict.fromkeys(f.fix for f in found.writes))
    if fixes:
        lines += ["", _comment(f"what would let {name} change the database")]
        if any(fix.endswith(" FROM PUBLIC") for fix in fixes):
            lines.append("-- (a REVOKE … FROM PUBLIC takes the privilege from every role that had it through PUBLIC:"
                         " grant it back to the roles that need it, such as the application's, first)")
        lines += [f"{fix};" for fix in fixes]
    bypass = list(dict.fromkeys(g.fix for g in found.gaps if g.fix.endswith(" BYPASSRLS")))
    if bypass:
        lines += ["", "-- row-level security would hide rows from pg_dump: BYPASSRLS reads every row and writes"
                      " nothing (it needs a superuser)", *[f"{fix};" for fix in bypass]]
    return lines


def _ident(conn: psycopg.Connection, name: str) -> str:
    return conn.execute("select quote_ident(%s)", (name,)).fetchone()[0]


def _comment(text: str) -> str:
    """A comment line; a name's line break, legal inside quotes, would end it and start a statement."""
    return "-- " + re.sub(r"[\x00-\x1f\x7f]", "?", text)
