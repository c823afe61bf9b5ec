"""Restore wall time: ``remora-backup restore`` against pg_restore of the same archive, unencrypted."""

from __future__ import annotations

import contextlib
import functools
import secrets
import statistics
from collections.abc import Iterator
from pathlib import Path

from bench.commands import runner, timed
from bench.context import Bench
from bench.measure import Figure, Goal, Sample, ratios, rounds, values
from runner import postgres

ORDER = 40
TITLE = "restore wall time"


def run(bench: Bench) -> list[Figure]:
    database = bench.database()
    archive = bench.work / "plain.dump"
    with open(archive, "wb") as sink:
        timed(bench.dump_argv(), env=bench.libpq_env(database), timeout=bench.timeout(bench.main_size), stdout=sink)
    variants = {
        "pg_restore": functools.partial(_pg_restore, bench, archive),
        "runner": functools.partial(_runner, bench),
    }
    try:
        samples = rounds(variants, repeats=bench.settings.repeats, log=lambda m: bench.log(f"restore: {m}"))
    finally:
        archive.unlink()
    floor, seconds = values(samples["pg_restore"], "s"), values(samples["runner"], "s")
    cpu = {name: statistics.median(values(series, "cpu_s")) for name, series in samples.items()}
    return [Figure(
        row="restore", name="restore wall time (`remora-backup restore`, file://, into a new database)", unit="s",
        candidate=seconds, baseline_name=f"`pg_restore` of an unencrypted local archive (`pg_dump -Fc "
        f"--compress={bench.compression}`), same options", baseline=floor, ratio_name="runner / pg_restore",
        ratios=ratios(seconds, floor), goal=Goal("≤ 1.15×", at_most=1.15),
        notes="both restore in one transaction, without owners or grants (the runner's default); CPU time (the "
              f"server's not counted): runner, gpg and pg_restore {cpu['runner']:.1f} s, pg_restore alone "
              f"{cpu['pg_restore']:.1f} s",
    )]


@contextlib.contextmanager
def _new_database(bench: Bench) -> Iterator[str]:
    """An empty database, dropped afterwards (untimed)."""
    name = "restored_" + secrets.token_hex(4)
    with bench.cluster.connect() as conn:
        conn.execute(f'create database "{name}"')
    try:
        yield name
    finally:
        with bench.cluster.connect() as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


def _pg_restore(bench: Bench, archive: Path) -> Sample:
    with _new_database(bench) as name, open(archive, "rb") as source:
        argv = postgres.restore_argv(bench.pg_restore, dbname=name, clean=False, jobs=1)
        return timed(argv, env=bench.libpq_env(name, write=True), timeout=bench.timeout(bench.main_size), stdin=source)


def _runner(bench: Bench) -> Sample:
    prepared = bench.prepared_backup
    with _new_database(bench) as name:
        env = {"REMORA_TARGET_URL": prepared.url, "REMORA_GPG_PRIVATE_KEY": bench.servers.key.private,
               "REMORA_GPG_SIGNERS": bench.servers.signer.public,
               "RESTORE_URL": bench.cluster.url(name)}
        restore = runner("restore", prepared.id, "--to", "RESTORE_URL", env=env, timeout=bench.timeout(bench.main_size))
    return {"s": restore.seconds, "cpu_s": restore.cpu_seconds}
