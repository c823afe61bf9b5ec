"""The benchmark harness: run tiny on the test servers, so that `make bench` cannot rot; and its verdicts."""

from __future__ import annotations

import json
import shutil

import pytest

from bench import report, rows
from bench.measure import Figure, Goal, ratios
from bench.context import Settings
from bench.run import execute
from bench.servers import Servers
from tests.helpers import REPO


def test_a_tiny_benchmark_runs_every_row_and_writes_both_results_files(
    tmp_path, pg_cluster, s3_server, sshd_server, gpg_key, signing_key
):
    servers = Servers(cluster=pg_cluster, s3=s3_server, sshd=sshd_server, key=gpg_key, signer=signing_key)
    settings = Settings(sizes=(0.005, 0.01), repeats=1, rows=(), results=tmp_path / "results",
                        cache=tmp_path / "cache", schedules=200, load_seconds=2)
    (tmp_path / "work").mkdir()

    results = execute(servers, settings, tmp_path / "work", command="smoke")
    report.write(results, settings.results)

    assert results["errors"] == []
    figures = results["figures"]
    assert {f["row"] for f in figures} == {rows.name(row) for row in rows.all_rows()}
    for figure in figures:
        assert figure["candidate"] and all(value > 0 for value in figure["candidate"]), figure
        assert figure["verdict"] == "pass" or figure["verdict"].startswith("misses by"), figure
        if figure["baseline"]:
            assert len(figure["ratios"]) == len(figure["candidate"]) == len(figure["baseline"]) == 1
    [run] = results["runs"]
    assert {d["size_gb"] for d in run["databases"]} == {0.005, 0.01}
    assert run["machine"]["cores"] and "PostgreSQL" in run["machine"]["pg_dump"]
    [sftp] = [f for f in figures if f["row"] == "sftp"]
    assert "OpenSSH aes128-gcm@openssh.com, runner aes128-gcm@openssh.com" in sftp["notes"]
    [clock] = [f for f in figures if f["row"] == "clock"]
    assert clock["name"].startswith("200 due schedules") and clock["failures"] == [], clock
    assert "duplicates 0, not dispatched 0" in clock["notes"]
    [poisoned] = [f for f in figures if f["row"] == "poisoned"]
    assert poisoned["name"].startswith("200 due schedules, 2 of them raising") and poisoned["failures"] == [], poisoned
    assert "duplicates 0, not dispatched 0" in poisoned["notes"]
    [rundue] = [f for f in figures if f["row"] == "rundue"]
    assert rundue["failures"] == [] and "answered 204" in rundue["notes"], rundue
    [trigger] = [f for f in figures if f["row"] == "trigger"]
    assert "200 requests, 0 errors" in trigger["notes"] and trigger["failures"] == [], trigger

    assert json.loads((settings.results / "latest.json").read_text()) == json.loads(json.dumps(results))
    markdown = (settings.results / "latest.md").read_text()
    for figure in figures:
        assert figure["name"] in markdown
    assert report.read(settings.results) == json.loads(json.dumps(results))

    doc = tmp_path / "benchmarks.md"
    shutil.copy(REPO / "docs" / "benchmarks.md", doc)
    before = doc.read_text()
    report.update_doc(doc, results)
    after = doc.read_text()
    assert report.summary(results) in after
    assert after.split(report.DOC_BEGIN)[0] == before.split(report.DOC_BEGIN)[0]
    assert after.split(report.DOC_END)[1] == before.split(report.DOC_END)[1]


def test_a_figure_is_judged_on_its_median_ratio_or_its_largest_value_and_says_by_how_much_it_misses():
    at_most = Goal("≤ 1.10×", at_most=1.10)
    slow = Figure(row="r", name="n", unit="s", candidate=[12.0, 13.0, 30.0], goal=at_most,
                  baseline=[10.0, 10.0, 10.0], ratios=ratios([12.0, 13.0, 30.0], [10.0, 10.0, 10.0]))
    assert slow.ratios == [1.2, 1.3, 3.0]
    assert slow.verdict() == (False, "misses by 18.2% (above 1.1)")  # the median, 1.3, not the outlier
    assert Goal("≥ 0.5×", at_least=0.5).judge(0.4) == (False, "misses by 20.0% (below 0.5)")
    assert Goal("within 10%", at_least=0.9, at_most=1.1).judge(1.05) == (True, "pass")
    largest = Figure(row="r", name="n", unit="MiB", candidate=[90.0, 160.0, 95.0],
                     goal=Goal("≤ 150", at_most=150.0, on="max"))
    assert largest.verdict() == (False, "misses by 6.7% (above 150)")
    broken = Figure(row="r", name="n", unit="s", candidate=[1.0], goal=Goal("≤ 10 s, 0 duplicates", at_most=10.0,
                    on="max"), failures=["round 1: 2 duplicate runs"])
    assert broken.verdict() == (False, "round 1: 2 duplicate runs")  # whatever its values


def _results(rows_run: list[str], *, command: str, cpu: str = "the CPU") -> dict:
    """Results as one run of ``rows_run`` writes them, one figure per row."""
    machine = {"CPU": cpu, "cores": "2", "memory": "8 GiB", "PostgreSQL server": "15", "commit": command}
    run = {"command": command, "started_at": f"{command} time", "duration_s": 60, "rows": rows_run,
           "settings": {"sizes_gb": [1], "repeats": 3}, "machine": machine,
           "databases": [{"size_gb": 1, "name": "bench_1gb", "bytes": 10**9, "tables": {}}]}
    goal = Goal("≤ 2 s", at_most=2, on="max")
    figures = [Figure(row=row, name=f"{row} by {command}", unit="s", candidate=[1.0], goal=goal).to_json()
               for row in rows_run]
    return {"runs": [run], "figures": figures, "errors": []}


def test_results_of_some_rows_replace_those_rows_and_keep_the_others_with_the_runs_that_made_them(tmp_path):
    order = ["backup", "memory", "clock", "trigger"]
    first = _results(order[:3], command="first")
    first["errors"] = [{"row": "trigger", "error": "RuntimeError: no"}]
    second = report.merge(first, _results(["memory"], command="second", cpu="another CPU"), order=order)
    third = report.merge(second, _results(["clock", "trigger"], command="third"), order=order)

    assert [(run["command"], run["rows"]) for run in third["runs"]] == [
        ("first", ["backup"]), ("second", ["memory"]), ("third", ["clock", "trigger"])]
    assert [f["name"] for f in third["figures"]] == ["backup by first", "memory by second", "clock by third",
                                                     "trigger by third"]
    assert third["errors"] == []  # the failed row ran again
    markdown = report.markdown(third)
    for line in ("- `backup`: `first` at commit first", "- `memory`: `second` at commit second",
                 "- `clock`, `trigger`: `third` at commit third", "- `memory` measured with CPU: another CPU"):
        assert line in markdown

    # results written before runs were recorded one by one: one run, described at the top level
    legacy_run = first["runs"][0]
    legacy = {**{key: legacy_run[key] for key in ("command", "started_at", "duration_s", "machine", "databases")},
              "settings": {**legacy_run["settings"], "rows": legacy_run["rows"]}, "figures": first["figures"],
              "not_measured": {}, "errors": []}
    (tmp_path / "latest.json").write_text(json.dumps(legacy))
    merged = report.merge(report.read(tmp_path), _results(["memory"], command="later"), order=order)
    assert [(run["command"], run["rows"]) for run in merged["runs"]] == [
        ("first", ["backup", "clock"]), ("later", ["memory"])]
    assert report.read(tmp_path / "nothing") is None
    (tmp_path / "latest.json").write_text("{}")
    with pytest.raises(ValueError, match="latest.json is not results this benchmark wrote"):
        report.read(tmp_path)
