-- A small database that exercises what pg_dump must carry: many column types, several
-- schemas, a partitioned table, sequences, views, functions and large objects.
create extension if not exists plpgsql;
create schema sales;
create schema audit;
create type sales.status as enum ('new', 'paid', 'shipped');
create sequence audit.ticket_seq start 1000 increment 7;

create table sales.customer (
    id bigint generated always as identity primary key,
    name text not null,
    email varchar(200) unique,
    balance numeric(12, 2) default 0,
    born date,
    joined timestamptz default '2026-01-01 00:00:00+00',
    wake_at time,
    active boolean,
    score double precision,
    ratio real,
    tags text[],
    profile jsonb,
    raw json,
    avatar bytea,
    ip inet,
    net cidr,
    mac macaddr,
    span interval,
    token uuid,
    stay daterange,
    spot point,
    state sales.status default 'new'
);

create table sales.orders (
    id bigserial,
    customer_id bigint references sales.customer (id),
    placed date not null,
    total numeric(10, 2),
    primary key (id, placed)
) partition by range (placed);
create table sales.orders_2025 partition of sales.orders for values from ('2025-01-01') to ('2026-01-01');
create table sales.orders_2026 partition of sales.orders for values from ('2026-01-01') to ('2027-01-01');

create table audit.event (
    id integer primary key default nextval('audit.ticket_seq'),
    happened timestamptz not null default now(),
    what text,
    doc oid
);

insert into sales.customer (name, email, balance, born, wake_at, active, score, ratio, tags, profile,
                            raw, avatar, ip, net, mac, span, token, stay, spot, state)
select 'customer ' || g, 'c' || g || '@example.com', g * 1.25, date '1980-01-01' + g, time '06:30' + g * interval '1 minute',
       g % 2 = 0, g / 3.0, g / 7.0, array['t' || g, 'x'], jsonb_build_object('n', g, 'tags', array[g, g + 1]),
       json_build_object('raw', g), decode(md5(g::text), 'hex'), ('10.0.' || (g % 250) || '.1')::inet,
       '192.168.0.0/24', '08:00:2b:01:02:03', make_interval(days => g), md5(g::text)::uuid,
       daterange(date '2026-01-01', date '2026-01-01' + g), point(g, -g),
       (array['new', 'paid', 'shipped'])[g % 3 + 1]::sales.status
from generate_series(1, 500) g;

insert into sales.orders (customer_id, placed, total)
select (g % 500) + 1, date '2025-06-01' + (g % 400), g * 3.5 from generate_series(1, 2000) g;

insert into audit.event (what, doc)
select 'event ' || g, lo_from_bytea(0, convert_to(repeat('large object ' || g || ' ', 100), 'UTF8'))
from generate_series(1, 5) g;

create view sales.big_spenders as
    select c.name, sum(o.total) as spent from sales.customer c join sales.orders o on o.customer_id = c.id
    group by c.name having sum(o.total) > 1000;

create materialized view sales.monthly as
    select date_trunc('month', placed) as month, count(*) as orders from sales.orders group by 1;

create function audit.touch() returns trigger language plpgsql as $$
begin
    new.happened := now();
    return new;
end $$;
create trigger touch before update on audit.event for each row execute function audit.touch();

comment on table sales.customer is 'Customers, with one column of every common type';
select setval('audit.ticket_seq', 5000);
