"""Running a backup under a fault, and the one assertion every fault ends in.

A fault ends in exactly one of two outcomes:

- ``Restored``: a complete backup, whose restore equals the source, and nothing else stored;
- ``Failed``: the right exit code, one error line saying why, ``list`` showing nothing, no object
  at all, and no unfinished upload (temporary file, open multipart upload) either. Only where no
  cleanup can happen (SIGKILL; a server gone silent when SIGTERM comes) may the unfinished upload
  stay, for ``prune``: then nothing may look complete.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import time
from collections.abc import Callable

from tests.faults.proxy import FaultProxy
from tests.helpers import dump_sql, ok, remora, start_remora

MIB = 1024 * 1024
DEADLINE = 5.0  # seconds from SIGTERM to the runner's exit: the promise tested


@dataclasses.dataclass(frozen=True)
class Stored:
    """What a target holds: objects under their final names, and unfinished uploads."""

    objects: list[str]
    unfinished: list[str]


@dataclasses.dataclass(frozen=True)
class Restored:
    """A complete backup whose restore equals the source."""

    def __str__(self) -> str:
        return "complete backup; its restore equals the source"


@dataclasses.dataclass(frozen=True)
class Failed:
    """A clean failure: exit code, error line, nothing stored."""

    exit_code: int  # negative: killed by that signal, with no last words
    says: str = ""  # words the one error line holds
    retries: int | None = None  # how many "retrying" lines, if that is the point (0: at once)
    left_unfinished: bool = False  # the unfinished upload stays, but nothing looks complete

    def __str__(self) -> str:
        ending = f"exit {self.exit_code}"
        if self.exit_code == 128 + signal.SIGTERM:
            ending += f" within {DEADLINE:g} s"
        if self.exit_code < 0:
            ending = f"killed by {signal.Signals(-self.exit_code).name}"
        if self.retries == 0:
            ending += " at once (no retry)"
        if self.left_unfinished:
            return f"{ending}; nothing looks complete, the unfinished upload is left for prune"
        return f"{ending}; nothing stored"


@dataclasses.dataclass
class Finished:
    code: int
    stderr: str
    seconds: float  # from the start, or from the signal that stopped it


@dataclasses.dataclass
class FaultRun:
    """One backup of ``database`` to one target, through ``proxy`` for network targets."""

    target: str  # "file", "s3" or "sftp"
    env: dict[str, str]  # for the backup under the fault
    check_env: dict[str, str]  # for looking at the result: the same, without the fault's own variables
    cluster: object  # tests.servers.postgres.Cluster
    database: str
    proxy: FaultProxy | None
    stored: Callable[[], Stored]
    uploading: Callable[[], bool]  # the upload has started and holds some bytes
    # what a target's faults need done: "impostor" (SFTP) starts an sshd with another host key and gives its
    # port; "expire" (the add-on's storage) makes the run outlive its token, "clock" runs the clock's pass
    helpers: dict[str, Callable] = dataclasses.field(default_factory=dict)

    def backup(self) -> Finished:
        started = time.monotonic()
        result = remora("backup", env=self.env, timeout=120)
        return Finished(result.returncode, result.stderr, time.monotonic() - started)

    def start(self) -> subprocess.Popen:
        return start_remora("backup", env=self.env)

    def finish(self, runner: subprocess.Popen, since: float | None = None) -> Finished:
        started = time.monotonic() if since is None else since
        _out, err = runner.communicate(timeout=120)
        return Finished(runner.returncode, err, time.monotonic() - started)

    def wait_until_uploading(self, runner: subprocess.Popen, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.uploading():
            assert runner.poll() is None, f"the runner ended before the upload began:\n{runner.stderr.read()}"
            assert time.monotonic() < deadline, "the upload never began"
            time.sleep(0.02)

    def terminate_dump_backend(self) -> bool:
        """Kill pg_dump's server process while it copies table data: a dump that fails mid-stream."""
        with self.cluster.connect() as conn:
            for _ in range(3000):
                row = conn.execute(
                    "select pg_terminate_backend(pid) from pg_stat_activity"
                    " where datname = %s and application_name = 'pg_dump' and query like 'COPY%%'",
                    (self.database,),
                ).fetchone()
                if row:
                    return True
                time.sleep(0.005)
        return False

    def signal(self, runner: subprocess.Popen, signum: int) -> Finished:
        """Send ``signum`` to the runner; its time is counted from the signal."""
        sent = time.monotonic()
        runner.send_signal(signum)
        return self.finish(runner, since=sent)


def assert_outcome(run: FaultRun, finished: Finished, expected: Restored | Failed) -> None:
    """The one assertion of the fault suite: exactly the outcome expected, and nothing else."""
    if isinstance(expected, Restored):
        assert finished.code == 0, f"exit {finished.code}\n{finished.stderr}"
        _assert_restores(run)
        stored = run.stored()
        assert stored.unfinished == [], stored
        names = sorted(key.rsplit("/", 1)[-1].split(".", 1)[1] for key in stored.objects)
        assert names == ["dump.gpg", "manifest.json"], stored
    else:
        _assert_failed(run, finished, expected)
    if run.proxy is not None:  # else the test proved nothing: the fault never happened
        assert len(run.proxy.fired) == run.proxy.expected, (run.proxy.fired, run.proxy.expected)


def _assert_failed(run: FaultRun, finished: Finished, expected: Failed) -> None:

    assert finished.code == expected.exit_code, f"exit {finished.code}\n{finished.stderr}"
    if expected.exit_code > 0:
        [line] = [line for line in finished.stderr.splitlines() if "level=error" in line]
        assert expected.says in line, line
    if expected.retries is not None:
        assert finished.stderr.count('event=retrying') == expected.retries, finished.stderr
    if expected.exit_code == 128 + signal.SIGTERM:
        assert finished.seconds < DEADLINE, f"stopped {finished.seconds:.1f} s after SIGTERM"
    assert json.loads(ok(remora("list", "--json", env=run.check_env)).stdout) == []
    stored = run.stored()
    assert stored.objects == [], stored
    if expected.left_unfinished:
        assert stored.unfinished, "no unfinished upload: did the fault strike mid-upload?"
    else:
        assert stored.unfinished == [], stored


_source_dumps: dict[str, str] = {}


def _assert_restores(run: FaultRun) -> None:
    """``restore latest`` into a new database equals the source, compared as SQL."""
    if run.database not in _source_dumps:
        _source_dumps[run.database] = dump_sql(run.cluster.url(run.database))
    copy = run.cluster.create_database(sample=False)
    ok(remora("restore", "latest", "--to", "TO_URL", env={**run.check_env, "TO_URL": run.cluster.url(copy)}))
    assert dump_sql(run.cluster.url(copy)) == _source_dumps[run.database]
