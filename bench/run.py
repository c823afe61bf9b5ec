"""``make bench``: start the servers, run the rows, write bench/results/latest.{json,md}.

Knobs (flags, or the environment variables named in their help): the database sizes, the rounds
per row, which rows. Exit 0 when every row ran (a missed goal is a result, not a failure), 1 when
a row failed, 2 for bad arguments.
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
    parser.add_argument("--results", default=HERE / "results", type=Path, metavar="DIR",
                        help="where latest.json and latest.md go (default bench/results)")
    parser.add_argument("--cache", default=env.get("BENCH_CACHE", HERE / ".cache"), type=Path, metavar="DIR",
                        help="the kept PostgreSQL cluster with the generated databases (BENCH_CACHE, default bench/.cache)")
    parser.add_argument("--update-readme", action="store_true", help="also rewrite the README's results section")
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
                        cache=args.cache.resolve())
    command = f"python -m bench --sizes {','.join(f'{s:g}' for s in settings.sizes)} --repeats {settings.repeats}"
    command += f" --rows {','.join(settings.rows)}" if settings.rows else ""
    with tempfile.TemporaryDirectory(prefix="remora-bench-") as scratch:
        with started(settings.cache, Path(scratch)) as servers:
            results = execute(servers, settings, Path(scratch), command=command)
    for path in report.write(results, settings.results):
        print(f"wrote {path}", file=sys.stderr)
    if args.update_readme:
        report.update_readme(HERE.parent / "README.md", results)
    print(report.markdown(results))
    return 1 if results["errors"] else 0


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
    return {
        "command": command,
        "started_at": started_at.strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": round(time.monotonic() - bench.started, 1),
        "settings": {"sizes_gb": list(settings.sizes), "repeats": settings.repeats,
                     "rows": [rows.name(row) for row in selected]},
        "machine": machine.describe(pg_dump=bench.pg_dump, server_version=server_version),
        "databases": [{"size_gb": size, **data.describe(servers.cluster, name)}
                      for size, name in sorted(bench.databases.items())],
        "figures": [figure.to_json() for figure in figures],
        "not_measured": rows.PENDING,
        "errors": errors,
    }
