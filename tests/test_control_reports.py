"""The runner reports a run to the control plane, and a control plane that is away never fails a backup."""

from __future__ import annotations

import pytest
import structlog

from control import settings
from runner import bearer, report, transfer, witness
from runner.config import Config, Secret
from runner.errors import UsageError
from runner.manifest import Manifest
from runner.targets import managed
from tests.helpers import ok, remora, target_folder
from tests.receiver import answering, receiver
from tests.servers.util import free_port

RUN_ID = "6f1c1a4e-0b7c-4d2a-9a55-3c3d2b1e0f00"
RUN_TOKEN = "run-token-" + "z" * 30


def _run_env(url: str) -> dict[str, str]:
    return {"REMORA_CONTROL_URL": url, "REMORA_RUN_ID": RUN_ID, "REMORA_RUN_TOKEN": RUN_TOKEN}


def test_backup_reports_started_then_succeeded_with_the_manifest(database_env, gpg_env, file_target_env):
    with receiver() as control:
        result = ok(remora("backup", env={**database_env, **gpg_env, **file_target_env,
                                          **_run_env(control.url + "/base/")}))
    backup_id = result.stdout.strip()
    manifest = next(target_folder(file_target_env).rglob(f"{backup_id}.manifest.json")).read_text()
    kinds = [body["type"] for body in control.bodies()]
    assert kinds[0] == "started" and kinds[-1] == "succeeded", kinds
    assert {r["path"] for r in control.requests} == {f"/base/api/v1/runs/{RUN_ID}/events"}
    assert {r["headers"]["Authorization"] for r in control.requests} == {f"Bearer {RUN_TOKEN}"}
    success = control.bodies()[-1]
    assert success["backup_id"] == backup_id and f'"sha256": "{success["sha256"]}"' in manifest
    assert RUN_TOKEN not in result.stderr


def test_a_failed_backup_reports_its_exit_code_and_one_line_error(database_env, gpg_env):
    with receiver() as control:
        result = remora("backup", env={**database_env, **gpg_env, "REMORA_TARGET_URL": "file:///proc/nope",
                                       **_run_env(control.url)})
    assert result.returncode == 6, result.stderr
    failure = control.bodies()[-1]
    assert failure["type"] == "failed" and failure["exit_code"] == 6
    assert "/proc/nope" in failure["error"] and "\n" not in failure["error"]


def test_a_run_with_a_refused_configuration_still_reports_its_failure(database_env, gpg_env):
    with receiver() as control:
        result = remora("backup", env={**database_env, **gpg_env, "REMORA_TARGET_URL": "ftp://nope",
                                       **_run_env(control.url)})
    assert result.returncode == 2
    [failure] = control.bodies()
    assert failure["type"] == "failed" and failure["exit_code"] == 2 and "REMORA_TARGET_URL" in failure["error"]


def test_an_unreachable_or_refusing_control_plane_never_fails_the_backup(database_env, gpg_env, file_target_env):
    env = {**database_env, **gpg_env, **file_target_env}
    unreachable = ok(remora("backup", env={**env, **_run_env(f"http://127.0.0.1:{free_port()}")}))
    assert "could not report to the control plane" in unreachable.stderr
    with receiver() as control:
        control.status = 403
        refused = ok(remora("backup", env={**env, **_run_env(control.url)}))
    assert "HTTP 403" in refused.stderr
    assert len(list(target_folder(file_target_env).rglob("*.manifest.json"))) == 2


def test_progress_is_reported_as_logged_until_a_report_fails(monkeypatch):
    monkeypatch.setattr(transfer, "PROGRESS_EVERY", 0.0)
    monkeypatch.setattr(report, "RETRY_AFTER", 0.0)
    with receiver() as control:
        reporter = report.Reporter(control.url + "/events", RUN_TOKEN)
        with transfer.progress_listener(reporter.progress):
            transfer.Progress("uploading").update(1000)
        control.status = 503
        reporter.progress(2000)  # two attempts, then progress reports stop
        reporter.progress(3000)
        assert reporter.send({"type": "failed", "exit_code": 6, "error": "x"}) is False  # the end is still tried
    assert [body.get("bytes") for body in control.bodies()] == [1000, 2000, 2000, None, None]


@pytest.mark.parametrize("status", [302, 307])
def test_a_report_follows_no_redirect_with_the_token(monkeypatch, status):
    monkeypatch.setattr(report, "RETRY_AFTER", 0.0)
    with receiver() as elsewhere, receiver() as control:
        control.status, control.headers = status, {"Location": elsewhere.url + "/collect"}
        assert report.Reporter(control.url + "/events", RUN_TOKEN).send({"type": "started"}) is False
    assert len(control.requests) == 1 and elsewhere.requests == []


def test_the_run_token_goes_only_over_https_or_to_this_machine():
    assert report._reporter("http://control.example", RUN_ID, RUN_TOKEN) is None
    assert report._reporter("http://10.0.0.1:5000", RUN_ID, RUN_TOKEN) is None
    for url in ("https://control.example", "http://127.0.0.1:5000", "http://localhost:5000", "http://[::1]:5000"):
        assert report._reporter(url, RUN_ID, RUN_TOKEN) is not None, url


@pytest.mark.parametrize("url, carries", [
    ("https://control.example", True), ("http://127.0.0.1:5000", True), ("http://localhost:5000", True),
    ("http://[::1]:5000", True), ("http://control.example", False), ("http://10.0.0.1:5000", False),
    ("http://127.0.0.2:5000", False), ("ftp://control.example", False), ("https:///no-host", False),
    ("http://[::1:5000", False),
])
def test_every_place_a_token_goes_keeps_one_rule(url, carries):
    """The run's reports, `run-due`'s claim, REMORA_API_URL, the add-on's storage, and the control plane that
    launches runs to report to REMORA_CONTROL_URL: one verdict on each URL."""
    assert (report._reporter(url, RUN_ID, RUN_TOKEN) is not None) == carries
    run = Config(control_url=url, run_id=RUN_ID, run_token=Secret(RUN_TOKEN))
    if carries:
        Config.from_env({"REMORA_API_URL": url})
        managed.from_config(run).close()
        settings.launching({"CONTROL_URL": url})
        return
    with pytest.raises(settings.ConfigError, match="REMORA_CONTROL_URL"):
        settings.launching({"CONTROL_URL": url})
    with pytest.raises(UsageError, match="REMORA_API_URL"):
        Config.from_env({"REMORA_API_URL": url})
    with pytest.raises(UsageError, match="REMORA_API_URL must be https"):
        report.claim(url, RUN_TOKEN)
    with pytest.raises(UsageError, match="REMORA_CONTROL_URL must be an https URL"):
        managed.from_config(run)
    with pytest.raises(ValueError, match="a bearer token goes only to"):
        bearer.request(url, RUN_TOKEN, timeout=1)  # the witness's request, and any other


def test_an_answer_nested_deeper_than_json_parses_is_refused_not_a_crash():
    """`run-due`'s claim and the witness read the control plane's answer as hostile, as the add-on's storage does."""
    manifest = Manifest(id="20260101T030000Z-0a0b0c", label="shop", database="shop", server_version="15.8",
                        pg_dump_version=15, archive_format="custom", compression="3", recipients=["A" * 40],
                        dump_bytes=10, encrypted_bytes=19, sha256="0" * 64, started_at="2026-01-01T03:00:00Z",
                        finished_at="2026-01-01T03:00:01Z", runner_version="0.1.0")
    with answering(200, b"[" * 5000) as url:
        with pytest.raises(UsageError, match="is not a JSON object"):
            report.claim(f"{url}/runs/claim", RUN_TOKEN)
        with structlog.testing.capture_logs() as logs:
            witness.testify(Config(api_url=url, api_token=Secret(RUN_TOKEN)), manifest)
    assert [e["event"] for e in logs] == [
        "the control plane's answer is not a record of this backup; not taken as a witness"]
