"""Running the real runner as a user would, and comparing databases."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from runner import catalog
from runner.manifest import Manifest
from runner.targets import Leftover, Target

REPO = Path(__file__).resolve().parent.parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def base_env() -> dict[str, str]:
    """A clean environment: PATH, HOME and locale only, so nothing leaks in from the developer's shell."""
    return {"PATH": os.environ["PATH"], "HOME": str(Path.home()), "LANG": "C.UTF-8"}


# runs the command, then reports the process's peak memory as the kernel counts it (VmHWM, from /proc)
_PEAK = ("import sys; from runner import cli; code = cli.main(sys.argv[1:]); "
         "print(next(line for line in open('/proc/self/status') if line.startswith('VmHWM:')), file=sys.stderr);"
         " sys.exit(code)")


def remora(*args: str, env: dict[str, str], timeout: float = 300, peak: bool = False,
           **kwargs) -> subprocess.CompletedProcess:
    """Run ``remora-backup ARGS`` in a child process, without a terminal, as on a dyno.

    ``peak``: the runner also prints its peak memory on stderr (see ``peak_rss_mib``).
    """
    return subprocess.run(
        [sys.executable, *(["-c", _PEAK] if peak else ["-m", "runner.cli"]), *args],
        env={**base_env(), **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def start_remora(*args: str, env: dict[str, str]) -> subprocess.Popen:
    """Start ``remora-backup ARGS`` in a child process and return at once, output captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "runner.cli", *args],
        env={**base_env(), **env}, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def target_folder(env: dict[str, str]) -> Path:
    """Where a file:// target, or an sftp:// one on the test sshd, keeps its objects on this machine."""
    return Path(urlsplit(env["REMORA_TARGET_URL"]).path)


def leftovers(env: dict[str, str], request) -> list[str]:
    """Everything the target holds: objects, temporary files, open multipart uploads."""
    url = urlsplit(env["REMORA_TARGET_URL"])
    if url.scheme == "s3":
        client = request.getfixturevalue("s3_server").client()
        objects = client.list_objects_v2(Bucket=url.netloc).get("Contents", [])
        uploads = client.list_multipart_uploads(Bucket=url.netloc).get("Uploads", [])
        return [o["Key"] for o in objects] + [f"upload {u['Key']}" for u in uploads]
    return sorted(str(p) for p in target_folder(env).rglob("*") if p.is_file())


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr}"
    return result


def dump_sql(url: str, *, bin_dir: Path = PG_BIN) -> str:
    """A database's whole content as SQL, for comparing a restore with its source."""
    result = subprocess.run(
        [str(bin_dir / "pg_dump"), "--no-owner", "--no-acl", "--dbname", url.rsplit("/", 1)[1]],
        env={**base_env(), **libpq_env(url)},
        capture_output=True,
        text=True,
        check=True,
    )
    # comments name the database; \restrict lines carry a random key per run
    noise = ("--", "\\restrict", "\\unrestrict")
    return "\n".join(line for line in result.stdout.splitlines() if not line.startswith(noise))


def libpq_env(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    return {"PGHOST": parts.hostname, "PGPORT": str(parts.port), "PGUSER": parts.username,
            "PGPASSWORD": parts.password}


def pg_restore_spy(folder: Path, real: Path = PG_BIN / "pg_restore") -> tuple[str, Path]:
    """A PATH that finds, first, a pg_restore that notes each run in a file, then runs ``real``: (PATH, the file)."""
    folder.mkdir()
    note = folder / "ran"
    spy = folder / "pg_restore"
    spy.write_text(f'#!/bin/sh\n[ "$1" = --version ] || echo "$@" >> "{note}"\nexec "{real}" "$@"\n')
    spy.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}", note


def peak_rss_mib(result: subprocess.CompletedProcess) -> float:
    """The runner's peak resident memory, as ``remora(..., peak=True)`` had it report from /proc."""
    [line] = [line for line in result.stderr.splitlines() if line.startswith("VmHWM:")]
    return int(line.split()[1]) / 1024


def craft_backup(target: Target, label: str, when: str, *, manifest: bool = True) -> str:
    """A backup taken at ``when`` (ISO, UTC) made cheaply: a stand-in archive and its manifest, written directly.

    Without ``manifest`` it is what a run that died before committing leaves: an archive alone.
    """
    moment = datetime.datetime.fromisoformat(when).replace(tzinfo=datetime.timezone.utc)
    backup_id = catalog.new_id(moment)
    target.put(catalog.archive_key(label, backup_id), b"stand-in ciphertext")
    if manifest:
        stamp = f"{moment:%Y-%m-%dT%H:%M:%SZ}"
        target.put(catalog.manifest_key(label, backup_id), Manifest(
            id=backup_id, label=label, database=label, server_version="15.0", pg_dump_version=15,
            archive_format="custom", compression="1", recipients=[], dump_bytes=0, encrypted_bytes=19,
            sha256="0" * 64, started_at=stamp, finished_at=stamp, runner_version="test",
        ).to_bytes())
    return backup_id


def upload_in_flight(runner: subprocess.Popen, target: Target, timeout: float = 60) -> list[Leftover]:
    """Wait until ``runner`` has begun its upload to ``target`` and sent some bytes; return the target's leftovers."""
    deadline = time.monotonic() + timeout
    while not (found := target.leftovers()):
        assert runner.poll() is None, runner.communicate()
        assert time.monotonic() < deadline, "the runner never began an upload"
        time.sleep(0.05)
    time.sleep(0.5)  # the upload begins before pg_dump starts: let some bytes flow
    return found
