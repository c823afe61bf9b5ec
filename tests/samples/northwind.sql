-- Shaped like northwind (github.com/pthom/northwind_psql), with its pictures as large objects
-- rather than bytea, owned by two roles, and a second schema, reporting, that an analyst role
-- owns. Later the application stores another large object.
grant create on schema public to @owner@;
create schema reporting authorization @analyst@;
set role @owner@;
create table categories (category_id smallint primary key, category_name varchar(15) not null, description text,
                         picture oid);
create table suppliers (supplier_id smallint primary key, company_name varchar(40) not null, country varchar(15));
create table products (
    product_id smallint primary key,
    product_name varchar(40) not null,
    supplier_id smallint references suppliers,
    category_id smallint references categories,
    unit_price real,
    discontinued integer not null
);
create table employees (employee_id smallint primary key, last_name varchar(20) not null, first_name varchar(10) not null,
                        photo oid, reports_to smallint references employees);
create table customers (customer_id varchar(5) primary key, company_name varchar(40) not null);
create table orders (order_id smallint primary key, customer_id varchar(5) references customers,
                     employee_id smallint references employees, order_date date);
create table order_details (order_id smallint references orders, product_id smallint references products,
                            unit_price real not null, quantity smallint not null, discount real not null,
                            primary key (order_id, product_id));
create table us_states (state_id smallint primary key, state_name varchar(100), state_abbr varchar(2));
insert into categories values (1, 'Beverages', 'Soft drinks, coffees, teas, beers, and ales',
                               lo_from_bytea(0, '\x89504e470d0a1a0a'));
insert into suppliers values (1, 'Exotic Liquids', 'UK');
insert into products values (1, 'Chai', 1, 1, 18, 0);
insert into employees values (1, 'Davolio', 'Nancy', lo_from_bytea(0, '\xffd8ffe0'), null);
insert into customers values ('ALFKI', 'Alfreds Futterkiste');
insert into orders values (10248, 'ALFKI', 1, '1996-07-04');
insert into order_details values (10248, 1, 14, 12, 0);
insert into us_states values (1, 'Alabama', 'AL');
reset role;
select lo_from_bytea(0, 'a picture the superuser stored');  -- owned by the superuser
set role @analyst@;
create table reporting.sales_by_month (month date primary key, total real not null);
create view reporting.product_sales as select p.product_name, sum(d.unit_price * d.quantity) as sales
    from public.order_details d join public.products p using (product_id) group by 1;
reset role;
grant select on order_details, products to @analyst@;

-- later: the application stores another picture
set role @owner@;
update employees set photo = lo_from_bytea(0, '\xffd8ffe1') where employee_id = 1;
reset role;
