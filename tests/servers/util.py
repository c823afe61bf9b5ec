"""Small helpers shared by the server fixtures."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_tool(tool: str | Path) -> Path:
    """The tool's path; a missing tool fails the run loudly (CI must never skip quietly)."""
    found = shutil.which(str(tool))
    if found is None:
        pytest.fail(f"{tool} is not installed: run `make setup` (or .ci/run) first", pytrace=False)
    return Path(found)
