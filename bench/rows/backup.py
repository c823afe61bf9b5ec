"""Backup wall time to each target, signed, against pg_dump alone and against a naive ``pg_dump | gpg``."""

from __future__ import annotations

import functools
import statistics

from bench.commands import timed
from bench.context import Bench
from bench.measure import Figure, Goal, Sample, ratios, rounds, values

ORDER = 10
TITLE = "backup wall time"
TARGETS = ("file", "s3", "sftp")


def run(bench: Bench) -> list[Figure]:
    database = bench.database()
    # known from a first, untimed runner backup, which also reads the whole database once, so that
    # the first round starts as warm as the others
    compression = bench.compression
    variants = {
        "pg_dump": functools.partial(_pg_dump, bench, database),
        "naive": functools.partial(_naive, bench, database),
        **{scheme: functools.partial(_runner, bench, database, scheme) for scheme in TARGETS},
    }
    samples = rounds(variants, repeats=bench.settings.repeats, log=lambda m: bench.log(f"backup: {m}"))
    floor, naive = values(samples["pg_dump"], "s"), values(samples["naive"], "s")
    cpu = {name: statistics.median(values(series, "cpu_s")) for name, series in samples.items()}
    figures = []
    for scheme in TARGETS:
        seconds = values(samples[scheme], "s")
        rss = statistics.median(values(samples[scheme], "peak_rss_mib"))
        notes = (f"the runner signs as it encrypts (one gpg pass); its peak RSS {rss:.1f} MiB; "
                 f"CPU time (the server's not counted): runner, pg_dump and gpg "
                 f"{cpu[scheme]:.1f} s, pg_dump alone {cpu['pg_dump']:.1f} s, naive pipeline {cpu['naive']:.1f} s")
        figures.append(Figure(
            row="backup", name=f"backup wall time, {scheme}://", unit="s", candidate=seconds,
            baseline_name=f"`pg_dump -Fc --compress={compression}` > /dev/null (the runner's compression)",
            baseline=floor, ratio_name="runner / pg_dump", ratios=ratios(seconds, floor),
            goal=Goal("≤ 1.10×", at_most=1.10), notes=notes,
        ))
        figures.append(Figure(
            row="backup", name=f"backup wall time, {scheme}://", unit="s", candidate=seconds,
            baseline_name="naive `pg_dump -Fc | gpg -e -r KEY > file` (both tools' defaults)",
            baseline=naive, ratio_name="runner / naive", ratios=ratios(seconds, naive),
            goal=Goal("< 1× (faster)", at_most=1.0), notes=notes,
        ))
    return figures


def _pg_dump(bench: Bench, database: str) -> Sample:
    return timed(bench.dump_argv(), env=bench.libpq_env(database), timeout=bench.timeout(bench.main_size))


def _naive(bench: Bench, database: str) -> Sample:
    """What a cron job does: pg_dump's and gpg's defaults (gpg compresses again), to a local file."""
    key = bench.servers.key
    output = bench.work / "naive.dump.gpg"
    gpg = ["gpg", "--homedir", str(key.home), "--batch", "--encrypt", "--recipient", key.fingerprint]
    try:
        with open(output, "wb") as sink:
            return timed([str(bench.pg_dump), "-Fc"], gpg, env=bench.libpq_env(database),
                         timeout=bench.timeout(bench.main_size), stdout=sink)
    finally:
        output.unlink(missing_ok=True)


def _runner(bench: Bench, database: str, scheme: str) -> Sample:
    with bench.target(scheme) as target_env:
        backup = bench.backup(database, target_env)
    return {"s": backup.seconds, "cpu_s": backup.cpu_seconds, "peak_rss_mib": backup.peak_rss_mib}
