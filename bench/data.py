"""The benchmark's databases: pgbench tables, random ``bytea`` and generated text, at a given size.

Everything is generated on the server (pgbench's server-side generation, ``INSERT … SELECT``),
never row by row from Python, so that 4 GB take minutes on 2 cores. A database is built under a
temporary name and renamed when whole, so a database under its final name is complete; the name
holds the size and GENERATOR_VERSION, so a kept cluster (the cache) serves later runs as they are.
"""

from __future__ import annotations

import random
import time

from bench.commands import timed
from tests.helpers import PG_BIN, base_env, libpq_env
from tests.servers.postgres import Cluster

GENERATOR_VERSION = 1  # change it whenever what is generated changes: cached databases are rebuilt
GB = 10**9
PGBENCH_SHARE = 0.40  # of the size; random bytea takes BLOBS_SHARE and generated text the rest
BLOBS_SHARE = 0.25
PGBENCH_BYTES_PER_SCALE = 15_700_000  # pgbench_accounts' 100,000 rows and their key, per scale step
FIRST_BATCH_ROWS = 200  # rows inserted before the size of one is known
BATCH_BYTES = 200_000_000  # bytes inserted per statement afterwards
VOCABULARY = 5_000  # words
PGBENCH_TIMEOUT = 3600  # seconds: far more than the scale of a 4 GB database needs
TEXT_TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history", "docs")

_BLOBS = """
create extension if not exists pgcrypto;
create table blobs (id int primary key, data bytea not null);
-- stored as it is: PostgreSQL would only try, and fail, to compress random bytes
alter table blobs alter column data set storage external;
"""
_BLOB_ROWS = """
insert into blobs
select i, gen_random_bytes(1024) || gen_random_bytes(1024) || gen_random_bytes(1024) || gen_random_bytes(1024)
from generate_series(%(first)s::int, %(last)s::int) i
"""
_DOCS = """
create table docs (id bigint primary key, created_at timestamptz not null, title text not null,
                   body text not null, attributes jsonb not null);
-- words picked log-uniformly (a few common ones, a long tail), as in prose; a name[] because its
-- fixed-size elements are found in one step, where text[] is walked from its start
create function pg_temp.prose(words name[], n int) returns text volatile language sql as
$$ select string_agg(words[ceil(power(cardinality(words), random()))::int], ' ') from generate_series(1, n) $$;
"""
_DOC_ROWS = """
insert into docs
select i,
       timestamptz '2024-01-01 00:00:00+00' + i * interval '37 seconds',
       initcap(pg_temp.prose(v.words, 3 + i %% 6)),
       pg_temp.prose(v.words, 40 + i %% 160),
       jsonb_build_object(
           'customer', initcap(pg_temp.prose(v.words, 2)),
           'email', pg_temp.prose(v.words, 1) || i || '@example.com',
           'status', (array['open', 'pending', 'shipped', 'closed'])[1 + i %% 4],
           'amount', round((random() * 500)::numeric, 2),
           'tags', to_jsonb(string_to_array(pg_temp.prose(v.words, 1 + i %% 4), ' ')))
from generate_series(%(first)s::int, %(last)s::int) i, (select %(words)s::name[] as words) v
"""


def _vocabulary() -> list[str]:
    """5,000 made-up words of one to three syllables, the same in every run."""
    syllables = ("ka to ri men sa lo ven di par ne us ta bel co fi gra mo li ser an e o tri ul stra pen ho qui "
                 "ra dex").split()
    rng = random.Random(GENERATOR_VERSION)
    return ["".join(rng.choice(syllables) for _ in range(1 + n % 3)) for n in range(VOCABULARY)]


def database_name(size_gb: float) -> str:
    return f"bench_v{GENERATOR_VERSION}_{round(size_gb * 1000)}mb"


def prune(cluster: Cluster) -> None:
    """Drop what earlier generator versions and interrupted runs left in a kept cluster."""
    with cluster.connect() as conn:
        names = [r[0] for r in conn.execute("select datname from pg_database where datname ~ '^(bench|building)_'")]
        for name in names:
            if name.startswith("building_") or not name.startswith(f"bench_v{GENERATOR_VERSION}_"):
                conn.execute(f'drop database "{name}" with (force)')


def ensure(cluster: Cluster, size_gb: float, *, log) -> str:
    """The name of a database of about ``size_gb`` GB, generated unless the cluster has it."""
    name = database_name(size_gb)
    with cluster.connect() as conn:
        if conn.execute("select 1 from pg_database where datname = %s", [name]).fetchone():
            return name
        building = "building_" + name
        log(f"generating {name}")
        conn.execute(f'drop database if exists "{building}"')
        conn.execute(f'create database "{building}"')
    started = time.monotonic()
    size = size_gb * GB
    _pgbench(cluster, building, scale=max(1, round(PGBENCH_SHARE * size / PGBENCH_BYTES_PER_SCALE)))
    with cluster.connect(building) as conn:
        conn.execute(_BLOBS)
        _fill(conn, "blobs", _BLOB_ROWS, BLOBS_SHARE * size, {})
        conn.execute(_DOCS)
        _fill(conn, "docs", _DOC_ROWS, (1 - PGBENCH_SHARE - BLOBS_SHARE) * size, {"words": _vocabulary()})
        conn.execute("vacuum (analyze)")  # hint bits set now, not by the first timed dump
    with cluster.connect() as conn:
        conn.execute(f'alter database "{building}" rename to "{name}"')
    log(f"generated {name} in {time.monotonic() - started:.0f} s")
    return name


def _pgbench(cluster: Cluster, dbname: str, *, scale: int) -> None:
    """pgbench's tables at ``scale``, generated by the server itself (-I G), keys included."""
    timed([str(PG_BIN / "pgbench"), "--initialize", f"--scale={scale}", "--init-steps=dtGvp", "--quiet", dbname],
          env={**base_env(), **libpq_env(cluster.url(dbname))}, timeout=PGBENCH_TIMEOUT)


def _fill(conn, table: str, insert: str, target_bytes: float, params: dict) -> None:
    """Insert generated rows into ``table`` in large batches until it holds about ``target_bytes``."""
    rows = 0
    while (size := _size(conn, table)) < target_bytes:
        per_row = size / rows if rows else None
        batch = FIRST_BATCH_ROWS if per_row is None else max(1, int(min(target_bytes - size, BATCH_BYTES) / per_row))
        conn.execute(insert, {**params, "first": rows + 1, "last": rows + batch})
        rows += batch


def _size(conn, table: str) -> int:
    return conn.execute("select pg_total_relation_size(%s)", [table]).fetchone()[0]


def describe(cluster: Cluster, name: str) -> dict:
    """The database's size and each table's, in bytes, for the results."""
    with cluster.connect(name) as conn:
        tables = dict(conn.execute(
            "select relname, pg_total_relation_size(oid) from pg_class"
            " where relkind = 'r' and relnamespace = 'public'::regnamespace order by relname"
        ).fetchall())
        total = conn.execute("select pg_database_size(current_database())").fetchone()[0]
    return {"name": name, "bytes": total, "tables": tables}
