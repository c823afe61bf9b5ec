"""The results: ``latest.json`` (everything), ``latest.md`` (for people), and the README's section."""

from __future__ import annotations

import json
import re
from pathlib import Path

README_BEGIN = "<!-- bench:begin (written by `make bench`; edit bench/report.py instead) -->"
README_END = "<!-- bench:end -->"


def write(results: dict, folder: Path) -> list[Path]:
    """Write ``latest.json`` and ``latest.md`` into ``folder``; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    as_json, as_markdown = folder / "latest.json", folder / "latest.md"
    as_json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    as_markdown.write_text(markdown(results))
    return [as_json, as_markdown]


def markdown(results: dict) -> str:
    """The whole report."""
    lines = ["# Benchmark results", "", *_heading(results), "", "## Figures", "", *figures_table(results)]
    lines += ["", "## Machine", "", "| | |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in results["machine"].items()]
    lines += ["", "## Databases", "", "| size asked | database | size | tables |", "| --- | --- | --- | --- |"]
    for db in results["databases"]:
        tables = ", ".join(f"{name} {size / 1e6:.0f} MB" for name, size in db["tables"].items() if size)
        lines.append(f"| {db['size_gb']:g} GB | {db['name']} | {db['bytes'] / 1e6:.0f} MB | {tables} |")
    return "\n".join(lines + _leftovers(results)) + "\n"


def summary(results: dict) -> str:
    """The README's section: how the figures were made, and the figures."""
    machine = results["machine"]
    where = f"{machine['CPU']}, {machine['cores']} cores, {machine['memory']}; PostgreSQL {machine['PostgreSQL server']}"
    lines = [*_heading(results), "", f"Machine: {where} (details in `bench/results/latest.md`).", ""]
    return "\n".join(lines + figures_table(results) + _leftovers(results))


def _heading(results: dict) -> list[str]:
    settings = results["settings"]
    return [
        f"`{results['command']}` at commit {results['machine']['commit']}, {results['started_at']}, "
        f"in {_duration(results['duration_s'])}. Databases of {', '.join(f'{s:g}' for s in settings['sizes_gb'])} GB; "
        f"every row runs at {settings['sizes_gb'][0]:g} GB, the peak-RSS row at each size.",
        "",
        f"Each figure is the median (min–max) of {settings['repeats']} alternating round(s) (baseline, "
        "candidates, baseline, …); a ratio is taken round by round against the baseline run in the same round.",
    ]


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
    lines = []
    if results["not_measured"]:
        lines += ["", "Not measured yet:", ""]
        lines += [f"- {row}: {why}" for row, why in results["not_measured"].items()]
    if results["errors"]:
        lines += ["", "Rows that failed (no figures):", ""]
        lines += [f"- {e['row']}: {e['error']}" for e in results["errors"]]
    return lines


def update_readme(readme: Path, results: dict) -> None:
    """Replace the README's section between the bench markers with this run's summary."""
    text = readme.read_text()
    pattern = re.compile(re.escape(README_BEGIN) + ".*?" + re.escape(README_END), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"{readme.name} has no {README_BEGIN} … {README_END} section to fill")
    section = f"{README_BEGIN}\n{summary(results)}\n{README_END}"
    readme.write_text(pattern.sub(lambda _: section, text))
