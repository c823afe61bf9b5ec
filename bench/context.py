"""What every row is given: the servers, the settings, a scratch folder, databases and targets."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import secrets
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bench import data
from bench.commands import RunnerRun, runner, timed
from bench.servers import Servers
from runner import postgres
from tests.helpers import base_env, libpq_env
from tests.servers.seaweed import s3_env
from tests.servers.sshd import sftp_env

TIMEOUT_BASE = 300  # seconds any command may take, plus TIMEOUT_PER_GB for each GB of its database
TIMEOUT_PER_GB = 900


@dataclasses.dataclass(frozen=True)
class Settings:
    sizes: tuple[float, ...]  # GB; every row runs at the first, the memory row at each
    repeats: int  # alternating rounds per row
    rows: tuple[str, ...]  # which rows, by module name; empty: all
    results: Path
    cache: Path


class Bench:
    """The rows' way to the servers: databases on demand, fresh targets, and shared preparations."""

    def __init__(self, servers: Servers, settings: Settings, work: Path):
        self.servers, self.settings, self.work = servers, settings, work
        self.cluster = servers.cluster
        self.started = time.monotonic()
        self.databases: dict[float, str] = {}  # size in GB: name, as generated or found
        with servers.cluster.connect() as conn:
            server_major = int(conn.execute("show server_version_num").fetchone()[0]) // 10000
        self.pg_dump, major = postgres.find_tool("pg_dump", server_major)
        self.pg_restore, _ = postgres.find_tool("pg_restore", server_major)
        self.compression = postgres.archive_compression(major)  # the runner's own choice

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

    def libpq_env(self, database: str) -> dict[str, str]:
        """The environment for a PostgreSQL tool connecting to ``database`` (no password in argv)."""
        return {**base_env(), **libpq_env(self.cluster.url(database)), "PGDATABASE": database}

    def dump_argv(self, *, compression: str | None = None) -> list[str]:
        """pg_dump writing a custom archive to stdout, at the runner's compression unless told."""
        return postgres.dump_argv(self.pg_dump, compression=compression or self.compression)

    def warm(self, database: str) -> None:
        """Read the whole database once, untimed, so that the first timed run starts as warm as the rest."""
        timed(self.dump_argv(compression="0"), env=self.libpq_env(database), timeout=self.timeout(self.main_size))

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

    @functools.cached_property
    def _bucket(self) -> str:
        return self.servers.s3.create_bucket()

    def _empty_bucket(self) -> None:
        client = self.servers.s3.client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self._bucket):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=self._bucket, Key=item["Key"])

    def backup(self, database: str, target_env: dict[str, str]) -> RunnerRun:
        """``remora-backup backup`` of ``database`` into the target ``target_env`` names."""
        env = {**target_env, "REMORA_DATABASE_URL": self.cluster.url(database),
               "REMORA_GPG_PUBLIC_KEYS": self.servers.key.public}
        return runner("backup", env=env, timeout=self.timeout(max(self.settings.sizes)))

    @functools.cached_property
    def prepared_backup(self) -> tuple[str, str, Path]:
        """A runner backup of the main database kept in a folder: (target URL, id, ciphertext file)."""
        folder = self.work / "prepared"
        folder.mkdir()
        run = self.backup(self.database(), {"REMORA_TARGET_URL": f"file://{folder}"})
        [ciphertext] = folder.rglob(f"{run.stdout}.dump.gpg")
        return f"file://{folder}", run.stdout, ciphertext
