"""The dyno command and the command line's own answers."""

from __future__ import annotations

import subprocess

from tests.helpers import REPO, base_env, remora


def test_the_dyno_command_runs_the_runner():
    result = subprocess.run([str(REPO / "bin" / "remora-backup"), "--help"], env=base_env(),
                            capture_output=True, text=True)
    assert result.returncode == 0 and "backup" in result.stdout and "restore" in result.stdout


def test_usage_errors_exit_2_in_one_line():
    assert remora(env={}).returncode == 2
    missing = remora("backup", env={})
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [missing.stderr.strip()]
    assert "REMORA_DATABASE_URL, REMORA_TARGET_URL, REMORA_GPG_PUBLIC_KEYS not set" in missing.stderr
    bad_jobs = remora("restore", "latest", "--to", "X", "--jobs", "0", env={})
    assert bad_jobs.returncode == 2 and "--jobs" in bad_jobs.stderr
