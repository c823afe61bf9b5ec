"""The results: ``latest.json`` (everything), ``latest.md`` (for people), and the section of docs/benchmarks.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

DOC_BEGIN = "<!-- bench:begin (written by `make bench`; edit bench/report.py instead) -->"
DOC_END = "<!-- bench:end -->"


def write(results: dict, folder: Path) -> list[Path]:
    """Write ``latest.json`` and ``latest.md`` into ``folder``; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    as_json, as_markdown = folder / "latest.json", folder / "latest.md"
    as_json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    as_markdown.write_text(markdown(results))
    return [as_json, as_markdown]


def read(folder: Path) -> dict | None:
    """The results ``latest.json`` in ``folder`` holds, or None if there is none."""
    path = folder / "latest.json"
    try:
        results = json.loads(path.read_text())
        _runs(results)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not results this benchmark wrote ({type(e).__name__}: {e}); "
                         "move it away to start afresh") from e
    return results


def merge(earlier: dict, latest: dict, *, order: list[str]) -> dict:
    """``latest``'s rows, and ``earlier``'s for the rows ``latest`` did not run, in ``order``.

    Each run keeps its own command, time, commit and machine, and names the rows whose figures
    are still its own; rows that no longer exist are dropped.
    """
    [run] = latest["runs"]
    again = set(run["rows"])
    runs = []
    for older in _runs(earlier):
        left = [row for row in older["rows"] if row not in again and row in order]
        if left:
            runs.append({**older, "rows": left})

    def kept(key: str) -> list[dict]:
        items = [item for item in earlier[key] if item["row"] not in again and item["row"] in order] + latest[key]
        return sorted(items, key=lambda item: order.index(item["row"]))  # stable: a row's figures keep their order

    return {"runs": [*runs, run], "figures": kept("figures"), "errors": kept("errors")}


def _runs(results: dict) -> list[dict]:
    """The runs the results come from, oldest first."""
    if "runs" in results:
        return results["runs"]
    # written before rows could be measured in separate runs: one run, described at the top level
    settings = {key: value for key, value in results["settings"].items() if key != "rows"}
    return [{"command": results["command"], "started_at": results["started_at"],
             "duration_s": results["duration_s"], "settings": settings, "rows": results["settings"]["rows"],
             "machine": results["machine"], "databases": results["databases"]}]


def markdown(results: dict) -> str:
    """The whole report."""
    runs = _runs(results)
    lines = ["# Benchmark results", "", *_heading(results), "", "## Figures", "", *figures_table(results)]
    lines += ["", "## Machine", "", "| | |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in runs[-1]["machine"].items()]
    lines += _other_machines(runs)
    lines += ["", "## Databases", "", "| size asked | database | size | tables |", "| --- | --- | --- | --- |"]
    databases = {db["name"]: db for run in runs for db in run["databases"]}  # the newest description of each
    for db in sorted(databases.values(), key=lambda db: db["size_gb"]):
        tables = ", ".join(f"{name} {size / 1e6:.0f} MB" for name, size in db["tables"].items() if size)
        lines.append(f"| {db['size_gb']:g} GB | {db['name']} | {db['bytes'] / 1e6:.0f} MB | {tables} |")
    return "\n".join(lines + _leftovers(results)) + "\n"


def summary(results: dict) -> str:
    """The benchmarks page's section: how the figures were made, and the figures."""
    machine = _runs(results)[-1]["machine"]
    where = f"{machine['CPU']}, {machine['cores']} cores, {machine['memory']}; PostgreSQL {machine['PostgreSQL server']}"
    lines = [*_heading(results), "", f"Machine: {where} (details in `bench/results/latest.md`).", ""]
    return "\n".join(lines + figures_table(results) + _leftovers(results))


def _heading(results: dict) -> list[str]:
    lines = []
    for run in _runs(results):
        sizes = sorted({db["size_gb"] for db in run["databases"]})
        databases = f"; databases of {', '.join(f'{s:g}' for s in sizes)} GB" if sizes else ""
        lines.append(
            f"- {', '.join(f'`{row}`' for row in run['rows'])}: `{run['command']}` at commit "
            f"{run['machine']['commit']}, {run['started_at']}, in {_duration(run['duration_s'])}; "
            f"{run['settings']['repeats']} round(s){databases}."
        )
    return [
        *lines,
        "",
        "Each figure is the median (min–max) of its run's alternating rounds (baseline, candidates, baseline, "
        "…); a ratio is taken round by round against the baseline run in the same round. Every row runs at "
        "the first database size, the peak-RSS row at each size.",
    ]


def _other_machines(runs: list[dict]) -> list[str]:
    """What was different where earlier runs measured their rows (the commit aside)."""
    newest, lines = runs[-1]["machine"], []
    for run in runs[:-1]:
        different = {name: value for name, value in run["machine"].items()
                     if name != "commit" and newest.get(name) != value}
        if different:
            rows = ", ".join(f"`{row}`" for row in run["rows"])
            lines.append(f"- {rows} measured with " + "; ".join(f"{k}: {v}" for k, v in different.items()))
    return ["", "Earlier runs' machines, where they differ:", "", *lines] if lines else []


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def figures_table(results: dict) -> list[str]:
    lines = [
        "| figure | measured | baseline | baseline measured | ratio | goal | result | notes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in results["figures"]:
        measured = _spread(f, "candidate")
        ratio = f"{_spread(f, 'ratios', unit='×')} {f['ratio_name']}" if f["ratios"] else "—"
        result = "**pass**" if f["passed"] else f"**miss**: {f['verdict']}"
        cells = [f["name"], measured, f["baseline_name"], _spread(f, "baseline"), ratio, f["goal"], result, f["notes"]]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return lines


def _spread(figure: dict, key: str, *, unit: str | None = None) -> str:
    if not figure[key]:
        return "—"
    median, low, high = figure[f"{key}_median_min_max"]
    unit = unit or figure["unit"]
    digits = 2 if unit in ("s", "×") else 1
    return f"{median:.{digits}f} {unit} ({low:.{digits}f}–{high:.{digits}f})"


def _leftovers(results: dict) -> list[str]:
    if not results["errors"]:
        return []
    return ["", "Rows that failed (no figures):", "", *(f"- {e['row']}: {e['error']}" for e in results["errors"])]


def update_doc(doc: Path, results: dict) -> None:
    """Replace the section between the bench markers of ``doc`` with this run's summary."""
    text = doc.read_text()
    pattern = re.compile(re.escape(DOC_BEGIN) + ".*?" + re.escape(DOC_END), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"{doc.name} has no {DOC_BEGIN} … {DOC_END} section to fill")
    section = f"{DOC_BEGIN}\n{summary(results)}\n{DOC_END}"
    doc.write_text(pattern.sub(lambda _: section, text))
