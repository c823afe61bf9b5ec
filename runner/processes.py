"""Child processes that cannot leak or hang.

Every child's stderr is drained by a thread into a bounded buffer, so a chatty child never
blocks on a full pipe and its last words are kept for the error message. ``ProcessGroup`` is a
context manager: leaving it by an exception terminates every child that is still running, waits
a grace period, kills what is left, and always reaps, so no child outlives the runner's command.
"""

from __future__ import annotations

import collections
import fcntl
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence

# what a child inherits from the runner's environment: paths and locale, never a config var
_INHERITED = ("PATH", "HOME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "TMPDIR")
STDERR_KEEP = 16 * 1024  # bytes of stderr kept per child
MESSAGE_KEEP = 1000  # characters of it that reach an error message
GRACE_SECONDS = 5.0


def child_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment a child starts from.

    Config vars hold the database credential, private keys and tokens; a child gets none of
    them, and what it needs of a secret (pg_dump's PGPASSWORD) is added for it by name.
    """
    return {key: value for key, value in env.items() if key in _INHERITED}


class Child:
    """One running process and the tail of what it wrote to stderr."""

    def __init__(self, name: str, popen: subprocess.Popen):
        self.name = name
        self.popen = popen
        self._tail: collections.deque[bytes] = collections.deque()
        self._tail_bytes = 0
        self._drainer = threading.Thread(target=self._drain, name=f"{name}-stderr", daemon=True)
        self._drainer.start()

    def _drain(self) -> None:
        for line in iter(self.popen.stderr.readline, b""):
            self._tail.append(line)
            self._tail_bytes += len(line)
            while self._tail_bytes > STDERR_KEEP and len(self._tail) > 1:
                self._tail_bytes -= len(self._tail.popleft())
        self.popen.stderr.close()

    def stderr_text(self) -> str:
        """The child's last stderr lines, joined on one short line: the tool's own words."""
        self._drainer.join(timeout=GRACE_SECONDS)
        text = b"".join(self._tail).decode("utf-8", "replace")
        joined = " / ".join(line.strip() for line in text.splitlines() if line.strip())
        return joined if len(joined) <= MESSAGE_KEEP else "…" + joined[-MESSAGE_KEEP:]

    def wait(self) -> int:
        return self.popen.wait()


class ProcessGroup:
    """Starts children and guarantees that each one is reaped, on success and on failure."""

    def __init__(self) -> None:
        self.children: list[Child] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        pass_fds: Sequence[int] = (),
    ) -> Child:
        """Start ``argv`` (never through a shell) with exactly ``env`` as its environment."""
        popen = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            pass_fds=tuple(pass_fds),
            bufsize=0,
        )
        child = Child(name, popen)
        self.children.append(child)
        return child

    def stop(self, *, grace: float = GRACE_SECONDS) -> None:
        """Terminate every child still running, kill it after ``grace`` seconds, reap them all."""
        alive = [c.popen for c in self.children if c.popen.poll() is None]
        for popen in alive:
            _signal(popen, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for popen in alive:
            try:
                popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(popen, signal.SIGKILL)
                popen.wait()
        for child in self.children:
            for stream in (child.popen.stdin, child.popen.stdout):
                if stream is not None:
                    stream.close()

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop(grace=GRACE_SECONDS if exc_type is not None else 0.0)


def _signal(popen: subprocess.Popen, signum: int) -> None:
    try:
        popen.send_signal(signum)
    except ProcessLookupError:
        pass


PIPE_BYTES = 1 << 20  # Linux's default ceiling for an unprivileged pipe (fs.pipe-max-size)
PUMP_BATCH = 256 * 1024  # a splice that moved less than this waits for more to gather
PUMP_PAUSE = 0.001  # seconds


def pipe() -> tuple[int, int]:
    """An os.pipe() that holds PIPE_BYTES: see ``widen``."""
    read_end, write_end = os.pipe()
    widen(write_end)
    return read_end, write_end


def widen(fd: int) -> None:
    """Let the pipe under ``fd`` hold PIPE_BYTES instead of 64 KiB.

    With four busy processes on two cores (the server, pg_dump, gpg, the runner), a 64 KiB pipe
    fills in a moment and each stage sleeps until the next one is scheduled; a wider pipe lets
    each run in longer stretches. Best effort: a smaller ceiling just leaves the default.
    """
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:
        pass


class Pump(threading.Thread):
    """Moves bytes from one pipe to another in the kernel (splice), counting them.

    The bytes never pass through Python's memory, let alone the disk. When the sink's reader
    dies the source is closed, so the writer upstream sees SIGPIPE instead of blocking forever.
    """

    def __init__(self, source: int, sink: int):
        super().__init__(name="pump", daemon=True)
        self._source = source
        self._sink = sink
        self.moved = 0
        self.error: OSError | None = None  # BrokenPipeError: the reader died; it will say why

    def run(self) -> None:
        try:
            while moved := os.splice(self._source, self._sink, PIPE_BYTES):
                self.moved += moved
                if moved < PUMP_BATCH:
                    # pg_dump writes a few KiB at a time: moving each write as it comes woke this
                    # thread tens of thousands of times per GB (2 s of CPU in `make bench`'s profile).
                    # A millisecond's pause lets writes gather; the 1 MiB pipe keeps pg_dump going.
                    time.sleep(PUMP_PAUSE)
        except OSError as e:
            self.error = e
        finally:
            os.close(self._source)
            os.close(self._sink)
