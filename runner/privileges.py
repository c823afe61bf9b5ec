"""What the database credential can do, read from the catalogs before anything is stored.

A backup credential must be able to read everything pg_dump reads and change nothing. "Can"
counts every role the credential is a member of, since it can take any of them with SET ROLE,
including predefined roles such as pg_write_all_data; and ownership counts as every privilege.
"""

from __future__ import annotations

import dataclasses

import psycopg
import structlog

from runner.errors import CredentialError

log = structlog.get_logger()
SHOWN = 5  # findings named in a message; the rest are counted
READER_ROLE = "backup_reader"  # the read-only role the messages' recipe (and the guide in docs/heroku.md) makes

# Roles the credential is or can become. A superuser is a member of every role.
_MINE = "select oid, rolname from pg_roles where pg_has_role(current_user, oid, 'MEMBER')"
_USER_SCHEMA = "{n}.nspname not in ('pg_catalog', 'information_schema') and {n}.nspname !~ '^pg_(toast|temp_)'"
_NOT_EXTENSION_MEMBER = (
    "not exists (select from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid"
    " and d.deptype = 'e')"
)

# (rank, finding): role attributes first, ownership last, as a reader wants them
_WRITES = f"""
with mine as ({_MINE}),
owned(kind, name, owner) as (
    select 'database', quote_ident(datname), datdba from pg_database where datname = current_database()
    union all select 'schema', quote_ident(nspname), nspowner from pg_namespace
    union all select case c.relkind when 'S' then 'sequence' when 'v' then 'view' when 'm' then 'materialized view'
                     when 'i' then 'index' when 'I' then 'index' when 'f' then 'foreign table' else 'table' end,
                     format('%I.%I', n.nspname, c.relname), c.relowner
              from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.relkind <> 't'
    union all select 'function', format('%I.%I', n.nspname, p.proname), p.proowner
              from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    union all select 'type', format('%I.%I', n.nspname, t.typname), t.typowner
              from pg_type t join pg_namespace n on n.oid = t.typnamespace
              where t.typrelid = 0 and t.typcategory <> 'A'
    union all select 'large object', oid::text, lomowner from pg_largeobject_metadata
    union all select 'extension', quote_ident(extname), extowner from pg_extension
    union all select 'language', quote_ident(lanname), lanowner from pg_language
    union all select 'collation', quote_ident(collname), collowner from pg_collation
    union all select 'conversion', quote_ident(conname), conowner from pg_conversion
    union all select 'operator', oprname, oprowner from pg_operator
    union all select 'text search configuration', quote_ident(cfgname), cfgowner from pg_ts_config
    union all select 'text search dictionary', quote_ident(dictname), dictowner from pg_ts_dict
    union all select 'statistics object', quote_ident(stxname), stxowner from pg_statistic_ext
    union all select 'event trigger', quote_ident(evtname), evtowner from pg_event_trigger
    union all select 'foreign server', quote_ident(srvname), srvowner from pg_foreign_server
    union all select 'publication', quote_ident(pubname), pubowner from pg_publication
),
found(rank, finding) as (
    select 1, case when r.rolname = current_user then attr else format('member of %I (%s)', r.rolname, attr) end
    from mine m join pg_roles r on r.oid = m.oid
    cross join lateral (values ('SUPERUSER', r.rolsuper), ('REPLICATION', r.rolreplication),
        ('BYPASSRLS', r.rolbypassrls), ('CREATEROLE', r.rolcreaterole), ('CREATEDB', r.rolcreatedb)) a(attr, has)
    where a.has
    union all
    select 2, format('member of %I', rolname) from mine
    where rolname in ('pg_write_all_data', 'pg_write_server_files', 'pg_execute_server_program', 'pg_maintain')
    union all
    select 3, 'lo_compat_privileges is on: any role can change large objects'
    where current_setting('lo_compat_privileges')::bool
    union all
    select 4, format('CREATE on database %I', current_database())
    where exists (select from mine where has_database_privilege(mine.oid, current_database(), 'CREATE'))
      and not exists (select from pg_database where datname = current_database()
                      and pg_has_role(current_user, datdba, 'MEMBER'))
    union all
    -- PostgreSQL 14 and older let every role create in schema public
    select 4, format('CREATE on schema %I', n.nspname)
              || case when has_schema_privilege('public', n.oid, 'CREATE')
                 then format(' (granted to PUBLIC: REVOKE CREATE ON SCHEMA %I FROM PUBLIC)', n.nspname) else '' end
    from pg_namespace n
    where not pg_has_role(current_user, n.nspowner, 'MEMBER')
      and exists (select from mine where has_schema_privilege(mine.oid, n.oid, 'CREATE'))
    union all
    select 5, format('%s on %s %I.%I', p.priv, case c.relkind when 'S' then 'sequence' else 'table' end,
                     n.nspname, c.relname)
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    cross join (values ('INSERT'), ('UPDATE'), ('DELETE'), ('TRUNCATE'), ('REFERENCES'), ('TRIGGER'),
                       ('USAGE')) p(priv)
    -- not the system schemas: PUBLIC may UPDATE pg_settings, which only sets the session's own settings
    where {_USER_SCHEMA.format(n="n")} and not pg_has_role(current_user, c.relowner, 'MEMBER')
      and ((c.relkind in ('r', 'p', 'v', 'm', 'f') and p.priv <> 'USAGE'
            and exists (select from mine where case when p.priv in ('INSERT', 'UPDATE', 'REFERENCES')
                        then has_any_column_privilege(mine.oid, c.oid, p.priv)
                        else has_table_privilege(mine.oid, c.oid, p.priv) end))
        or (c.relkind = 'S' and p.priv in ('UPDATE', 'USAGE')  -- either lets nextval() move it
            and exists (select from mine where has_sequence_privilege(mine.oid, c.oid, p.priv))))
    union all
    select 5, format('UPDATE on large object %s', l.oid) from pg_largeobject_metadata l
    where not pg_has_role(current_user, l.lomowner, 'MEMBER')
      and exists (select from aclexplode(l.lomacl) a where a.privilege_type = 'UPDATE'
                  and (a.grantee = 0 or a.grantee in (select oid from mine)))
    union all
    select 6, format('owns %s %s', kind, name) from owned where pg_has_role(current_user, owner, 'MEMBER')
)
select finding, count(*) over () from found order by rank, finding limit {SHOWN}
"""

# (finding, the GRANT that fixes it) for what pg_dump will read and the credential cannot
_GAPS = f"""
with found(finding, fix) as (
    select format('no USAGE on schema %I', n.nspname), format('GRANT USAGE ON SCHEMA %I TO %I', n.nspname, current_user)
    from pg_namespace n
    where {_USER_SCHEMA.format(n="n")} and not has_schema_privilege(n.oid, 'USAGE')
      and exists (select from pg_class c where c.relnamespace = n.oid and c.relkind in ('r', 'p', 'S'))
    union all
    select format('no SELECT on %s %I.%I', kind, n.nspname, c.relname),
           format('GRANT SELECT ON %s %I.%I TO %I', upper(kind), n.nspname, c.relname, current_user)
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    cross join lateral (select case c.relkind when 'S' then 'sequence' else 'table' end) k(kind)
    where c.relkind in ('r', 'p', 'S') and {_USER_SCHEMA.format(n="n")} and {_NOT_EXTENSION_MEMBER}
      and not has_table_privilege(c.oid, 'SELECT')
    union all
    select format('row-level security hides rows of table %I.%I', n.nspname, c.relname),
           format('ALTER TABLE %I.%I DISABLE ROW LEVEL SECURITY, or give %I BYPASSRLS'
                  ' and pass --allow-write-credential', n.nspname, c.relname, current_user)
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relrowsecurity and {_USER_SCHEMA.format(n="n")}
      and (c.relforcerowsecurity or not pg_has_role(current_user, c.relowner, 'USAGE'))
      and not exists (select from pg_roles where rolname = current_user and (rolsuper or rolbypassrls))
    union all
    select format('no SELECT on large object %s', l.oid),
           format('GRANT SELECT ON LARGE OBJECT %s TO %I', l.oid, current_user)
    from pg_largeobject_metadata l
    where not current_setting('lo_compat_privileges')::bool
      and not pg_has_role(current_user, l.lomowner, 'USAGE')
      and not exists (select from aclexplode(l.lomacl) a where a.privilege_type = 'SELECT'
                      and (a.grantee = 0 or pg_has_role(current_user, a.grantee, 'USAGE')))
)
select finding, fix, count(*) over () from found order by finding limit {SHOWN}
"""

_SCHEMAS = f"""
select coalesce(string_agg(quote_ident(nspname), ', ' order by nspname), 'public'),
       exists (select from pg_largeobject_metadata)
from pg_namespace n where {_USER_SCHEMA.format(n="n")}
"""


@dataclasses.dataclass(frozen=True)
class Inspection:
    """The first few findings of each kind, and how many there are in all."""

    role: str
    database: str  # quoted
    writes: list[str]
    write_count: int
    gaps: list[tuple[str, str]]  # (finding, fix)
    gap_count: int
    schemas: str  # the database's own schemas, quoted and comma-separated
    large_objects: bool


def inspect(conn: psycopg.Connection) -> Inspection:
    """Read what the connection's role can change, and what pg_dump will read that it cannot."""
    role, database = conn.execute("select current_user, quote_ident(current_database())").fetchone()
    writes = conn.execute(_WRITES).fetchall()
    gaps = conn.execute(_GAPS).fetchall()
    schemas, large_objects = conn.execute(_SCHEMAS).fetchone()
    return Inspection(
        role=role,
        database=database,
        writes=[row[0] for row in writes],
        write_count=writes[0][1] if writes else 0,
        gaps=[(row[0], row[1]) for row in gaps],
        gap_count=gaps[0][2] if gaps else 0,
        schemas=schemas,
        large_objects=large_objects,
    )


def check(conn: psycopg.Connection, *, variable: str, allow_write: bool) -> str:
    """Refuse a credential that can write (unless allowed) or cannot read; say which it is."""
    found = inspect(conn)
    who = f"the credential in {variable} (role {found.role})"
    if found.writes and not allow_write:
        raise CredentialError(
            f"{who} can change the database: {_listing(found.writes, found.write_count)};"
            " refusing before anything is stored",
            hint=read_only_recipe(found) + "; or, knowingly, pass --allow-write-credential",
        )
    if found.gaps:
        raise CredentialError(
            f"{who} cannot read everything pg_dump reads: {_listing([g for g, _ in found.gaps], found.gap_count)};"
            " nothing was stored",
            hint="as the owner, run: " + "; ".join(fix for _, fix in found.gaps),
        )
    if not found.writes:
        return "read-only"
    log.warning(
        f"{who} can change the database; going on because of --allow-write-credential",
        found=_listing(found.writes, found.write_count),
    )
    return "read-write"


def read_only_recipe(found: Inspection) -> str:
    """How to make a read-only credential for this database, Heroku first."""
    schemas, role = found.schemas, READER_ROLE
    grants = [
        f"GRANT CONNECT ON DATABASE {found.database} TO {role}",
        f"GRANT USAGE ON SCHEMA {schemas} TO {role}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {schemas} TO {role}",
        f"GRANT SELECT ON ALL SEQUENCES IN SCHEMA {schemas} TO {role}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schemas} GRANT SELECT ON TABLES TO {role}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schemas} GRANT SELECT ON SEQUENCES TO {role}",
    ]
    if found.large_objects:
        grants.append(f"GRANT SELECT ON LARGE OBJECT <oid> TO {role} for each large object")
    return (
        f"use a read-only credential: on Heroku `heroku pg:credentials:create --name {role}`, then as the owner "
        + "; ".join(grants)
        + f"; attach it with `heroku addons:attach APP::DATABASE --credential {role} --as REMORA_DATABASE -a HELPER_APP`"
    )


def _listing(items: list[str], total: int) -> str:
    more = f"; ... and {total - len(items)} more" if total > len(items) else ""
    return "; ".join(items) + more
