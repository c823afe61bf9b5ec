"""Every way a role can change the database, one rule a kind of path, each finding with the statement that removes it.

A path counts if and only if the role can take it on the server it is on (PostgreSQL 15 to 18):

- roles: a role's privileges are the role's own, PUBLIC's, those of roles it inherits, and
  those of roles it can ``SET ROLE`` to and what they inherit. On 15 every membership allows
  ``SET ROLE``; from 16 on, each grant's INHERIT and SET options decide, and a membership with
  neither gives nothing. Attributes are never inherited: only ``SET ROLE`` gives them.
- what is not counted, because the role cannot use it to change anything: BYPASSRLS (it only
  widens what the role reads); REFERENCES (a foreign key needs a table of the role's own, so
  CREATE on a schema, a path of its own: a temporary table cannot hold one to a permanent
  table); USAGE on a type or a language and CREATE on a tablespace (what they let the role make
  is made in a schema it needs CREATE on, or is temporary); writes that a view, a materialized
  view or a foreign table cannot take; other sessions' temporary objects (gone when the session
  ends); and what every role can do anyway: temporary tables and functions, new large objects.

The grantor's own items (the owner's) are not findings: ownership is one, and names the object.
"""

from __future__ import annotations

import dataclasses

import psycopg
from psycopg import sql

# Predefined roles that write: their members need no grant on any object.
WRITING_ROLES = ("pg_write_all_data", "pg_write_server_files", "pg_execute_server_program", "pg_maintain")
_TEMP = "^pg_(toast_)?temp_"
# From 16 on, a membership is revoked as granted by its grantor: a superuser's REVOKE names itself otherwise.
_GRANTED_BY = ("case when current_setting('server_version_num')::int >= 160000"
               " then format(' GRANTED BY %I', pg_get_userbyid({grantor})) else '' end")


@dataclasses.dataclass(frozen=True)
class Finding:
    """A path to a write (or a gap in reading): what it is, and the statement that removes it."""

    what: str
    fix: str | None  # None: no statement removes it (the role owns the database)


@dataclasses.dataclass(frozen=True)
class Rule:
    kind: str
    sql: str  # a query over the prelude's CTEs that returns (what, fix)


def prelude(major: int, role: str) -> str:
    """CTEs: the role (me, ``role`` a quoted literal), the roles whose privileges it can use (reach, with the
    revoke that cuts each off), every object with its ACL (objects), and what reach or PUBLIC holds (held).

    Queries built on it take no parameters, so that psycopg leaves format()'s % alone.
    """
    # 15: a member may always SET ROLE; 16+: only along grants that all have the SET option
    settable = ("select oid from member" if major < 16 else
                "select m.oid from member m, me where pg_has_role(me.oid, m.oid, 'SET')")
    return f"""
with me as (select oid, rolname, rolsuper from pg_roles where rolname = {role}),
-- a superuser is a member of every role; being one says all there is to say
member as (select r.oid, r.rolname from pg_roles r, me
           where pg_has_role(me.oid, r.oid, 'MEMBER') and (r.oid = me.oid or not me.rolsuper)),
settable as ({settable}),
reach(oid, rolname, revoke_via) as (
    select m.oid, m.rolname,
           case when l.roleid is not null
                then format('REVOKE %I FROM %I', pg_get_userbyid(l.roleid), me.rolname)
                     || {_GRANTED_BY.format(grantor="l.grantor")} end
    from member m cross join me
    -- the membership of its own that leads there, the one to revoke (none for itself, or an owner's implicit one)
    left join lateral (select a.roleid, a.grantor from pg_auth_members a
                       where a.member = me.oid and m.oid <> me.oid
                         and (a.roleid = m.oid or pg_has_role(a.roleid, m.oid, 'MEMBER'))
                       order by a.roleid = m.oid desc, a.roleid limit 1) l on true
    where exists (select from settable s where pg_has_role(s.oid, m.oid, 'USAGE'))
),
grantees(oid, holder, who, revoke_via) as (
    select 0::oid, 'PUBLIC', ', granted to PUBLIC', null::text
    union all
    select r.oid, quote_ident(r.rolname),
           case when r.oid = me.oid then '' else format(', through role %I', r.rolname) end, r.revoke_via
    from reach r, me
),
relations as (
    select c.oid, c.relkind, c.relowner, c.relacl, format('%I.%I', n.nspname, c.relname) as name,
           case c.relkind when 'S' then 'sequence' when 'v' then 'view' when 'm' then 'materialized view'
                          when 'f' then 'foreign table' else 'table' end as kind,
           format('%s %I.%I', case c.relkind when 'S' then 'SEQUENCE' else 'TABLE' end, n.nspname, c.relname) as target,
           -- which of INSERT (8), UPDATE (4), DELETE (16) it can take; a foreign table whose wrapper
           -- has no handler can take none (and pg_relation_is_updatable would fail on it)
           case when c.relkind in ('r', 'p') then 28
                when c.relkind = 'v' or (c.relkind = 'f' and exists (
                    select from pg_foreign_table ft join pg_foreign_server s on s.oid = ft.ftserver
                    join pg_foreign_data_wrapper w on w.oid = s.srvfdw where ft.ftrelid = c.oid and w.fdwhandler <> 0))
                then pg_relation_is_updatable(c.oid, true) else 0 end as updatable
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    -- not the system schemas: PUBLIC may UPDATE pg_settings, which sets only the session's own settings
    where c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
      and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_(toast|temp_)'
),
objects(kind, name, target, col, owner, acl, flag, updatable) as (
    select r.kind, r.name, r.target, null, r.relowner,
           coalesce(r.relacl, acldefault((case r.relkind when 'S' then 's' else 'r' end)::"char", r.relowner)),
           r.relkind::text, r.updatable
    from relations r
    union all  -- a column's own privileges
    select r.kind, r.name, r.target, quote_ident(a.attname), r.relowner, a.attacl, r.relkind::text, r.updatable
    from relations r join pg_attribute a on a.attrelid = r.oid
    where a.attnum > 0 and not a.attisdropped and a.attacl is not null
    union all
    select case p.prokind when 'p' then 'procedure' when 'a' then 'aggregate' else 'function' end,
           format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
           format('ROUTINE %I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
           null, p.proowner, coalesce(p.proacl, acldefault('f', p.proowner)),
           case when p.prosecdef then 'definer' end, 0
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname !~ '{_TEMP}'
    union all
    select 'schema', quote_ident(nspname), format('SCHEMA %I', nspname), null, nspowner,
           coalesce(nspacl, acldefault('n', nspowner)), null, 0
    from pg_namespace where nspname !~ '^pg_(toast|temp_)'
    union all
    select 'database', quote_ident(datname), format('DATABASE %I', datname), null, datdba,
           coalesce(datacl, acldefault('d', datdba)), null, 0
    from pg_database where datname = current_database()
    union all
    select 'type', format('%I.%I', n.nspname, t.typname), format('TYPE %I.%I', n.nspname, t.typname), null,
           t.typowner, coalesce(t.typacl, acldefault('T', t.typowner)), null, 0
    from pg_type t join pg_namespace n on n.oid = t.typnamespace
    where t.typrelid = 0 and t.typcategory <> 'A' and n.nspname !~ '{_TEMP}'
    union all
    select 'language', quote_ident(lanname), format('LANGUAGE %I', lanname), null, lanowner,
           coalesce(lanacl, acldefault('l', lanowner)), null, 0
    from pg_language
    union all
    select 'large object', oid::text, format('LARGE OBJECT %s', oid), null, lomowner,
           coalesce(lomacl, acldefault('L', lomowner)), null, 0
    from pg_largeobject_metadata
    union all
    select 'foreign-data wrapper', quote_ident(fdwname), format('FOREIGN DATA WRAPPER %I', fdwname), null,
           fdwowner, coalesce(fdwacl, acldefault('F', fdwowner)), null, 0
    from pg_foreign_data_wrapper
    union all
    select 'foreign server', quote_ident(srvname), format('FOREIGN SERVER %I', srvname), null, srvowner,
           coalesce(srvacl, acldefault('S', srvowner)), null, 0
    from pg_foreign_server
    union all
    -- a parameter's privileges have no owner: the bootstrap superuser grants them
    select 'parameter', p.parname, format('PARAMETER %s', p.parname), null, 10::oid, coalesce(p.paracl, '{{}}'),
           s.context, 0
    from pg_parameter_acl p left join pg_settings s on s.name = p.parname
    union all
    select 'tablespace', quote_ident(spcname), format('TABLESPACE %I', spcname), null, spcowner,
           coalesce(spcacl, acldefault('t', spcowner)), null, 0
    from pg_tablespace
),
held as (
    select o.*, a.privilege_type as privilege, a.is_grantable as grantable, g.holder, g.who, g.revoke_via,
           a.privilege_type || case when o.col is null then '' else format(' (%s)', o.col) end as clause
    from objects o cross join lateral aclexplode(o.acl) a join grantees g on g.oid = a.grantee
    where a.grantee <> o.owner
)
"""


def _revoke(clause: str) -> str:
    """SQL for the statement that takes a held privilege away: from its holder, or the membership that leads to it."""
    return f"coalesce(h.revoke_via, format('REVOKE %s ON %s FROM %s', {clause}, h.target, h.holder))"


RULES = [
    Rule("attribute", """
        -- attributes are not inherited: only the role's own, and those of roles it can SET ROLE to
        select case when r.oid = me.oid then a.attr
                    else format('%s, as role %I, which it can SET ROLE to', a.attr, r.rolname) end,
               coalesce(r.revoke_via, format('ALTER ROLE %I NO%s', r.rolname, a.attr))
        from settable s join reach r on r.oid = s.oid join pg_roles p on p.oid = r.oid cross join me
        cross join lateral (values ('SUPERUSER', p.rolsuper), ('REPLICATION', p.rolreplication),
                                   ('CREATEROLE', p.rolcreaterole), ('CREATEDB', p.rolcreatedb)) a(attr, has)
        where a.has"""),
    Rule("writing role", f"""
        select format('member of %I', r.rolname), r.revoke_via from reach r
        where r.rolname in ({", ".join(f"'{name}'" for name in WRITING_ROLES)})"""),
    Rule("admin option", f"""
        -- ADMIN OPTION lets it grant the role to any role, itself included
        select format('ADMIN OPTION on role %I%s', pg_get_userbyid(a.roleid), g.who),
               coalesce(g.revoke_via, format('REVOKE ADMIN OPTION FOR %I FROM %s', pg_get_userbyid(a.roleid), g.holder)
                                      || {_GRANTED_BY.format(grantor="a.grantor")})
        from pg_auth_members a join grantees g on g.oid = a.member where a.admin_option"""),
    Rule("create", f"""
        select format('CREATE on %s %s%s', h.kind, h.name, h.who), {_revoke("h.clause")}
        from held h where h.privilege = 'CREATE' and h.kind in ('database', 'schema')"""),
    Rule("security definer", f"""
        -- runs with its owner's rights; an extension's are judged the same (dblink revokes its own from PUBLIC)
        select format('EXECUTE on %s %s, which runs as its owner %I%s', h.kind, h.name, pg_get_userbyid(h.owner),
                      h.who),
               {_revoke("h.clause")}
        from held h where h.privilege = 'EXECUTE' and h.flag = 'definer'
          and h.owner not in (select oid from reach)"""),
    Rule("parameter", f"""
        -- SET counts only where it is a superuser's to give: anyone may SET a user parameter anyway
        select format('%s on parameter %s%s', h.privilege, h.name, h.who), {_revoke("h.clause")}
        from held h where h.kind = 'parameter'
          and (h.privilege = 'ALTER SYSTEM' or coalesce(h.flag, 'superuser') = 'superuser')"""),
    Rule("table", f"""
        select format('%s on %s %s%s', h.clause, h.kind, h.name, h.who), {_revoke("h.clause")}
        from held h
        where h.flag in ('r', 'p', 'v', 'm', 'f', 'S') and (
            (h.privilege = 'INSERT' and h.updatable & 8 <> 0)
            or (h.privilege = 'UPDATE' and (h.updatable & 4 <> 0 or h.flag = 'S'))  -- setval() on a sequence
            or (h.privilege = 'DELETE' and h.updatable & 16 <> 0)
            or (h.privilege = 'TRUNCATE' and h.flag in ('r', 'p', 'f') and h.updatable <> 0)
            -- a trigger needs no CREATE: suppress_redundant_updates_trigger(), or a function in pg_temp
            or (h.privilege = 'TRIGGER' and h.flag in ('r', 'p', 'v', 'f'))
            -- VACUUM, ANALYZE, CLUSTER, REINDEX, REFRESH MATERIALIZED VIEW (PostgreSQL 17 and later)
            or (h.privilege = 'MAINTAIN' and h.flag in ('r', 'p', 'm'))
            or (h.privilege = 'USAGE' and h.flag = 'S'))  -- nextval()"""),
    Rule("large object", f"""
        select format('UPDATE on large object %s%s', h.name, h.who), {_revoke("h.clause")}
        from held h where h.kind = 'large object' and h.privilege = 'UPDATE'
        union all
        select 'lo_compat_privileges is on: any role can change any large object',
               format('ALTER ROLE %I IN DATABASE %I SET lo_compat_privileges = off', me.rolname, current_database())
        from me where current_setting('lo_compat_privileges')::bool"""),
    Rule("foreign data", f"""
        -- a server on a wrapper, a user mapping on a server: each needs USAGE only
        select format('USAGE on %s %s%s', h.kind, h.name, h.who), {_revoke("h.clause")}
        from held h where h.privilege = 'USAGE' and h.kind in ('foreign-data wrapper', 'foreign server')"""),
    Rule("grant option", f"""
        select format('%s on %s %s with GRANT OPTION%s', h.clause, h.kind, h.name, h.who),
               {_revoke("'GRANT OPTION FOR ' || h.clause")}
        from held h where h.grantable"""),
    Rule("owner", f"""
        -- an owner can do everything; other sessions' temporary objects are not counted
        select format('owns %s %s%s', o.kind, o.name, g.who),
               coalesce(g.revoke_via, case when g.oid = me.oid and d.datdba <> me.oid
                   then format('REASSIGN OWNED BY %I TO %I', me.rolname, pg_get_userbyid(d.datdba)) end)
        from owned o join grantees g on g.oid = o.owner cross join me
        cross join (select datdba from pg_database where datname = current_database()) d"""),
]

# Whatever a role owns: ownership is every privilege on it.
_OWNED = """
, owned(kind, name, owner) as (
    select kind, name, owner from objects where col is null and kind <> 'parameter'
    union all select 'extension', quote_ident(extname), extowner from pg_extension
    union all select 'collation', quote_ident(collname), collowner from pg_collation
    union all select 'conversion', quote_ident(conname), conowner from pg_conversion
    union all select 'operator', oprname, oprowner from pg_operator
    union all select 'text search configuration', quote_ident(cfgname), cfgowner from pg_ts_config
    union all select 'text search dictionary', quote_ident(dictname), dictowner from pg_ts_dict
    union all select 'statistics object', quote_ident(stxname), stxowner from pg_statistic_ext
    union all select 'event trigger', quote_ident(evtname), evtowner from pg_event_trigger
    union all select 'publication', quote_ident(pubname), pubowner from pg_publication
    union all select 'subscription', quote_ident(subname), subowner from pg_subscription
              where subdbid = (select oid from pg_database where datname = current_database())
)
"""


def find(conn: psycopg.Connection, role: str) -> list[Finding]:
    """Every path to a write that ``role`` can take, rule by rule; for a superuser, its attributes only."""
    [superuser] = conn.execute("select rolsuper from pg_roles where rolname = %s", (role,)).fetchone()
    rules = RULES[:1] if superuser else RULES
    union = "\nunion all\n".join(
        f"(select {rank}, x.* from ({rule.sql}\n) x(what, fix))" for rank, rule in enumerate(rules)
    )
    head = prelude(conn.info.server_version // 10000, sql.Literal(role).as_string(conn))
    rows = conn.execute(head + _OWNED + f"select * from ({union}) found order by 1, 2").fetchall()
    return [Finding(what, fix) for _rank, what, fix in rows]
