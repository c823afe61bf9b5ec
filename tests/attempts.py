"""A role trying to change the database: each attempt in a savepoint that is rolled back whatever happens.

An attempt went through if it raised nothing and warned nothing (a GRANT the role may not give
only warns, and so do ANALYZE and VACUUM). ``unstopped_writes`` tries what a role could try anywhere in a
database: write to each relation, move each sequence, create in each schema and in the database,
change each large object, call each function that runs as its owner, grant each of them on, take
each role, set superuser parameters.
"""

from __future__ import annotations

import psycopg

DENIED = "InsufficientPrivilege"


def attempt(conn: psycopg.Connection, statement: str) -> str | None:
    """None if ``statement`` went through; else the name of the error that stopped it, or 'warning'."""
    warnings = []

    def on_notice(diagnostic):
        if diagnostic.severity_nonlocalized == "WARNING":
            warnings.append(diagnostic.message_primary)

    conn.add_notice_handler(on_notice)
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(statement)
    except psycopg.Error as e:
        return type(e).__name__
    finally:
        conn.remove_notice_handler(on_notice)
    return "warning" if warnings else None


# (statement, whether an error other than a privilege's is a fair way to fail): a view, materialized
# view or foreign table may refuse a write for what it is, before any privilege is checked
_WRITES = r"""
with rel as (
    select c.oid, c.relkind, format('%I.%I', n.nspname, c.relname) as name,
           (select quote_ident(attname) from pg_attribute where attrelid = c.oid and attnum > 0
            and not attisdropped and attidentity = '' and attgenerated = '' order by attnum limit 1) as col
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p', 'v', 'm', 'f') and n.nspname not in ('pg_catalog', 'information_schema')
      and n.nspname !~ '^pg_(toast|temp_)'
),
schemas as (select quote_ident(nspname) as name from pg_namespace
            where nspname not in ('pg_catalog', 'information_schema') and nspname !~ '^pg_(toast|temp_)'),
routines as (
    select p.prokind, format('%I.%I(%s)', n.nspname, p.proname,
                             array_to_string(array_fill('null'::text, array[p.pronargs]), ', ')) as call,
           format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) as signature
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where p.prosecdef and p.prokind in ('f', 'p') and n.nspname !~ '^pg_(toast|temp_)'
)
select s, r.relkind <> 'r' and r.relkind <> 'p' from rel r cross join lateral (values
    (format('insert into %s default values', r.name)),
    (format('update %s set %s = %s', r.name, r.col, r.col)),
    (format('delete from %s', r.name)),
    (format('truncate %s', r.name)),
    (format('lock table %s in access exclusive mode', r.name)),
    (format('alter table %s add column remora_probe int', r.name)),
    (format('create trigger remora_probe before update on %s for each row'
            ' execute function suppress_redundant_updates_trigger()', r.name)),
    (format('grant select on %s to public', r.name)),
    (format('analyze %s', r.name)),
    (case when r.relkind = 'm' then format('refresh materialized view %s', r.name) end),
    (case when r.relkind in ('r', 'm') then format('reindex table %s', r.name) end)) v(s)
where s is not null
union all
select s, false from pg_class c join pg_namespace n on n.oid = c.relnamespace
cross join lateral (values
    (format('select nextval(%L)', format('%I.%I', n.nspname, c.relname))),
    (format('select setval(%L, 1)', format('%I.%I', n.nspname, c.relname))),
    (format('alter sequence %I.%I restart', n.nspname, c.relname)),
    (format('grant select on sequence %I.%I to public', n.nspname, c.relname))) v(s)
where c.relkind = 'S' and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_(toast|temp_)'
union all
select s, false from schemas cross join lateral (values
    (format('create table %s.remora_probe (id int)', name)),
    (format('create function %s.remora_probe() returns int language sql as ''select 1''', name)),
    (format('grant usage on schema %s to public', name)),
    (format('alter schema %s rename to remora_probe', name))) v(s)
union all
select s, false from (values
    ('create schema remora_probe'),
    (format('grant create on database %I to public', current_database())),
    (format('alter database %I set work_mem = ''1MB''', current_database())),
    ('create role remora_probe'),
    ('set lo_compat_privileges = on'),
    ('set session_replication_role = replica')) v(s)
union all
select s, false from pg_largeobject_metadata l cross join lateral (values
    (format('select lo_put(%s, 0, ''x'')', l.oid)),
    (format('select lo_unlink(%s)', l.oid)),
    (format('grant select on large object %s to public', l.oid))) v(s)
union all
select s, false from routines cross join lateral (values
    (format(case prokind when 'p' then 'call %s' else 'select %s' end, call)),
    (format('grant execute on routine %s to public', signature))) v(s)
union all
select format('grant %I to current_user', rolname), false from pg_roles
where rolname !~ '^pg_' and rolname <> current_user
union all
select format('create server remora_probe foreign data wrapper %I', fdwname), false from pg_foreign_data_wrapper
union all
select format('create user mapping for current_user server %I', srvname), false from pg_foreign_server
"""


def unstopped_writes(conn: psycopg.Connection) -> dict[str, str]:
    """Every write the connection's role could try that a missing privilege did not stop, and how it ended."""
    found = {}
    for statement, fair in conn.execute(_WRITES).fetchall():
        stopped = attempt(conn, statement)
        if not (stopped in (DENIED, "warning") or (fair and stopped is not None)):
            found[statement] = stopped or "went through"
    return found
