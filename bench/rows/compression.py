"""The runner's archive compression against pg_dump's default, on the text-heavy part of the data."""

from __future__ import annotations

import functools

from bench import data
from bench.commands import timed
from bench.context import Bench
from bench.measure import Figure, Goal, Sample, ratios, rounds, values

ORDER = 50
TITLE = "archive compression"
# the random bytea is left out: no compression level changes what incompressible bytes become
TEXT_ONLY = "--exclude-table-data=blobs"


def run(bench: Bench) -> list[Figure]:
    database = bench.database()
    variants = {
        "default": functools.partial(_dump, bench, database, []),
        "runner": functools.partial(_dump, bench, database, [f"--compress={bench.compression}"]),
    }
    samples = rounds(variants, repeats=bench.settings.repeats, log=lambda m: bench.log(f"compression: {m}"))
    seconds, default_seconds = values(samples["runner"], "s"), values(samples["default"], "s")
    size, default_size = values(samples["runner"], "MB"), values(samples["default"], "MB")
    text = ", ".join(data.TEXT_TABLES)
    return [
        Figure(
            row="compression", name=f"dump speed at the runner's `--compress={bench.compression}` (tables {text})",
            unit="s", candidate=seconds, baseline_name="`pg_dump -Fc` default (gzip 6)", baseline=default_seconds,
            ratio_name="pg_dump default time / runner's time (× faster)", ratios=ratios(default_seconds, seconds),
            goal=Goal("≥ 2× faster", at_least=2.0),
        ),
        Figure(
            row="compression", name=f"archive size at the runner's `--compress={bench.compression}`", unit="MB",
            candidate=size, baseline_name="`pg_dump -Fc` default (gzip 6)", baseline=default_size,
            ratio_name="runner's size / pg_dump default size", ratios=ratios(size, default_size),
            goal=Goal("≤ 1.15× (at most 15% larger)", at_most=1.15),
        ),
    ]


def _dump(bench: Bench, database: str, options: list[str]) -> Sample:
    """pg_dump -Fc with ``options`` to a file: its time, and the archive's size in MB."""
    output = bench.work / "compression.dump"
    argv = [str(bench.pg_dump), "--format=custom", "--no-password", *options, TEXT_ONLY]
    try:
        with open(output, "wb") as sink:
            sample = timed(argv, env=bench.libpq_env(database), timeout=bench.timeout(bench.main_size), stdout=sink)
        return {**sample, "MB": output.stat().st_size / 1e6}
    finally:
        output.unlink(missing_ok=True)
