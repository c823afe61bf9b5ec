"""The benchmark harness: run tiny on the test servers, so that `make bench` cannot rot; and its verdicts."""

from __future__ import annotations

import json
import shutil

from bench import report, rows
from bench.measure import Figure, Goal, ratios
from bench.context import Settings
from bench.run import execute
from bench.servers import Servers
from tests.helpers import REPO


def test_a_tiny_benchmark_runs_every_row_and_writes_both_results_files(
    tmp_path, pg_cluster, s3_server, sshd_server, gpg_key
):
    servers = Servers(cluster=pg_cluster, s3=s3_server, sshd=sshd_server, key=gpg_key)
    settings = Settings(sizes=(0.005, 0.01), repeats=1, rows=(), results=tmp_path / "results",
                        cache=tmp_path / "cache")
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
    assert {d["size_gb"] for d in results["databases"]} == {0.005, 0.01}
    assert results["machine"]["cores"] and "PostgreSQL" in results["machine"]["pg_dump"]
    [sftp] = [f for f in figures if f["row"] == "sftp"]
    assert "OpenSSH aes128-gcm@openssh.com, runner aes128-gcm@openssh.com" in sftp["notes"]

    assert json.loads((settings.results / "latest.json").read_text()) == json.loads(json.dumps(results))
    markdown = (settings.results / "latest.md").read_text()
    for figure in figures:
        assert figure["name"] in markdown
    for pending in rows.PENDING:
        assert pending in markdown

    readme = tmp_path / "README.md"
    shutil.copy(REPO / "README.md", readme)
    before = readme.read_text()
    report.update_readme(readme, results)
    after = readme.read_text()
    assert report.summary(results) in after
    assert after.split(report.README_BEGIN)[0] == before.split(report.README_BEGIN)[0]
    assert after.split(report.README_END)[1] == before.split(report.README_END)[1]


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
