"""The clock: due schedules dispatched by two clock processes at once, each run exactly once.

Each clock is its own process with its own pool, as `remora-control clock` is, so that the two
really run side by side (threads would take turns under the GIL); the launcher is instant, so
what is measured is the control plane's own claiming, queueing, launching and bookkeeping.
``poisoned.py`` runs the same rounds with some schedules that raise.
"""

from __future__ import annotations

import functools
import multiprocessing
import queue
import threading
import time

from bench.context import Bench
from bench.measure import Figure, Goal, Sample, rounds, values
from control import clock, db, settings, worker
from tests.controlplane import RecordingLauncher, connect, due_schedules

ORDER = 60
TITLE = "control plane: due schedules, 2 clocks"
CLOCKS = 2
LIMIT_S = 10.0
TIMEOUT_BASE = 60  # seconds a round may take, plus one per TIMEOUT_PER schedules
TIMEOUT_PER = 100


def run(bench: Bench) -> list[Figure]:
    return [measure(bench, row="clock", step="launch_due", poisoned=0)]


def measure(bench: Bench, *, row: str, step: str, poisoned: int) -> Figure:
    """Rounds of ``bench.settings.schedules`` due schedules, ``poisoned`` of them raising, each round a
    ``clock.<step>`` by CLOCKS clock processes at once; the figure of row ``row``."""
    count = bench.settings.schedules
    with bench.control_database() as url:
        variant = f"{CLOCKS} clocks"
        samples = rounds({variant: functools.partial(_round, url, count, poisoned=poisoned, step=step)},
                         repeats=bench.settings.repeats, log=lambda m: bench.log(f"{row}: {m}"))[variant]
    failures = [f"round {number}: {s['duplicates']:.0f} duplicate runs, {s['missed']:.0f} schedules not dispatched"
                + (f", {s['unrecorded']:.0f} poisoned schedules not stopped and shown" if poisoned else "")
                for number, s in enumerate(samples, 1) if s["duplicates"] or s["missed"] or s["unrecorded"]]
    shares = ", ".join("/".join(f"{sample[f'clock {n}']:.0f}" for n in range(1, CLOCKS + 1)) for sample in samples)
    rates = ", ".join(f"{count / sample['s']:.0f}" for sample in samples)
    what = (f"{count:,} due schedules, {poisoned:,} of them raising, {CLOCKS} clock processes, instant launcher: "
            "time of a whole pass" if poisoned else
            f"{count:,} due schedules, {CLOCKS} clock processes, instant launcher: time until all are dispatched")
    how = ("`clock.tick` (queue, launch, sweep, incidents, webhooks); each poisoned resource gets a failed run and "
           "an incident, and its schedule stops" if poisoned else
           "`clock.launch_due` (queue the due schedules, launch the queue)")
    return Figure(
        row=row, name=what, unit="s", candidate=values(samples, "s"),
        goal=Goal(f"all dispatched in ≤ {LIMIT_S:g} s, 0 duplicates", at_most=LIMIT_S, on="max"),
        failures=failures,
        notes=f"duplicates {sum(values(samples, 'duplicates')):.0f}, not dispatched "
              f"{sum(values(samples, 'missed')):.0f}; runs per clock {shares}; runs/s {rates}; each clock is {how} "
              "in its own process and pool; the cluster runs with fsync off, like every test server",
    )


POISON = "36 8 30 11 * 0 2026"  # seven fields: croniter takes it, and raises on it in the clock


def _round(url: str, count: int, *, poisoned: int = 0, step: str = "launch_due") -> Sample:
    """``count`` schedules due now (``poisoned`` of them raising), dispatched by CLOCKS processes started
    together, each doing ``clock.<step>``; what they did."""
    with connect(url) as conn:
        conn.execute("truncate runs, resources, webhook_deliveries cascade")
    due_schedules(url, count)
    with connect(url) as conn:  # as a legacy value in their rows: provisioning refuses them now
        conn.execute("update resources set schedule = %s where id in (select id from resources order by random()"
                     " limit %s)", (POISON, poisoned))
    context = multiprocessing.get_context("spawn")  # a fresh interpreter, as a clock process is
    start, results = context.Barrier(CLOCKS + 1), context.Queue()
    clocks = [context.Process(target=_clock, args=(url, step, start, results), daemon=True) for _ in range(CLOCKS)]
    for process in clocks:
        process.start()
    try:
        start.wait(timeout=TIMEOUT_BASE)  # every clock has its pool open
        reports = [results.get(timeout=TIMEOUT_BASE + count / TIMEOUT_PER) for _ in clocks]
    except (queue.Empty, threading.BrokenBarrierError) as e:
        codes = [process.exitcode for process in clocks]
        raise RuntimeError(f"a clock process gave no result in time (exit codes {codes})") from e
    finally:
        for process in clocks:
            process.join(timeout=TIMEOUT_BASE)
            if process.is_alive():
                process.kill()
    return {"s": max(r["finished"] for r in reports) - min(r["started"] for r in reports),
            **_outcome(url, count, poisoned, reports),
            **{f"clock {n}": r["launched"] for n, r in enumerate(reports, 1)}}


def _outcome(url: str, count: int, poisoned: int, reports: list[dict]) -> Sample:
    """Duplicates (runs beyond one per schedule, launches beyond one per run), healthy schedules left out, and
    poisoned ones not stopped with a failed run their owner sees."""
    with connect(url) as conn:
        found = conn.execute(
            "select count(*) as runs, count(distinct resource_id) as resources,"
            " count(distinct resource_id) filter (where state = 'launched') as launched,"
            " count(distinct resource_id) filter (where state = 'failed') as failed from runs").fetchone()
        stopped = conn.execute("select count(*) as n from resources where schedule = %s and next_run_at is null"
                               " and alert_open", (POISON,)).fetchone()["n"]
    launches = [run_id for report in reports for run_id in report["run_ids"]]
    duplicates = found["runs"] - found["resources"] + len(launches) - len(set(launches))
    return {"duplicates": duplicates, "missed": count - poisoned - found["launched"],
            "unrecorded": poisoned - min(found["failed"], stopped)}


def _clock(url: str, step: str, start, results) -> None:
    """One clock process: open its pool, wait for the others, then one ``clock.<step>`` pass."""
    config = settings.from_env({"REMORA_CONTROL_URL": "https://control.bench.invalid"})
    launcher = RecordingLauncher()
    with db.open_pool(url, max_size=worker.THREADS + 1) as pool:
        pool.wait()
        start.wait()
        started = time.monotonic()  # the system-wide clock: comparable between the processes
        getattr(clock, step)(pool, launcher, config)
        finished = time.monotonic()
    results.put({"launched": len(launcher.specs), "started": started, "finished": finished,
                 "run_ids": [spec.run_id for spec in launcher.specs]})
