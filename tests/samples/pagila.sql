-- Shaped like pagila (github.com/devrimgunduz/pagila), loaded by a superuser into schema public as
-- a dump from PostgreSQL 14 or older leaves it: CREATE on public granted to PUBLIC. An enum and a
-- domain, serial keys, a partitioned payment table, a trigger function, a view, a materialized
-- view, and rewards_report, a SECURITY DEFINER function that PUBLIC may execute.
grant create on schema public to public;

create type mpaa_rating as enum ('G', 'PG', 'PG-13', 'R', 'NC-17');
create domain year as integer constraint year_check check (value >= 1901 and value <= 2155);

create function last_updated() returns trigger language plpgsql as $$
begin
    new.last_update = current_timestamp;
    return new;
end $$;

create table actor (
    actor_id serial primary key,
    first_name text not null,
    last_name text not null,
    last_update timestamptz not null default now()
);
create table film (
    film_id serial primary key,
    title text not null,
    release_year year,
    rating mpaa_rating default 'G',
    fulltext tsvector,
    last_update timestamptz not null default now()
);
create table film_actor (
    actor_id integer not null references actor,
    film_id integer not null references film,
    primary key (actor_id, film_id)
);
create table customer (
    customer_id serial primary key,
    store_id integer not null,
    first_name text not null,
    last_name text not null,
    email text,
    activebool boolean not null default true,
    active integer
);
create table payment (
    payment_id serial,
    customer_id integer not null references customer,
    amount numeric(5, 2) not null,
    payment_date timestamptz not null,
    primary key (payment_date, payment_id)
) partition by range (payment_date);
create table payment_p2022_01 partition of payment for values from ('2022-01-01') to ('2022-02-01');
create table payment_p2022_02 partition of payment for values from ('2022-02-01') to ('2022-03-01');

create trigger last_updated before update on actor for each row execute function last_updated();
create trigger last_updated before update on film for each row execute function last_updated();

insert into actor (first_name, last_name) values ('PENELOPE', 'GUINESS'), ('NICK', 'WAHLBERG'), ('ED', 'CHASE');
insert into film (title, release_year, rating, fulltext)
values ('ACADEMY DINOSAUR', 2006, 'PG', to_tsvector('academy dinosaur')), ('ACE GOLDFINGER', 2006, 'G', to_tsvector('ace'));
insert into film_actor values (1, 1), (2, 1), (3, 2);
insert into customer (store_id, first_name, last_name, email)
values (1, 'MARY', 'SMITH', 'mary.smith@example.com'), (2, 'PATRICIA', 'JOHNSON', null);
insert into payment (customer_id, amount, payment_date)
values (1, 2.99, '2022-01-24 21:40:19+00'), (2, 0.99, '2022-02-25 15:16:50+00');

create view actor_info as
    select a.actor_id, a.first_name, a.last_name, string_agg(f.title, ', ' order by f.title) as film_info
    from actor a left join film_actor fa using (actor_id) left join film f using (film_id)
    group by a.actor_id, a.first_name, a.last_name;
create materialized view rental_by_category as
    select c.store_id, sum(p.amount) as total_sales from payment p join customer c using (customer_id) group by 1;

create function rewards_report(min_monthly_purchases integer, min_dollar_amount_purchased numeric)
returns setof customer language plpgsql security definer as $$
begin
    create temporary table tmpcustomer (customer_id integer not null primary key);
    insert into tmpcustomer select p.customer_id from payment p group by p.customer_id
        having sum(p.amount) > min_dollar_amount_purchased and count(*) > min_monthly_purchases;
    return query select c.* from tmpcustomer t join customer c using (customer_id);
    drop table tmpcustomer;
end $$;

-- later: a new partition, made by the same superuser that made the rest
create table payment_p2022_03 partition of payment for values from ('2022-03-01') to ('2022-04-01');
insert into payment (customer_id, amount, payment_date) values (1, 5.99, '2022-03-01 10:00:00+00');
