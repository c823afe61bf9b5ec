"""The machine the figures were measured on: hardware, kernel, and each tool's version."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import paramiko

import runner
from tests.servers.seaweed import weed_binary

REPO = Path(__file__).resolve().parent.parent


def describe(*, pg_dump: Path, server_version: str) -> dict[str, str]:
    """Everything that changes the figures when it changes."""
    return {
        "CPU": f"{_cpuinfo('model name')}, {float(_cpuinfo('cpu MHz') or 0):.0f} MHz, AES-NI: "
               + ("yes" if "aes" in _cpuinfo("flags").split() else "no"),
        "cores": str(os.cpu_count()),
        "memory": f"{_meminfo_kib('MemTotal') / 2**20:.1f} GiB",
        "kernel": platform.release(),
        "system": _os_release(),
        "PostgreSQL server": server_version,
        "pg_dump": _first_line([str(pg_dump), "--version"]),
        "gpg": " / ".join(_output(["gpg", "--version"]).splitlines()[:2]),
        "OpenSSH": _first_line(["ssh", "-V"]),
        "Python": platform.python_version(),
        "paramiko": paramiko.__version__,
        "SeaweedFS": _first_line([str(weed_binary()), "version"]),
        "runner": runner.__version__,
        "commit": _commit(),
    }


def _output(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=REPO)
    except OSError as e:
        return f"unknown ({e.strerror})"
    return (result.stdout + result.stderr).strip()


def _first_line(argv: list[str]) -> str:
    return (_output(argv).splitlines() or ["unknown"])[0]


def _cpuinfo(field: str) -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith(field):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _meminfo_kib(field: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _os_release() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", "unknown")
    except OSError:
        return "unknown"


def _commit() -> str:
    """HEAD, and whether the code differs from it (what the benchmark itself writes aside)."""
    commit = _first_line(["git", "rev-parse", "--short", "HEAD"])
    changes = _output(["git", "status", "--porcelain", "--", ".", ":(exclude)bench/results", ":(exclude)docs/benchmarks.md"])
    return commit + (" with uncommitted changes" if changes else "")
