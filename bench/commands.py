"""Timing the commands the rows compare: the runner, pg_dump, pg_restore, gpg, OpenSSH's sftp."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import resource
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import BinaryIO

from bench.measure import Sample
from tests.helpers import remora

_PEAK_RSS = re.compile(r'event="backup complete".* peak_rss_mib=([0-9.]+)')


class BenchError(Exception):
    """A timed command failed or ran out of time; the message names it and quotes its last words."""


def timed(*stages: Sequence[str], env: dict[str, str], timeout: float, stdin=subprocess.DEVNULL,
          stdout=subprocess.DEVNULL, stderr: BinaryIO | None = None) -> Sample:
    """Run a pipeline of ``stages`` (no shell; each one's stdout feeds the next): its wall and CPU time.

    ``stderr``, a file open for reading and writing, keeps what the last stage said there.
    """
    with contextlib.ExitStack() as stack:
        errors = [stack.enter_context(tempfile.TemporaryFile()) for _ in stages[:-1]]
        errors.append(stderr or stack.enter_context(tempfile.TemporaryFile()))
        procs: list[subprocess.Popen] = []
        stack.callback(_reap, procs)
        started, cpu = time.monotonic(), _children_cpu()
        for number, (argv, err) in enumerate(zip(stages, errors)):
            last = number == len(stages) - 1
            proc = subprocess.Popen(list(argv), env=env, stdin=procs[-1].stdout if procs else stdin,
                                    stdout=stdout if last else subprocess.PIPE, stderr=err)
            if procs:
                procs[-1].stdout.close()  # so the stage before gets SIGPIPE if this one dies
            procs.append(proc)
        try:
            for proc in procs:
                proc.wait(timeout=max(0.0, started + timeout - time.monotonic()))
        except subprocess.TimeoutExpired as e:
            raise BenchError(f"{_name(stages)} did not finish within {timeout:.0f} s") from e
        sample = {"s": time.monotonic() - started, "cpu_s": _children_cpu() - cpu}
        for argv, proc, err in zip(stages, procs, errors):
            if proc.returncode != 0:
                err.seek(0)
                raise BenchError(f"{argv[0]} exited {proc.returncode}: {_tail(err.read().decode(errors='replace'))}")
        return sample


def _children_cpu() -> float:
    """CPU seconds of every reaped child, and theirs: the tools, not the database server."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _reap(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _name(stages) -> str:
    return " | ".join(str(argv[0]).rsplit("/", 1)[-1] for argv in stages)


def _tail(text: str) -> str:
    return " / ".join(text.strip().splitlines()[-3:]) or "no message"


@dataclasses.dataclass(frozen=True)
class RunnerRun:
    seconds: float
    cpu_seconds: float  # the runner's, pg_dump's and gpg's (or pg_restore's)
    stdout: str
    stderr: str

    @property
    def peak_rss_mib(self) -> float:
        """VmHWM of the runner's own process, as it logs it in its "backup complete" line."""
        match = _PEAK_RSS.search(self.stderr)
        if match is None:
            raise BenchError("the runner logged no peak_rss_mib in its 'backup complete' line")
        return float(match[1])


def runner(*args: str, env: dict[str, str], timeout: float) -> RunnerRun:
    """Run ``remora-backup ARGS`` as on a dyno (a child process, no terminal) and time it."""
    started, cpu = time.monotonic(), _children_cpu()
    try:
        result = remora(*args, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"remora-backup {args[0]} did not finish within {timeout:.0f} s") from e
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise BenchError(f"remora-backup {args[0]} exited {result.returncode}: {_tail(result.stderr)}")
    return RunnerRun(seconds=seconds, cpu_seconds=_children_cpu() - cpu, stdout=result.stdout.strip(),
                     stderr=result.stderr)
