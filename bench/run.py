"""``make bench``: start the servers, run the rows, write bench/results/latest.{json,md}.

Knobs (flags, or the environment variables named in their help): the database sizes, the rounds
per row, which rows, the control plane's load. Some rows only: their results replace those rows'
in an existing latest.json, the others' are kept. Exit 0 when every row ran (a missed goal is a
result, not a failure), 1 when a row failed, 2 for bad arguments or unreadable earlier results.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench import data, machine, report, rows
from bench.context import Bench, Settings
from bench.servers import Servers, started

HERE = Path(__file__).resolve().parent
DEFAULT_SIZES = "1,4"
DEFAULT_REPEATS = "3"
DEFAULT_SCHEDULES = "10000"
DEFAULT_LOAD_SECONDS = "10"


def parser() -> argparse.ArgumentParser:
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=env.get("BENCH_SIZES", DEFAULT_SIZES), type=_sizes, metavar="GB,GB",
                        help="database sizes in GB (10^9 bytes); every row runs at the first, the peak-RSS row "
                             f"at each (BENCH_SIZES, default {DEFAULT_SIZES})")
    parser.add_argument("--repeats", default=env.get("BENCH_REPEATS", DEFAULT_REPEATS), type=_rounds, metavar="N",
                        help=f"alternating rounds per row (BENCH_REPEATS, default {DEFAULT_REPEATS})")
    parser.add_argument("--rows", default=env.get("BENCH_ROWS", ""), type=_names, metavar="NAME,NAME",
                        help="only these rows (BENCH_ROWS, default all): "
                             + ", ".join(rows.name(row) for row in rows.all_rows()))
    parser.add_argument("--schedules", default=env.get("BENCH_SCHEDULES", DEFAULT_SCHEDULES), type=_schedules,
                        metavar="N", help=f"due schedules the clock row dispatches (BENCH_SCHEDULES, default "
                                          f"{DEFAULT_SCHEDULES})")
    parser.add_argument("--load-seconds", default=env.get("BENCH_LOAD_SECONDS", DEFAULT_LOAD_SECONDS),
                        type=_load_seconds, metavar="S", help="how long the trigger row fires requests "
                                                              f"(BENCH_LOAD_SECONDS, default {DEFAULT_LOAD_SECONDS})")
    parser.add_argument("--results", default=HERE / "results", type=Path, metavar="DIR",
                        help="where latest.json and latest.md go (default bench/results)")
    parser.add_argument("--cache", default=env.get("BENCH_CACHE", HERE / ".cache"), type=Path, metavar="DIR",
                        help="the kept PostgreSQL cluster with the generated databases (BENCH_CACHE, default bench/.cache)")
    parser.add_argument("--update-docs", action="store_true", help="also rewrite the results section of docs/benchmarks.md")
    return parser


def _sizes(text: str) -> tuple[float, ...]:
    try:
        sizes = tuple(float(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or not all(0 < size <= 100 for size in sizes):
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of sizes in GB, like 1,4")
    return sizes


def _rounds(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 50:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of rounds from 1 to 50")
    return int(text)


def _schedules(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1_000_000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of schedules from 1 to 1000000")
    return int(text)


def _load_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 1 <= seconds <= 600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 1 to 600")
    return seconds


def _names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    try:
        rows.selected(names)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e
    return names


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = Settings(sizes=args.sizes, repeats=args.repeats, rows=args.rows, results=args.results,
                        cache=args.cache.resolve(), schedules=args.schedules, load_seconds=args.load_seconds)
    try:  # read now: a file that cannot be merged into should not cost a whole run first
        earlier = report.read(settings.results) if settings.rows else None
    except ValueError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="remora-bench-") as scratch:
        with started(settings.cache, Path(scratch)) as servers:
            results = execute(servers, settings, Path(scratch), command=_command(settings))
    failed = bool(results["errors"])
    if earlier:
        results = report.merge(earlier, results, order=[rows.name(row) for row in rows.all_rows()])
    for path in report.write(results, settings.results):
        print(f"wrote {path}", file=sys.stderr)
    if args.update_docs:
        report.update_doc(HERE.parent / "docs" / "benchmarks.md", results)
    print(report.markdown(results))
    return 1 if failed else 0


def _command(settings: Settings) -> str:
    """The command that makes the same run, with the knobs that differ from their defaults."""
    command = f"python -m bench --sizes {','.join(f'{s:g}' for s in settings.sizes)} --repeats {settings.repeats}"
    command += f" --rows {','.join(settings.rows)}" if settings.rows else ""
    if settings.schedules != int(DEFAULT_SCHEDULES):
        command += f" --schedules {settings.schedules}"
    if settings.load_seconds != float(DEFAULT_LOAD_SECONDS):
        command += f" --load-seconds {settings.load_seconds:g}"
    return command


def execute(servers: Servers, settings: Settings, work: Path, *, command: str) -> dict:
    """Run the selected rows; a row that fails is reported and the others still run."""
    started_at = datetime.datetime.now(datetime.timezone.utc)
    bench = Bench(servers, settings, work)
    data.prune(servers.cluster)
    figures, errors, selected = [], [], rows.selected(settings.rows)
    for row in selected:
        bench.log(f"row {rows.name(row)}: {row.TITLE}")
        try:
            figures += row.run(bench)
        except Exception as e:  # noqa: BLE001 - a failed row must not cost the others' figures
            traceback.print_exc()
            errors.append({"row": rows.name(row), "error": f"{type(e).__name__}: {e}"})
    with servers.cluster.connect() as conn:
        server_version = conn.execute("show server_version").fetchone()[0]
    run = {
        "command": command,
        "started_at": started_at.strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": round(time.monotonic() - bench.started, 1),
        "settings": {"sizes_gb": list(settings.sizes), "repeats": settings.repeats,
                     "schedules": settings.schedules, "load_seconds": settings.load_seconds},
        "rows": [rows.name(row) for row in selected],
        "machine": machine.describe(pg_dump=bench.pg_dump, server_version=server_version),
        "databases": [{"size_gb": size, **data.describe(servers.cluster, name)}
                      for size, name in sorted(bench.databases.items())],
    }
    return {"runs": [run], "figures": [figure.to_json() for figure in figures], "errors": errors}
