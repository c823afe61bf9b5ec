"""The credential must read everything pg_dump reads and change nothing; otherwise exit 3, before anything is stored.

Each kind of path to a write is judged both ways on PostgreSQL 15 and 18. A role that can take
the path is refused, and takes it when it tries; the statements its findings name take the path
away (it is then accepted, and trying fails). A role that cannot take the path is accepted, and
trying fails. Every case runs in one transaction that is rolled back, in one database per
server; the role is judged and tries as itself (SET SESSION AUTHORIZATION), with no more access
to the catalogs than it has.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import secrets
import time

import psycopg
import pytest

from runner import privileges, reading, write_paths
from runner.errors import CredentialError
from tests.attempts import DENIED, attempt
from tests.helpers import ok, remora, target_folder
from tests.servers.postgres import READER, VERSIONS

FIRST_LO = "(select min(oid) from pg_largeobject_metadata)"


@pytest.fixture(scope="module")
def judged_15(pg_cluster):
    return pg_cluster, pg_cluster.create_database()


@pytest.fixture(scope="module")
def judged_18(pg18_cluster):
    return pg18_cluster, pg18_cluster.create_database()


@contextlib.contextmanager
def one_role(request, version: int):
    """A superuser's connection in a transaction that is rolled back, and the names of three new roles.

    ``role`` is the credential: it may use and read the sample's schemas, and no more.
    """
    cluster, db = request.getfixturevalue(f"judged_{version}")
    role = "p_" + secrets.token_hex(4)
    names = {"role": role, "other": role + "_o", "spare": role + "_s", "db": db}
    conn = psycopg.connect(cluster.url(db))
    try:
        conn.execute(f"create role {role} login; create role {role}_o; create role {role}_s;"
                     f" grant usage on schema sales, audit to {role};"
                     f" grant select on all tables in schema sales, audit to {role}")
        yield conn, names
    finally:
        conn.rollback()
        conn.close()


@contextlib.contextmanager
def as_role(conn: psycopg.Connection, role: str):
    conn.execute(f"set session authorization {role}")
    try:
        yield
    finally:
        conn.execute("reset session authorization")


def judge(conn, role: str) -> list[write_paths.Finding]:
    with as_role(conn, role):
        return write_paths.find(conn, role)


def tried(conn, role: str, statement: str) -> str | None:
    with as_role(conn, role):
        return attempt(conn, statement)


@dataclasses.dataclass(frozen=True)
class Path:
    """One kind of path to a write, set up by a superuser for {role} ({other}, {spare}: more roles; {db})."""

    setup: str
    finding: str | None  # the pattern one finding must match; None: the role can take no path
    trial: str | None  # what the role tries: it goes through when refused, and is stopped when accepted
    stopped_by: str = DENIED  # what stops the trial of a role that cannot take the path
    versions: tuple[int, ...] = (15, 18)
    next_session: bool = False  # the fix takes effect when the role next connects


SD_FUNCTION = ("create function audit.{role}_f() returns void language sql security definer"
               " as 'delete from audit.event'; alter function audit.{role}_f() owner to {other};"
               " grant usage on schema audit to {other}; grant select, delete on audit.event to {other};")
SET_ONLY = "grant {other} to {role} with inherit false, set true"

REFUSED = {
    # role attributes, its own or a role's it can SET ROLE to
    "superuser": Path("alter role {role} superuser", r"SUPERUSER", "create table public.{role}_t ()"),
    "createrole": Path("alter role {role} createrole", r"CREATEROLE", "create role {role}_n"),
    "createdb": Path("alter role {role} createdb", r"CREATEDB", None),  # CREATE DATABASE cannot run in a transaction
    "replication": Path("alter role {role} replication", r"REPLICATION", None),  # a slot outlives a rollback
    "an attribute it can SET ROLE to": Path(
        "alter role {other} createrole; grant {other} to {role}",
        r"CREATEROLE, as role {other}, which it can SET ROLE to", "set role {other}; create role {role}_n"),
    # predefined roles that write
    "pg_write_all_data": Path("grant pg_write_all_data to {role}", r"member of pg_write_all_data",
                              "delete from sales.orders_2025"),
    "pg_write_all_data, not inherited": Path(  # 15: a NOINHERIT member may SET ROLE; 18: the grant's SET option
        "alter role {role} noinherit; grant pg_write_all_data to {role}", r"member of pg_write_all_data",
        "set role pg_write_all_data; delete from sales.orders_2025"),
    "pg_write_all_data, granted by another role": Path(  # 16+: revoked only as granted by that role
        "grant pg_write_all_data to {other} with admin option; set role {other};"
        " grant pg_write_all_data to {role}; reset role",
        r"member of pg_write_all_data", "delete from sales.orders_2025"),
    "pg_maintain": Path("grant pg_maintain to {role}", r"member of pg_maintain", "reindex table sales.customer",
                        versions=(18,)),
    "a writer reached through SET ROLE": Path(
        SET_ONLY + "; grant {spare} to {other} with inherit true, set false; grant usage on schema sales to {spare};"
        " grant insert on sales.customer to {spare}",
        r"INSERT on table sales\.customer, through role {spare}",
        "set role {other}; insert into sales.customer (name) values ('x')", versions=(18,)),
    # memberships it can give
    "admin option": Path("grant {other} to {role} with admin option", r"ADMIN OPTION on role {other}",
                         "grant {other} to {spare}"),
    "admin option alone": Path("grant {other} to {role} with admin true, inherit false, set false",
                               r"ADMIN OPTION on role {other}", "grant {other} to {role}", versions=(18,)),
    # ownership
    "owns a table": Path("alter table audit.event owner to {role}", r"owns table audit\.event",
                         "alter table audit.event add column z int"),
    "owns a table through a role": Path(
        "alter table audit.event owner to {other}; grant {other} to {role}",
        r"owns table audit\.event, through role {other}", "alter table audit.event add column z int"),
    "owns a function": Path("alter function audit.touch() owner to {role}", r"owns function audit\.touch\(\)",
                            "alter function audit.touch() set search_path = pg_temp"),
    "owns a schema": Path("alter schema audit owner to {role}", r"owns schema audit", "create table audit.t ()"),
    "owns a large object": Path(
        f"do $$ begin execute format('alter large object %s owner to {{role}}', {FIRST_LO}); end $$",
        r"owns large object \d+", f"select lo_unlink({FIRST_LO})"),
    # creating
    "CREATE on a schema, granted to PUBLIC": Path(
        "grant create on schema sales to public", r"CREATE on schema sales, granted to PUBLIC",
        "create table sales.t ()"),
    "CREATE on the database": Path('grant create on database "{db}" to {role}', r"CREATE on database db_\w+",
                                   "create schema {role}_s"),
    "REFERENCES and CREATE": Path(
        "grant references on sales.customer to {role}; grant create on schema audit to {role}",
        r"CREATE on schema audit", "create table audit.t (c bigint references sales.customer)"),
    # relations
    "INSERT": Path("grant insert on sales.customer to {role}", r"INSERT on table sales\.customer",
                   "insert into sales.customer (name) values ('x')"),
    "UPDATE of one column": Path("grant update (name) on sales.customer to {role}",
                                 r"UPDATE \(name\) on table sales\.customer", "update sales.customer set name = name"),
    "DELETE on a partition": Path("grant delete on sales.orders_2025 to {role}", r"DELETE on table sales\.orders_2025",
                                  "delete from sales.orders_2025"),
    "TRUNCATE": Path("grant truncate on audit.event to {role}", r"TRUNCATE on table audit\.event",
                     "truncate audit.event"),
    "TRIGGER, without CREATE": Path(
        "grant trigger on audit.event to {role}", r"TRIGGER on table audit\.event",
        "create trigger t before update on audit.event for each row"
        " execute function suppress_redundant_updates_trigger()"),
    "INSERT on a view that takes it": Path(
        "create view sales.{role}_v as select id, name from sales.customer; grant insert on sales.{role}_v to {role}",
        r"INSERT on view sales\.{role}_v", "insert into sales.{role}_v (name) values ('x')"),
    "USAGE on a sequence": Path("grant usage on audit.ticket_seq to {role}", r"USAGE on sequence audit\.ticket_seq",
                                "select nextval('audit.ticket_seq')"),
    "UPDATE on a sequence": Path("grant update on audit.ticket_seq to {role}", r"UPDATE on sequence audit\.ticket_seq",
                                 "select setval('audit.ticket_seq', 1)"),
    "MAINTAIN": Path("grant maintain on sales.customer to {role}", r"MAINTAIN on table sales\.customer",
                     "reindex table sales.customer", versions=(18,)),
    "MAINTAIN on a materialized view": Path(
        "grant maintain on sales.monthly to {role}", r"MAINTAIN on materialized view sales\.monthly",
        "refresh materialized view sales.monthly", versions=(18,)),
    # large objects
    "UPDATE on a large object": Path(
        f"do $$ begin execute format('grant select, update on large object %s to {{role}}', {FIRST_LO}); end $$",
        r"UPDATE on large object \d+", f"select lo_put({FIRST_LO}, 0, 'x')"),
    "lo_compat_privileges": Path("set local lo_compat_privileges = on", r"lo_compat_privileges is on: .*",
                                 f"select lo_put({FIRST_LO}, 0, 'x')", next_session=True),
    # functions that run as their owner
    "SECURITY DEFINER": Path(
        SD_FUNCTION, r"EXECUTE on function audit\.{role}_f\(\), which runs as its owner {other}, granted to PUBLIC",
        "select audit.{role}_f()"),
    "SECURITY DEFINER procedure": Path(
        "create procedure audit.{role}_p() language sql security definer as 'delete from audit.event';"
        " revoke execute on procedure audit.{role}_p() from public;"
        " grant execute on procedure audit.{role}_p() to {role}",
        r"EXECUTE on procedure audit\.{role}_p\(\), which runs as its owner \w+", "call audit.{role}_p()"),
    "an extension's SECURITY DEFINER function": Path(
        "create extension dblink; grant execute on function dblink_connect_u(text) to {role}",
        r"EXECUTE on function public\.dblink_connect_u\(text\), which runs as its owner \w+", None),  # it would connect
    # parameters
    "SET on a superuser parameter": Path("grant set on parameter lo_compat_privileges to {role}",
                                         r"SET on parameter lo_compat_privileges", "set lo_compat_privileges = on"),
    "ALTER SYSTEM": Path("grant alter system on parameter work_mem to {role}", r"ALTER SYSTEM on parameter work_mem",
                         None),  # ALTER SYSTEM cannot run in a transaction
    # grant options
    "grant option on a table": Path("grant select on sales.customer to {role} with grant option",
                                    r"SELECT on table sales\.customer with GRANT OPTION",
                                    "grant select on sales.customer to {spare}"),
    "grant option on a schema": Path("grant usage on schema audit to {role} with grant option",
                                     r"USAGE on schema audit with GRANT OPTION",
                                     "grant usage on schema audit to {spare}"),
    "grant option on a parameter": Path("grant set on parameter work_mem to {role} with grant option",
                                        r"SET on parameter work_mem with GRANT OPTION",
                                        "grant set on parameter work_mem to {spare}"),
    # foreign data
    "USAGE on a foreign-data wrapper": Path(
        "create foreign data wrapper {role}_w; grant usage on foreign data wrapper {role}_w to {role}",
        r"USAGE on foreign-data wrapper {role}_w", "create server {role}_s foreign data wrapper {role}_w"),
    "USAGE on a foreign server": Path(
        "create foreign data wrapper {role}_w; create server {role}_s foreign data wrapper {role}_w;"
        " grant usage on foreign server {role}_s to {role}",
        r"USAGE on foreign server {role}_s", "create user mapping for current_user server {role}_s"),
}

ACCEPTED = {
    "reads only": Path("", None, "insert into sales.customer (name) values ('x')"),
    "BYPASSRLS": Path("alter role {role} bypassrls", None, "insert into sales.customer (name) values ('x')"),
    "REFERENCES, without CREATE": Path(  # a temporary table's foreign key cannot point at a permanent table
        "grant references on sales.customer to {role}", None,
        "create temporary table t (c bigint references sales.customer)", stopped_by="InvalidTableDefinition"),
    "USAGE on a type, without CREATE": Path(
        "revoke usage on type sales.status from public; grant usage on type sales.status to {role}", None,
        "create table sales.t (s sales.status)"),
    "CREATE on a tablespace, without CREATE on a schema": Path(
        "grant create on tablespace pg_default to {role}", None, "create table sales.t () tablespace pg_default"),
    "writes a view cannot take": Path(
        "grant insert, update, delete, truncate on sales.big_spenders to {role}", None,
        "insert into sales.big_spenders values ('x', 1)", stopped_by="ObjectNotInPrerequisiteState"),
    "writes a materialized view cannot take": Path(
        "grant insert, update, delete, truncate on sales.monthly to {role}", None, "truncate sales.monthly",
        stopped_by="WrongObjectType"),
    "writes a foreign table without a handler cannot take": Path(
        "create foreign data wrapper {role}_w; create server {role}_s foreign data wrapper {role}_w;"
        " create foreign table sales.{role}_f (a int) server {role}_s;"
        " grant insert, update, delete, truncate on sales.{role}_f to {role}", None,
        "insert into sales.{role}_f values (1)", stopped_by="ObjectNotInPrerequisiteState"),
    "a membership with neither INHERIT nor SET": Path(
        "grant pg_write_all_data to {role} with inherit false, set false", None, "delete from sales.orders_2025",
        versions=(18,)),
    "owns a table through a membership with neither": Path(
        "alter table audit.event owner to {other}; grant {other} to {role} with inherit false, set false", None,
        "alter table audit.event add column z int", versions=(18,)),
    "an attribute only SET ROLE would give": Path(
        "alter role {other} createrole; grant {other} to {role} with inherit true, set false", None,
        "create role {role}_n", versions=(18,)),
    "a membership without ADMIN OPTION": Path("grant {other} to {role}", None, "grant {other} to {spare}"),
    "SELECT on a large object": Path(
        f"do $$ begin execute format('grant select on large object %s to {{role}}', {FIRST_LO}); end $$", None,
        f"select lo_put({FIRST_LO}, 0, 'x')"),
    "a foreign-data wrapper without USAGE": Path(
        "create foreign data wrapper {role}_w", None, "create server {role}_s foreign data wrapper {role}_w"),
    "SECURITY DEFINER, not executable": Path(
        SD_FUNCTION + " revoke execute on function audit.{role}_f() from public", None, "select audit.{role}_f()"),
    "SECURITY INVOKER": Path(
        "create function audit.{role}_f() returns void language sql as 'delete from audit.event'", None,
        "select audit.{role}_f()"),
    "an extension's SECURITY DEFINER function, as installed": Path(
        "create extension dblink", None, "select dblink_connect_u('dbname=postgres')"),
    "SET on a user parameter": Path("grant set on parameter work_mem to {role}", None,
                                    "grant set on parameter work_mem to {spare}", stopped_by="warning"),
    "privileges without the grant option": Path("", None, "grant select on sales.customer to {spare}",
                                                stopped_by="warning"),
}


def cases(table: dict[str, Path]) -> list:
    return [pytest.param(version, path, id=f"{version}-{name}")
            for name, path in table.items() for version in path.versions]


@pytest.mark.parametrize("version, path", cases(REFUSED))
def test_a_role_that_can_take_a_path_is_refused_and_the_fix_takes_it_away(request, version, path):
    with one_role(request, version) as (conn, names):
        role = names["role"]
        conn.execute(path.setup.format(**names))
        found = judge(conn, role)
        assert any(re.fullmatch(path.finding.format(**names), f.what) for f in found), found
        if path.trial:
            assert tried(conn, role, path.trial.format(**names)) is None, "the role can take the path"
        fixes = list(dict.fromkeys(f.fix for f in found))
        assert fixes and None not in fixes, found
        for fix in fixes:
            conn.execute(fix)  # as a superuser
        if not path.next_session:
            assert judge(conn, role) == []
            if path.trial:
                assert tried(conn, role, path.trial.format(**names)) in (DENIED, "warning")


@pytest.mark.parametrize("version, path", cases(ACCEPTED))
def test_a_role_that_cannot_take_a_path_is_accepted(request, version, path):
    with one_role(request, version) as (conn, names):
        if path.setup:
            conn.execute(path.setup.format(**names))
        assert judge(conn, names["role"]) == []
        assert tried(conn, names["role"], path.trial.format(**names)) == path.stopped_by


@pytest.mark.parametrize("version", VERSIONS)
def test_owning_the_database_has_no_fix_but_another_role(request, version):
    with one_role(request, version) as (conn, names):
        conn.execute('alter database "{db}" owner to {role}'.format(**names))
        found = judge(conn, names["role"])
        assert write_paths.Finding(f"owns database {names['db']}", None) in found
        assert tried(conn, names["role"], "create schema {role}_s".format(**names)) is None
        with as_role(conn, names["role"]):
            inspection = privileges.inspect(conn)
        assert not inspection.fixable
        hint = privileges.make_read_only(inspection, variable="REMORA_DATABASE_URL", on_dyno=False)
        assert "CREATE ROLE backup_reader LOGIN" in hint and "remora-backup grants --role backup_reader" in hint


@pytest.mark.parametrize("version", VERSIONS)
def test_a_superuser_is_judged_by_its_attributes_alone(request, version):
    with one_role(request, version) as (conn, names):
        conn.execute("alter role {role} superuser createdb bypassrls".format(**names))
        found = judge(conn, names["role"])
        assert found == [write_paths.Finding("CREATEDB", "ALTER ROLE {role} NOCREATEDB".format(**names)),
                         write_paths.Finding("SUPERUSER", "ALTER ROLE {role} NOSUPERUSER".format(**names))]


@pytest.mark.parametrize("version", VERSIONS)
def test_other_sessions_temporary_tables_are_not_counted(request, version):
    """A monitoring tool that shares the credential holds a temporary table while backups are checked."""
    cluster, db = request.getfixturevalue(f"judged_{version}")
    role, password = "t_" + secrets.token_hex(4), secrets.token_hex(8)
    with cluster.connect(db) as admin:
        admin.execute(f"create role {role} login password '{password}'")
        try:
            with psycopg.connect(cluster.url(db, user=role, password=password), autocommit=True) as monitor:
                monitor.execute("create temporary table seen (id int)")
                with psycopg.connect(cluster.url(db, user=role, password=password)) as backup:
                    assert backup.execute("select count(*) from pg_class where relname = 'seen' and relowner ="
                                          " (select oid from pg_roles where rolname = current_user)").fetchone() == (1,)
                    assert write_paths.find(backup, role) == []
        finally:
            _drop_when_gone(admin, role)


def _drop_when_gone(admin, role: str) -> None:
    """Drop ``role`` once its sessions have ended: a closed session's temporary tables go with its backend."""
    deadline = time.monotonic() + 10
    while admin.execute("select count(*) from pg_stat_activity where usename = %s", (role,)).fetchone()[0]:
        assert time.monotonic() < deadline, f"the sessions of {role} did not end"
        time.sleep(0.02)
    admin.execute(f"drop role {role}")


# what pg_dump cannot read: (what the owner takes away from a role that reads everything; the finding and its fix)
GAPS = {
    "a table": ("revoke select on sales.orders_2026 from {role}",
                "no SELECT on table sales.orders_2026", "GRANT SELECT ON TABLE sales.orders_2026 TO {role}"),
    "a sequence": ("revoke select on audit.ticket_seq from {role}",
                   "no SELECT on sequence audit.ticket_seq", "GRANT SELECT ON SEQUENCE audit.ticket_seq TO {role}"),
    "a schema": ("revoke usage on schema audit from {role}",
                 "no USAGE on schema audit", "GRANT USAGE ON SCHEMA audit TO {role}"),
    "a large object": (
        f"do $$ begin execute format('revoke select on large object %s from {{role}}', {FIRST_LO}); end $$",
        "no SELECT on large object {lo}", "GRANT SELECT ON LARGE OBJECT {lo} TO {role}"),
    "row-level security": ("alter table sales.customer enable row level security",
                           "row-level security hides rows of table sales.customer", "ALTER ROLE {role} BYPASSRLS"),
}
READS_ALL = ("grant select on all sequences in schema sales, audit to {role}; do $$ declare r record; begin"
             " for r in select oid from pg_largeobject_metadata loop"
             " execute format('grant select on large object %s to {role}', r.oid); end loop; end $$")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("setup, finding, fix", GAPS.values(), ids=GAPS.keys())
def test_what_pg_dump_cannot_read_is_found_with_its_fix(request, version, setup, finding, fix):
    with one_role(request, version) as (conn, names):
        conn.execute(READS_ALL.format(**names))
        with as_role(conn, names["role"]):
            assert reading.gaps(conn, names["role"]) == []
        conn.execute(setup.format(**names))
        lo = conn.execute(f"select {FIRST_LO}").fetchone()[0]
        with as_role(conn, names["role"]):
            found = reading.gaps(conn, names["role"])
        assert found == [write_paths.Finding(finding.format(lo=lo), fix.format(lo=lo, **names))]
        conn.execute(found[0].fix)
        with as_role(conn, names["role"]):
            assert reading.gaps(conn, names["role"]) == []


@pytest.mark.parametrize("version", VERSIONS)
def test_row_level_security_is_read_through_by_bypassrls_which_is_offered_first(request, version):
    with one_role(request, version) as (conn, names):
        conn.execute(READS_ALL.format(**names) + "; alter table sales.customer enable row level security;"
                     " alter table audit.event enable row level security, force row level security")
        with as_role(conn, names["role"]), pytest.raises(CredentialError) as refused:
            privileges.check(conn, variable="REMORA_DATABASE_URL", allow_write=False)
        assert refused.value.message.endswith("cannot read everything pg_dump reads: row-level security hides rows"
                                              " of table audit.event; row-level security hides rows of table"
                                              " sales.customer; nothing was stored")
        assert refused.value.hint.startswith("as the owner, run ALTER ROLE {role} BYPASSRLS (BYPASSRLS lets {role}"
                                             " read every row and nothing more".format(**names))
        conn.execute("alter role {role} bypassrls".format(**names))
        with as_role(conn, names["role"]):
            assert privileges.check(conn, variable="REMORA_DATABASE_URL", allow_write=False) == "read-only"


@pytest.mark.parametrize("version", VERSIONS)
def test_a_role_that_can_write_is_told_each_statement_that_makes_it_read_only(request, version):
    with one_role(request, version) as (conn, names):
        conn.execute(READS_ALL.format(**names) + "; grant create on schema sales to public;"
                     " grant insert on audit.event to {role}".format(**names))
        with as_role(conn, names["role"]), pytest.raises(CredentialError) as refused:
            privileges.check(conn, variable="REMORA_DATABASE_URL", allow_write=False, on_dyno=False)
    assert refused.value.message.endswith(
        "can change the database: CREATE on schema sales, granted to PUBLIC; INSERT on table audit.event;"
        " refusing before anything is stored")
    assert refused.value.hint == (
        "as a superuser, run REVOKE CREATE ON SCHEMA sales FROM PUBLIC; REVOKE INSERT ON TABLE audit.event FROM {role};"
        " remora-backup grants prints every statement that makes {role} read-only;"
        " or, knowingly, pass --allow-write-credential".format(**names))


def error_line(stderr: str) -> str:
    [line] = [line for line in stderr.splitlines() if "level=error" in line]
    return line


def test_a_credential_that_can_write_is_refused_before_anything_is_stored(pg_cluster, database, gpg_env,
                                                                          file_target_env):
    env = {"REMORA_DATABASE_URL": pg_cluster.url(database), **gpg_env, **file_target_env}  # a superuser
    result = remora("backup", env=env)
    assert result.returncode == 3
    line = error_line(result.stderr)
    assert ("(role remora) can change the database: CREATEDB; CREATEROLE; REPLICATION; SUPERUSER;"
            " refusing before anything is stored") in line
    assert ("back up as a role that only reads: CREATE ROLE backup_reader LOGIN PASSWORD '…', then run what"
            " `remora-backup grants --role backup_reader` prints") in line
    assert "heroku" not in line and "--allow-write-credential" in line and "Traceback" not in result.stderr
    assert list(target_folder(env).rglob("*")) == []

    allowed = ok(remora("backup", "--allow-write-credential", env=env))
    assert re.search(r"level=warning .*can change the database; going on because of --allow-write-credential",
                     allowed.stderr)
    [manifest] = json.loads(ok(remora("list", "--json", env=env)).stdout)
    assert manifest["credential"] == "read-write"


def test_on_a_dyno_the_hint_gives_the_heroku_commands(pg_cluster, database, gpg_env, file_target_env):
    env = {"REMORA_DATABASE_URL": pg_cluster.url(database), "DYNO": "run.1", **gpg_env, **file_target_env}
    hint = ("use a read-only credential: `heroku pg:credentials:create --name backup_reader -a APP`, attach it with"
            " `heroku addons:attach APP::DATABASE --credential backup_reader --as REMORA_DATABASE -a HELPER_APP`;"
            " then run what `heroku run bin/remora-backup grants -a HELPER_APP` prints with `heroku pg:psql -a APP`")
    checked = remora("check", env=env)
    assert checked.returncode == 3
    [line] = [line for line in checked.stdout.splitlines() if line.startswith("credential")]
    assert hint in line
    refused = remora("backup", env=env)  # a scheduled backup on the dyno says the same
    assert refused.returncode == 3 and hint in error_line(refused.stderr)


def test_a_role_missing_select_on_one_table_is_refused_naming_it(pg_cluster, database, gpg_env, file_target_env):
    env = {"REMORA_DATABASE_URL": pg_cluster.reader_url(database), **gpg_env, **file_target_env}
    with pg_cluster.connect(database) as conn:
        conn.execute(f"revoke select on sales.customer from {READER}")
    result = remora("backup", env=env)
    assert result.returncode == 3
    line = error_line(result.stderr)
    assert "cannot read everything pg_dump reads: no SELECT on table sales.customer; nothing was stored" in line
    assert "as the owner, run GRANT SELECT ON TABLE sales.customer TO reader; `remora-backup grants`" in line
    assert list(target_folder(env).rglob("*")) == []
