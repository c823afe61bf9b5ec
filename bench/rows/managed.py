"""A backup to the add-on's storage against the same backup to a byo S3 target on the same server.

The managed backup goes through the control plane (its API served from this process, over a
database of its own) for the upload's start, each part's presigned URL, the completion and the
manifest, and to the same SeaweedFS for the bytes, into a bucket with Object Lock, every object
locked a day. The byo backup writes straight to a plain bucket there with the admin's key.
"""

from __future__ import annotations

import functools

from bench.context import Bench
from bench.measure import Figure, Goal, Sample, ratios, rounds, values

ORDER = 15
TITLE = "managed backup wall time"


def run(bench: Bench) -> list[Figure]:
    database = bench.database()
    with bench.add_on_storage() as add_on:
        variants = {"byo": functools.partial(_byo, bench, database),
                    "managed": functools.partial(_managed, bench, database, add_on)}
        samples = rounds(variants, repeats=bench.settings.repeats, log=lambda m: bench.log(f"managed: {m}"))
    byo, managed = values(samples["byo"], "s"), values(samples["managed"], "s")
    return [Figure(
        row="managed", name="backup wall time, the add-on's storage", unit="s", candidate=managed,
        baseline_name="the same backup to a byo `s3://` target on the same server", baseline=byo,
        ratio_name="managed / byo", ratios=ratios(managed, byo), goal=Goal("≤ 1.10×", at_most=1.10),
        notes="one control-plane request per 16 MiB part (its presigned URL) on top of the byo path; "
              "Object Lock (COMPLIANCE, 1 day) on every managed object",
    )]


def _byo(bench: Bench, database: str) -> Sample:
    with bench.target("s3") as target_env:
        return {"s": bench.backup(database, target_env).seconds}


def _managed(bench: Bench, database: str, add_on) -> Sample:
    resource, _ = add_on.resource()
    run, token = add_on.run(resource)
    return {"s": bench.backup(database, add_on.run_env(run, token)).seconds}
