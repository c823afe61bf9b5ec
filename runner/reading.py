"""What pg_dump reads: what a role lacks of it, what keeps new objects readable, and what to grant.

pg_dump reads (and locks) every table, partitioned tables included, every sequence and every
large object, under the schemas' USAGE; views, materialized views and foreign tables it does not
read. An extension's tables it reads only if the extension marks them as configuration.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from runner.write_paths import Finding

_CONTEXT = """
with me as (select oid, rolname, rolsuper, rolbypassrls from pg_roles where rolname = {role}),
schemas as (
    select oid, nspname, nspowner from pg_namespace
    where nspname not in ('pg_catalog', 'information_schema') and nspname !~ '^pg_(toast|temp_)'
),
dumped as (
    select c.oid, c.relkind, c.relowner, c.relrowsecurity, c.relforcerowsecurity, c.relnamespace,
           format('%I.%I', s.nspname, c.relname) as name,
           case c.relkind when 'S' then 'sequence' else 'table' end as kind
    from pg_class c join schemas s on s.oid = c.relnamespace
    where c.relkind in ('r', 'p', 'S')
      and (not exists (select from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid
                       and d.deptype = 'e')
           or c.oid in (select unnest(extconfig) from pg_extension))
)
"""

_GAPS = """
select format('no USAGE on schema %I', s.nspname), format('GRANT USAGE ON SCHEMA %I TO %I', s.nspname, me.rolname)
from schemas s, me
where exists (select from dumped d where d.relnamespace = s.oid) and not has_schema_privilege(me.oid, s.oid, 'USAGE')
union all
select format('no SELECT on %s %s', d.kind, d.name),
       format('GRANT SELECT ON %s %s TO %I', upper(d.kind), d.name, me.rolname)
from dumped d, me where not has_table_privilege(me.oid, d.oid, 'SELECT')
union all
-- pg_dump turns row_security off, so a table whose policies apply to the role fails the dump
select format('row-level security hides rows of table %s', d.name), format('ALTER ROLE %I BYPASSRLS', me.rolname)
from dumped d, me
where d.relrowsecurity and (d.relforcerowsecurity or not pg_has_role(me.oid, d.relowner, 'USAGE'))
  and not (me.rolsuper or me.rolbypassrls)
union all
select format('no SELECT on large object %s', l.oid), format('GRANT SELECT ON LARGE OBJECT %s TO %I', l.oid, me.rolname)
from pg_largeobject_metadata l, me
where not current_setting('lo_compat_privileges')::bool and not pg_has_role(me.oid, l.lomowner, 'USAGE')
  and not exists (select from aclexplode(l.lomacl) a where a.privilege_type = 'SELECT'
                  and (a.grantee = 0 or pg_has_role(me.oid, a.grantee, 'USAGE')))
order by 1
"""

# Per role that owns what pg_dump reads: each kind of object it can create that would come without
# SELECT for the role. Large objects have default privileges from PostgreSQL 18 on.
_DEFAULTS = """
, owned(owner, objtype, nsp) as (
    select relowner, case relkind when 'S' then 'S' else 'r' end, relnamespace from dumped
    union all
    select lomowner, 'L', 0 from pg_largeobject_metadata where current_setting('server_version_num')::int >= 180000
)
select distinct format('role %I owns %s and gives %I no default SELECT on new ones', pg_get_userbyid(o.owner), k.plural,
                       me.rolname),
       format('ALTER DEFAULT PRIVILEGES FOR ROLE %I GRANT SELECT ON %s TO %I', pg_get_userbyid(o.owner),
              upper(k.plural), me.rolname)
from owned o cross join me
join (values ('r', 'tables'), ('S', 'sequences'), ('L', 'large objects')) k(objtype, plural) on k.objtype = o.objtype
where o.owner <> me.oid and o.owner <> 'pg_database_owner'::regrole
  and not exists (select from pg_default_acl d cross join lateral aclexplode(d.defaclacl) a
                  where d.defaclrole = o.owner and d.defaclobjtype = o.objtype and d.defaclnamespace in (0, o.nsp)
                    and a.privilege_type = 'SELECT' and (a.grantee = 0 or pg_has_role(me.oid, a.grantee, 'USAGE')))
order by 1
"""

_READ = """
select pg_get_userbyid(o.owner), o.kind, o.name from (
    select nspowner, 'schema', quote_ident(nspname) from schemas
    union all select relowner, kind, name from dumped
    union all select lomowner, 'large object', oid::text from pg_largeobject_metadata
) o(owner, kind, name)
order by 1, 2, 3
"""


def _query(conn: psycopg.Connection, role: str, body: str) -> list[tuple]:
    # no parameters: psycopg would take format()'s %I for one of its own
    context = _CONTEXT.format(role=sql.Literal(role).as_string(conn))
    return conn.execute(context + body).fetchall()


def gaps(conn: psycopg.Connection, role: str) -> list[Finding]:
    """What pg_dump will read that ``role`` cannot, each with the GRANT (or ALTER ROLE) that fixes it."""
    return [Finding(what, fix) for what, fix in _query(conn, role, _GAPS)]


def missing_defaults(conn: psycopg.Connection, role: str) -> list[Finding]:
    """Roles that own what pg_dump reads and would create new objects that ``role`` cannot read."""
    return [Finding(what, fix) for what, fix in _query(conn, role, _DEFAULTS)]


def owned(conn: psycopg.Connection) -> dict[str, dict[str, list[str]]]:
    """Every schema, table, sequence and large object pg_dump reads, quoted: {owner: {kind: [names]}}."""
    by_owner: dict[str, dict[str, list[str]]] = {}
    for owner, kind, name in _query(conn, "", _READ):
        by_owner.setdefault(owner, {}).setdefault(kind, []).append(name)
    return by_owner
