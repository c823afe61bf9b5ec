"""What every row is given: the servers, the settings, a scratch folder, databases and targets."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import secrets
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bench import data
from bench.commands import RunnerRun, runner
from bench.servers import Servers
from control import db
from runner import postgres
from tests.controlplane import RecordingLauncher
from tests.helpers import PG_BIN, base_env, libpq_env
from tests.managed import ManagedPlane, serving_control_plane
from tests.servers.gpg import signing_env
from tests.servers.seaweed import managed_storage, s3_env
from tests.servers.sshd import sftp_env

READER = "bench_reader"  # what every backup and dump connects as: a credential that can read, not write
_READER_SQL = f"""
do $$ begin
    if not exists (select from pg_roles where rolname = '{READER}') then
        create role {READER} login in role pg_read_all_data;
    end if;
end $$
"""
CONTROL_DATABASE = "bench_control"  # a name data.prune drops should a killed run leave it behind
TIMEOUT_BASE = 300  # seconds any command may take, plus TIMEOUT_PER_GB for each GB of its database
TIMEOUT_PER_GB = 900


@dataclasses.dataclass(frozen=True)
class Settings:
    sizes: tuple[float, ...]  # GB; every row runs at the first, the memory row at each
    repeats: int  # alternating rounds per row
    rows: tuple[str, ...]  # which rows, by module name; empty: all
    results: Path
    cache: Path
    schedules: int = 10_000  # due schedules the clock row dispatches
    load_seconds: float = 10.0  # how long the trigger row fires requests


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A runner backup of the main database, kept in a folder for the rows that read one."""

    url: str  # the file:// target holding it
    id: str
    ciphertext: Path
    manifest: dict


class Bench:
    """The rows' way to the servers: databases on demand, fresh targets, and shared preparations."""

    pg_dump = PG_BIN / "pg_dump"  # what the runner finds too: the server's major version
    pg_restore = PG_BIN / "pg_restore"

    def __init__(self, servers: Servers, settings: Settings, work: Path):
        self.servers, self.settings, self.work = servers, settings, work
        self.cluster = servers.cluster
        self.started = time.monotonic()
        self.databases: dict[float, str] = {}  # size in GB: name, as generated or found
        self._reader_password = "rpw-" + secrets.token_hex(12)
        with servers.cluster.connect() as conn:
            conn.execute(_READER_SQL)
            conn.execute(f"alter role {READER} password '{self._reader_password}'")

    @property
    def main_size(self) -> float:
        return self.settings.sizes[0]

    def log(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f} s] {message}", file=sys.stderr, flush=True)

    def timeout(self, size_gb: float) -> float:
        return TIMEOUT_BASE + TIMEOUT_PER_GB * size_gb

    def database(self, size_gb: float | None = None) -> str:
        """The database of ``size_gb`` (the main size by default), generated the first time."""
        size_gb = self.main_size if size_gb is None else size_gb
        if size_gb not in self.databases:
            self.databases[size_gb] = data.ensure(self.cluster, size_gb, log=self.log)
        return self.databases[size_gb]

    def reader_url(self, database: str) -> str:
        """The read-only credential's URL: what a backup is given."""
        return self.cluster.url(database, user=READER, password=self._reader_password)

    def libpq_env(self, database: str, *, write: bool = False) -> dict[str, str]:
        """The environment for a tool connecting to ``database``: as the reader unless ``write``."""
        url = self.cluster.url(database) if write else self.reader_url(database)
        return {**base_env(), **libpq_env(url), "PGDATABASE": database}

    @functools.cached_property
    def compression(self) -> str:
        """The runner's own archive compression, as its manifest records it."""
        return self.prepared_backup.manifest["compression"]

    def dump_argv(self, *, compression: str | None = None) -> list[str]:
        """pg_dump writing a custom archive to stdout, at the runner's compression unless told."""
        return postgres.dump_argv(self.pg_dump, compression=compression or self.compression)

    @contextlib.contextmanager
    def target(self, scheme: str) -> Iterator[dict[str, str]]:
        """The runner's variables for an empty target of ``scheme``; emptied again afterwards."""
        name = f"{scheme}-{secrets.token_hex(4)}"
        if scheme == "s3":
            try:
                yield s3_env(self.servers.s3, self._bucket)
            finally:
                self._empty_bucket()
            return
        folder = (self.servers.sshd.root if scheme == "sftp" else self.work) / name
        folder.mkdir()
        try:
            yield sftp_env(self.servers.sshd, folder) if scheme == "sftp" else {"REMORA_TARGET_URL": f"file://{folder}"}
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    @contextlib.contextmanager
    def control_database(self) -> Iterator[str]:
        """The URL of a new control-plane database with every migration applied; dropped afterwards."""
        drop = f'drop database if exists "{CONTROL_DATABASE}" with (force)'
        with self.cluster.connect() as conn:
            conn.execute(drop)
            conn.execute(f'create database "{CONTROL_DATABASE}"')
        try:
            url = self.cluster.url(CONTROL_DATABASE)
            db.migrate(url)
            yield url
        finally:
            with self.cluster.connect() as conn:
                conn.execute(drop)

    @contextlib.contextmanager
    def add_on_storage(self) -> Iterator[ManagedPlane]:
        """The control plane with the add-on's storage on the bench's SeaweedFS, serving its API from a thread."""
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line for each part's presigned URL
        with self.control_database() as url:
            with serving_control_plane(url, RecordingLauncher(), managed_storage(self.servers.s3)) as plane:
                yield plane

    @functools.cached_property
    def _bucket(self) -> str:
        return self.servers.s3.create_bucket()

    def _empty_bucket(self) -> None:
        client = self.servers.s3.client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self._bucket):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=self._bucket, Key=item["Key"])

    def backup(self, database: str, target_env: dict[str, str]) -> RunnerRun:
        """``remora-backup backup`` of ``database`` into the target ``target_env`` names, signed."""
        env = {**target_env, "REMORA_DATABASE_URL": self.reader_url(database),
               "REMORA_GPG_PUBLIC_KEYS": self.servers.key.public, **signing_env(self.servers.signer)}
        return runner("backup", env=env, timeout=self.timeout(max(self.settings.sizes)))

    @functools.cached_property
    def prepared_backup(self) -> Prepared:
        """A runner backup of the main database, made the first time a row asks for it."""
        self.log("preparing a backup of the main database with the runner (untimed)")
        folder = self.work / "prepared"
        folder.mkdir()
        backup_id = self.backup(self.database(), {"REMORA_TARGET_URL": f"file://{folder}"}).stdout
        [ciphertext] = folder.rglob(f"{backup_id}.dump.gpg")
        [manifest] = folder.rglob(f"{backup_id}.manifest.json")
        return Prepared(f"file://{folder}", backup_id, ciphertext, json.loads(manifest.read_text()))
