"""``remora-backup check``: one line a check, the first failure's exit code, and nothing left in the target."""

from __future__ import annotations

import re

import pytest

from tests.helpers import leftovers, remora
from tests.servers.util import free_port

CHECKS = ["config", "database", "credential", "pg_dump", "keys", "target"]


def report(stdout: str) -> dict[str, str]:
    """{check: status} from the report, which must have one line per check, in order."""
    lines = [re.match(r"(\S+) +(ok|FAIL|skip)  (.*)", line) for line in stdout.splitlines()]
    assert all(lines) and [m.group(1) for m in lines] == CHECKS, stdout
    return {m.group(1): m.group(2) for m in lines}


def test_check_passes_and_leaves_nothing_in_any_target(request, target_env, database_env, gpg_env):
    env = {**target_env, **database_env, **gpg_env}
    result = remora("check", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(report(result.stdout).values()) == {"ok"}
    assert "credential  ok    read-only" in result.stdout and "1 recipient(s): Customer DBA" in result.stdout
    assert re.search(r"target +ok +.*: wrote, read and deleted db_\w+/\.remora-probe-[0-9a-f]{8}", result.stdout)
    assert leftovers(env, request) == []


FAILURES = {  # what goes wrong -> (the env it takes, the exit code, {check: status} that differ from ok)
    "config": (lambda fixture: {"REMORA_DATABASE_URL": "mysql://u:p@h/db"}, 2,
               {"config": "FAIL", **{c: "skip" for c in CHECKS[1:]}}),
    "database": (lambda fixture: {"REMORA_DATABASE_URL": f"postgresql://u:p@127.0.0.1:{free_port()}/db"}, 3,
                 {"database": "FAIL", "credential": "skip", "pg_dump": "skip"}),
    "credential": (lambda fixture: {"REMORA_DATABASE_URL": fixture("pg_cluster").url(fixture("database"))}, 3,
                   {"credential": "FAIL"}),
    "keys": (lambda fixture: {"REMORA_GPG_PUBLIC_KEYS": fixture("odd_keys")["revoked"].public}, 2, {"keys": "FAIL"}),
    "target": (lambda fixture: {"REMORA_TARGET_URL": "file:///sys"}, 6, {"target": "FAIL"}),
    "the first failure decides": (
        lambda fixture: {"REMORA_GPG_PUBLIC_KEYS": "garbage", "REMORA_TARGET_URL": "file:///sys"}, 2,
        {"keys": "FAIL", "target": "FAIL"}),
}


@pytest.mark.parametrize("tweak, exit_code, statuses", FAILURES.values(), ids=FAILURES.keys())
def test_check_reports_each_failure(request, tweak, exit_code, statuses, file_target_env, database_env, gpg_env):
    env = {**file_target_env, **database_env, **gpg_env}
    result = remora("check", env={**env, **tweak(request.getfixturevalue)})
    assert result.returncode == exit_code
    assert report(result.stdout) == {**dict.fromkeys(CHECKS, "ok"), **statuses}
    [error] = [line for line in result.stderr.splitlines() if "level=error" in line]
    assert "check failed:" in error and f"exit_code={exit_code}" in error and "Traceback" not in result.stderr
    assert leftovers(env, request) == []
