-- Shaped like dvdrental (the PostgreSQL tutorial's sample, pagila's ancestor), owned by an
-- application role, @owner@, that isolates stores from each other with row-level security: on
-- customer for every other role, and forced on rental, so that even its owner sees only its store.
grant create on schema public to @owner@;
set role @owner@;
create table store (store_id serial primary key, manager_staff_id smallint not null);
create table staff (staff_id serial primary key, first_name varchar(45) not null, store_id smallint not null,
                    picture bytea);
create table customer (customer_id serial primary key, store_id smallint not null, first_name varchar(45) not null,
                       email varchar(50));
create table film (film_id serial primary key, title varchar(255) not null, rental_rate numeric(4, 2) default 4.99);
create table inventory (inventory_id serial primary key, film_id smallint not null references film,
                        store_id smallint not null);
create table rental (rental_id serial primary key, rental_date timestamp not null,
                     inventory_id integer not null references inventory, customer_id smallint not null references customer,
                     store_id smallint not null);
insert into store (manager_staff_id) values (1), (2);
insert into staff (first_name, store_id, picture) values ('Mike', 1, '\x89504e47'), ('Jon', 2, null);
insert into customer (store_id, first_name, email) values (1, 'Mary', 'mary@example.com'), (2, 'Patricia', null);
insert into film (title) values ('Academy Dinosaur'), ('Ace Goldfinger');
insert into inventory (film_id, store_id) values (1, 1), (2, 2);
insert into rental (rental_date, inventory_id, customer_id, store_id)
values ('2005-05-24 22:53:30', 1, 1, 1), ('2005-05-24 22:54:33', 2, 2, 2);
create function film_in_stock(p_film_id integer, p_store_id integer) returns setof integer language sql as $$
    select inventory_id from inventory where film_id = $1 and store_id = $2
$$;
create view customer_list as select c.customer_id, c.first_name, s.store_id from customer c join store s using (store_id);
alter table customer enable row level security;
create policy store_isolation on customer using (store_id = current_setting('app.store_id', true)::smallint);
alter table rental enable row level security;
alter table rental force row level security;
create policy store_isolation on rental using (store_id = current_setting('app.store_id', true)::smallint);
reset role;

-- later: a new table, with its own isolation
set role @owner@;
create table payment (payment_id serial primary key, customer_id smallint not null, amount numeric(5, 2) not null,
                      store_id smallint not null);
insert into payment (customer_id, amount, store_id) values (1, 2.99, 1);
alter table payment enable row level security;
create policy store_isolation on payment using (store_id = current_setting('app.store_id', true)::smallint);
reset role;
