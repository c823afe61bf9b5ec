"""The credential must read everything pg_dump reads and change nothing; otherwise exit 3, before anything is stored."""

from __future__ import annotations

import json
import re
import secrets

import pytest

from runner import postgres, privileges
from runner.config import Secret
from tests.helpers import ok, remora, target_folder
from tests.servers.postgres import READER

FIRST_LO = "(select min(oid) from pg_largeobject_metadata)"


def inspect_as(url: str) -> privileges.Inspection:
    params = postgres.connection_params(Secret(url), variable="X")
    with postgres.connect(params, variable="X") as conn:
        return privileges.inspect(conn)


def error_line(stderr: str) -> str:
    [line] = [line for line in stderr.splitlines() if "level=error" in line]
    return line


def test_the_read_only_role_has_no_finding(pg_cluster, database):
    found = inspect_as(pg_cluster.reader_url(database))
    assert (found.writes, found.gaps) == ([], [])


# (setup run by the owner, with {role} and {db}; a pattern the findings must match)
WRITES = {
    "superuser": ("alter role {role} superuser", r"SUPERUSER"),
    "replication": ("alter role {role} replication", r"REPLICATION"),
    "bypassrls": ("alter role {role} bypassrls", r"BYPASSRLS"),
    "createrole": ("alter role {role} createrole", r"CREATEROLE"),
    "createdb": ("alter role {role} createdb", r"CREATEDB"),
    "pg_write_all_data": ("grant pg_write_all_data to {role}", r"member of pg_write_all_data"),
    "a writing role": ("create role {role}_w; grant delete on sales.customer to {role}_w; grant {role}_w to {role}",
                       r"DELETE on table sales\.customer"),
    "insert": ("grant insert on sales.customer to {role}", r"INSERT on table sales\.customer"),
    "one column": ("grant update (name) on sales.customer to {role}", r"UPDATE on table sales\.customer"),
    "truncate a partition": ("grant truncate on sales.orders_2025 to {role}", r"TRUNCATE on table sales\.orders_2025"),
    "trigger": ("grant trigger on audit.event to {role}", r"TRIGGER on table audit\.event"),
    "references": ("grant references on audit.event to {role}", r"REFERENCES on table audit\.event"),
    "sequence update": ("grant update on audit.ticket_seq to {role}", r"UPDATE on sequence audit\.ticket_seq"),
    "sequence usage": ("grant usage on audit.ticket_seq to {role}", r"USAGE on sequence audit\.ticket_seq"),
    "create in schema": ("grant create on schema sales to {role}", r"CREATE on schema sales"),
    "create in schema, for all": ("grant create on schema sales to public",
                                  r"CREATE on schema sales \(granted to PUBLIC: REVOKE CREATE ON SCHEMA sales FROM PUBLIC\)"),
    "create in database": ('grant create on database "{db}" to {role}', r"CREATE on database db_\w+"),
    "owns a table": ("alter table audit.event owner to {role}", r"owns table audit\.event"),
    "owns a function": ("alter function audit.touch() owner to {role}", r"owns function audit\.touch"),
    "owns a schema": ("alter schema audit owner to {role}", r"owns schema audit"),
    "owns the database": ('alter database "{db}" owner to {role}', r"owns database db_\w+"),
    "owns a large object": (
        f"do $$ begin execute format('alter large object %s owner to {{role}}', {FIRST_LO}); end $$",
        r"owns large object \d+"),
    "updates a large object": (
        f"do $$ begin execute format('grant update on large object %s to {{role}}', {FIRST_LO}); end $$",
        r"UPDATE on large object \d+"),
}


@pytest.mark.parametrize("setup, pattern", WRITES.values(), ids=WRITES.keys())
def test_every_way_to_write_is_found(pg_cluster, database, setup, pattern):
    pg_cluster.reader_url(database)
    role, password = "w_" + secrets.token_hex(4), secrets.token_hex(8)
    with pg_cluster.connect(database) as conn:
        conn.execute(f"create role {role} login password '{password}' in role {READER}")  # it reads everything
        conn.execute(setup.format(role=role, db=database))
    found = inspect_as(pg_cluster.url(database, user=role, password=password))
    assert any(re.fullmatch(pattern, finding) for finding in found.writes), found.writes
    assert found.write_count >= len(found.writes) >= 1


# (what the owner takes away from the read-only role; the finding and its fix)
GAPS = {
    "a table": ("revoke select on sales.orders_2026 from {role}",
                "no SELECT on table sales.orders_2026", "GRANT SELECT ON TABLE sales.orders_2026 TO reader"),
    "a sequence": ("revoke select on audit.ticket_seq from {role}",
                   "no SELECT on sequence audit.ticket_seq", "GRANT SELECT ON SEQUENCE audit.ticket_seq TO reader"),
    "a schema": ("revoke usage on schema audit from {role}",
                 "no USAGE on schema audit", "GRANT USAGE ON SCHEMA audit TO reader"),
    "a large object": (
        f"do $$ begin execute format('revoke select on large object %s from {{role}}', {FIRST_LO}); end $$",
        "no SELECT on large object {lo}", "GRANT SELECT ON LARGE OBJECT {lo} TO reader"),
    "row-level security": ("alter table sales.customer enable row level security",
                           "row-level security hides rows of table sales.customer", "ALTER TABLE sales.customer"),
}


@pytest.mark.parametrize("setup, finding, fix", GAPS.values(), ids=GAPS.keys())
def test_what_pg_dump_cannot_read_is_found_with_its_grant(pg_cluster, database, setup, finding, fix):
    url = pg_cluster.reader_url(database)
    with pg_cluster.connect(database) as conn:
        conn.execute(setup.format(role=READER))
        lo = conn.execute(f"select {FIRST_LO}").fetchone()[0]
    found = inspect_as(url)
    assert found.writes == []
    [(said, grant)] = found.gaps
    assert said == finding.format(lo=lo) and grant.startswith(fix.format(lo=lo))


def test_a_credential_that_can_write_is_refused_before_anything_is_stored(pg_cluster, database, gpg_env, file_target_env):
    env = {"REMORA_DATABASE_URL": pg_cluster.url(database), **gpg_env, **file_target_env}  # a superuser
    result = remora("backup", env=env)
    assert result.returncode == 3
    line = error_line(result.stderr)
    assert "(role remora) can change the database: BYPASSRLS; CREATEDB; CREATEROLE; REPLICATION; SUPERUSER; ... and" in line
    assert "`heroku pg:credentials:create --name backup_reader`" in line
    assert "GRANT SELECT ON ALL TABLES IN SCHEMA audit, public, sales TO backup_reader" in line
    assert "--allow-write-credential" in line and "Traceback" not in result.stderr
    assert list(target_folder(env).rglob("*")) == []

    allowed = ok(remora("backup", "--allow-write-credential", env=env))
    assert re.search(r"level=warning .*can change the database; going on because of --allow-write-credential",
                     allowed.stderr)
    [manifest] = json.loads(ok(remora("list", "--json", env=env)).stdout)
    assert manifest["credential"] == "read-write"


def test_a_role_missing_select_on_one_table_is_refused_naming_it(pg_cluster, database, gpg_env, file_target_env):
    env = {"REMORA_DATABASE_URL": pg_cluster.reader_url(database), **gpg_env, **file_target_env}
    with pg_cluster.connect(database) as conn:
        conn.execute(f"revoke select on sales.customer from {READER}")
    result = remora("backup", env=env)
    assert result.returncode == 3
    line = error_line(result.stderr)
    assert "cannot read everything pg_dump reads: no SELECT on table sales.customer; nothing was stored" in line
    assert "GRANT SELECT ON TABLE sales.customer TO reader" in line
    assert list(target_folder(env).rglob("*")) == []
