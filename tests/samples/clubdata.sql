-- Shaped like pgexercises' club data (github.com/AlisdairO/pgexercises, clubdata.sql): its own
-- schema, cd, made by a superuser, next to a public schema the application uses for a sequence
-- and a table of its own.
create schema cd;
create table cd.facilities (facid integer primary key, name varchar(100) not null, membercost numeric not null,
                            guestcost numeric not null, initialoutlay numeric not null, monthlymaintenance numeric not null);
create table cd.members (
    memid integer primary key,
    surname varchar(200) not null,
    firstname varchar(200) not null,
    address varchar(300) not null,
    zipcode integer not null,
    telephone varchar(20) not null,
    recommendedby integer references cd.members (memid) on delete set null,
    joindate timestamp not null
);
create table cd.bookings (bookid integer primary key, facid integer not null references cd.facilities (facid),
                          memid integer not null references cd.members (memid), starttime timestamp not null,
                          slots integer not null);
insert into cd.facilities values (0, 'Tennis Court 1', 5, 25, 10000, 200), (1, 'Tennis Court 2', 5, 25, 8000, 200);
insert into cd.members values (0, 'GUEST', 'GUEST', 'GUEST', 0, '(000) 000-0000', null, '2012-07-01 00:00:00'),
                              (1, 'Smith', 'Darren', '8 Bloomsbury Close, Boston', 4321, '555-555-5555', null,
                               '2012-07-02 12:02:05');
insert into cd.bookings values (0, 0, 1, '2012-07-03 11:00:00', 2);
create sequence public.booking_ref start 1000;
create table public.waitlist (id integer primary key default nextval('public.booking_ref'), memid integer not null);
insert into public.waitlist (memid) values (1);

-- later: another schema, for the club's accounts
create schema accounts;
create table accounts.invoice (invoiceid serial primary key, memid integer not null, amount numeric not null);
insert into accounts.invoice (memid, amount) values (1, 25);
