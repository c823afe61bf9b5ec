"""Peak memory of the runner's own process, at each database size: flat, and under a limit."""

from __future__ import annotations

import functools

from bench.context import Bench
from bench.measure import Figure, Goal, Sample, ratios, rounds, values

ORDER = 20
TITLE = "peak RSS of the runner"
TARGET = "s3"  # the target that holds the most in memory: (concurrency + 1) parts
LIMIT_MIB = 150e6 / 2**20  # the goal's 150 MB


def run(bench: Bench) -> list[Figure]:
    sizes = bench.settings.sizes
    databases = {size: bench.database(size) for size in sizes}
    variants = {f"{size:g} GB": functools.partial(_backup, bench, databases[size]) for size in sizes}
    samples = rounds(variants, repeats=bench.settings.repeats, log=lambda m: bench.log(f"memory: {m}"))
    peaks = {size: values(samples[f"{size:g} GB"], "peak_rss_mib") for size in sizes}
    every = [peak for series in peaks.values() for peak in series]
    figures = [Figure(
        row="memory", name=f"peak RSS of the runner, {TARGET}://, every size", unit="MiB", candidate=every,
        goal=Goal(f"≤ 150 MB ({LIMIT_MIB:.0f} MiB)", at_most=LIMIT_MIB, on="max"),
        notes="VmHWM of the runner's process as it logs it (peak_rss_mib); pg_dump and gpg not included",
    )]
    smallest = sizes[0]
    for size in sizes[1:]:
        figures.append(Figure(
            row="memory", name=f"peak RSS of the runner, {TARGET}://, {size:g} GB", unit="MiB",
            candidate=peaks[size], baseline_name=f"the same at {smallest:g} GB", baseline=peaks[smallest],
            ratio_name=f"{size:g} GB / {smallest:g} GB", ratios=ratios(peaks[size], peaks[smallest]),
            goal=Goal("within 10%", at_least=0.90, at_most=1.10),
        ))
    return figures


def _backup(bench: Bench, database: str) -> Sample:
    with bench.target(TARGET) as target_env:
        backup = bench.backup(database, target_env)
    return {"peak_rss_mib": backup.peak_rss_mib, "s": backup.seconds}
