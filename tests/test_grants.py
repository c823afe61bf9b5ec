"""``remora-backup grants``: its output, applied as a superuser, makes a complete read-only credential.

Run on databases shaped like the samples people load (tests/samples/), on PostgreSQL 15 and 18:
the role, granted nothing yet, prints its own GRANTs; once a superuser runs them, the credential
check passes, pg_dump reads everything as the role, and every write the role tries anywhere is
refused. What the owners create next stays readable.
"""

from __future__ import annotations

import re
import secrets
import subprocess
from pathlib import Path

import psycopg
import pytest

from runner import grants, privileges, reading
from runner.errors import UsageError
from tests.attempts import unstopped_writes
from tests.helpers import base_env, libpq_env, remora
from tests.servers.postgres import PG_BIN, VERSIONS, embedded_bin

SAMPLES = Path(__file__).with_name("samples")
LATER = "-- later"  # what the sample's owners do once the grants are in

# what each sample needs of the script, besides a GRANT for each object
NEEDS = {
    "pagila": ["REVOKE CREATE ON SCHEMA public FROM PUBLIC;",
               "REVOKE EXECUTE ON ROUTINE public.rewards_report(min_monthly_purchases integer,"
               " min_dollar_amount_purchased numeric) FROM PUBLIC;",
               "GRANT SELECT ON TABLE public.payment_p2022_01 TO {role};"],
    "chinook": ['GRANT SELECT ON TABLE public."InvoiceLine" TO {role};',
                "ALTER DEFAULT PRIVILEGES FOR ROLE {migrator} GRANT SELECT ON TABLES TO {role};",
                "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} GRANT SELECT ON SEQUENCES TO {role};"],
    "northwind": ["GRANT USAGE ON SCHEMA reporting TO {role};",
                  "GRANT SELECT ON TABLE reporting.sales_by_month TO {role};", "-- owned by {analyst}"],
    "dvdrental": ["ALTER ROLE {role} BYPASSRLS;"],
    "clubdata": ["GRANT USAGE ON SCHEMA cd TO {role};", "GRANT SELECT ON SEQUENCE public.booking_ref TO {role};"],
}


def load(cluster, name: str) -> tuple[str, dict[str, str], str]:
    """A new database holding the sample, its roles (by placeholder), and the SQL of what comes later."""
    db = cluster.create_database(sample=False)
    sql = (SAMPLES / f"{name}.sql").read_text()
    roles = {placeholder: f"{placeholder}_{db}" for placeholder in set(re.findall(r"@(\w+)@", sql))}
    for placeholder, role in roles.items():
        sql = sql.replace(f"@{placeholder}@", role)
    now, later = re.split(f"^(?={LATER})", sql, flags=re.MULTILINE)
    with cluster.connect(db) as conn:
        for role in roles.values():
            conn.execute(f"create role {role}")
        conn.execute(now)
    return db, roles, later


def row_counts(conn) -> dict[str, int]:
    """Each table's rows as the connection's role sees them."""
    tables = conn.execute("select format('%I.%I', schemaname, tablename) from pg_tables"
                          " where schemaname not in ('pg_catalog', 'information_schema')").fetchall()
    return {table: conn.execute(f"select count(*) from {table}").fetchone()[0] for (table,) in tables}


def pg_dump_as(url: str, version: int) -> subprocess.CompletedProcess:
    bin_dir = PG_BIN if version == 15 else embedded_bin()
    argv = [str(bin_dir / "pg_dump"), "--format=custom", "--no-password", url.rsplit("/", 1)[1]]
    return subprocess.run(argv, env={**base_env(), **libpq_env(url)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, check=False)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("sample", NEEDS)
def test_grants_make_a_read_only_credential_that_reads_everything(request, version, sample):
    cluster = request.getfixturevalue(VERSIONS[version])
    db, roles, later = load(cluster, sample)
    role, password = "backup_" + secrets.token_hex(4), secrets.token_hex(8)
    url = cluster.url(db, user=role, password=password)
    with cluster.connect(db) as admin:
        admin.execute(f"create role {role} login password '{password}'")
        with psycopg.connect(url) as conn:  # the role itself, granted nothing yet
            script = grants.script(conn)
        for needed in NEEDS[sample]:
            assert needed.format(role=role, **roles) in script.splitlines(), script
        admin.execute(script)

        with psycopg.connect(url) as conn:
            assert privileges.check(conn, variable="REMORA_DATABASE_URL", allow_write=False) == "read-only"
            assert reading.missing_defaults(conn, role) == []
            assert row_counts(conn) == row_counts(admin)  # row-level security hides none from the role
            assert unstopped_writes(conn) == {}
        dumped = pg_dump_as(url, version)
        assert dumped.returncode == 0, dumped.stderr

        admin.execute(later)  # the next migrations, by the roles that own the schema
        with psycopg.connect(url) as conn:
            found = privileges.inspect(conn)
        if sample == "northwind" and version < 18:  # no default privileges for large objects before 18
            assert [gap.what for gap in found.gaps] == [f"no SELECT on large object {_newest_lo(admin)}"]
        else:
            assert (found.writes, found.gaps) == ([], [])


def _newest_lo(conn) -> int:
    return conn.execute("select max(oid::text::bigint) from pg_largeobject_metadata").fetchone()[0]


def test_the_command_prints_the_script_for_the_credential_itself(pg_cluster):
    db, roles, _ = load(pg_cluster, "clubdata")
    role, password = "backup_" + secrets.token_hex(4), secrets.token_hex(8)
    with pg_cluster.connect(db) as admin:
        admin.execute(f"create role {role} login password '{password}'")
    result = remora("grants", env={"REMORA_DATABASE_URL": pg_cluster.url(db, user=role, password=password)})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # nothing but SQL reaches a terminal, or a pipe into psql
    lines = result.stdout.splitlines()
    assert lines[2:4] == ["BEGIN;", f"GRANT CONNECT ON DATABASE {db} TO {role};"] and lines[-1] == "COMMIT;"
    assert f"GRANT SELECT ON TABLE cd.bookings TO {role};" in lines


@pytest.mark.parametrize("name, says", [
    ("nobody_here", "role nobody_here does not exist (create it first: CREATE ROLE nobody_here LOGIN PASSWORD"),
    ("remora", "role remora owns the database: no GRANT or REVOKE makes it read-only (name a role that only reads,"
               " e.g. --role backup_reader)"),
])
def test_a_role_that_cannot_be_made_read_only_is_refused(pg_cluster, database, name, says):
    with pg_cluster.connect(database) as conn, pytest.raises(UsageError) as refused:
        grants.script(conn, name)
    assert refused.value.one_line().startswith(says)


def test_a_name_that_would_break_a_comment_stays_inside_it(pg_cluster):
    db = pg_cluster.create_database(sample=False)
    role = 'reader"\nDROP TABLE t;--'
    with pg_cluster.connect(db) as conn:
        conn.execute("create table t (id int)")
        conn.execute(psycopg.sql.SQL("create role {}").format(psycopg.sql.Identifier(role)))
        try:
            conn.execute(grants.script(conn, role))
            assert conn.execute("select to_regclass('public.t')").fetchone() == ("t",)
        finally:
            conn.execute("drop owned by {0}; drop role {0}".format(psycopg.sql.Identifier(role).as_string(conn)))
