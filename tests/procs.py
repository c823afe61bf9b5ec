"""Looking at processes from the outside, as an attacker or an operator on the same machine would."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # the process ended, or is not ours to read
        return b""


def all_cmdlines() -> list[bytes]:
    """Every process's argv, NUL-separated, as /proc shows them."""
    return [_read(p / "cmdline") for p in Path("/proc").iterdir() if p.name.isdigit()]


def children_of(pid: int) -> list[tuple[int, list[str]]]:
    """(pid, argv) of the direct children of ``pid``."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            stat = _read(proc / "stat").decode(errors="replace")
            if stat and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                argv = _read(proc / "cmdline").decode(errors="replace").split("\0")
                found.append((int(proc.name), argv))
    return found


def with_marker(marker: str) -> list[int]:
    """Pids of processes whose environment holds ``marker``: the runner's children and theirs."""
    needle = marker.encode()
    return [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and int(p.name) != os.getpid() and needle in _read(p / "environ")
    ]


def kill_encrypting_gpg(runner: subprocess.Popen, timeout: float = 30) -> None:
    """SIGKILL the runner's gpg --encrypt (not the short-lived gpg runs that import keys)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid, argv in children_of(runner.pid):
            if "--encrypt" in argv:
                time.sleep(0.2)  # let some bytes flow first
                os.kill(pid, signal.SIGKILL)
                return
        time.sleep(0.01)
    raise AssertionError("gpg --encrypt never started")
