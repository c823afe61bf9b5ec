"""Small helpers shared by the server fixtures."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
from collections.abc import Iterator
from socketserver import BaseServer
from pathlib import Path

import pytest


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that nothing listens on (held open together, so none repeats)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


@contextlib.contextmanager
def serving(server: BaseServer) -> Iterator[None]:
    """Serve ``server`` from a thread until the block ends, then shut it down and close it."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    """A loopback port that nothing listens on right now."""
    return free_ports(1)[0]


def require_tool(tool: str | Path) -> Path:
    """The tool's path; a missing tool fails the run loudly (CI must never skip quietly)."""
    found = shutil.which(str(tool))
    if found is None:
        pytest.fail(f"{tool} is not installed: run `make setup` (or .ci/run) first", pytrace=False)
    return Path(found)
