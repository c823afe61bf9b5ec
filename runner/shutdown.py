"""Stopping on SIGTERM and SIGINT, within a few seconds, leaving nothing that looks complete.

Heroku stops a dyno with SIGTERM and kills it 30 seconds later. On the first signal the runner
raises ``Terminated`` in its main thread, where every command does its work, and the usual
unwinding does the rest: the children are stopped (``ProcessGroup``), the upload is aborted (S3
multipart aborted, SFTP or local temporary file removed), no manifest is written. A retry's
wait and a network call on the main thread are interrupted, not waited for; parts in flight on
other threads run on daemon threads and are abandoned. Should the cleanup itself hang (a server
that stopped answering mid-abort), a watchdog ends the process ``DEADLINE`` seconds after the
signal; what is left then is incomplete, never listed, and removed by ``prune``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator

import structlog

from runner.errors import Terminated

log = structlog.get_logger()

DEADLINE = 4.0  # seconds from the signal to the exit, whatever happens: inside the 5 promised
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Inside, the first SIGTERM or SIGINT raises ``Terminated``; later ones are ignored."""
    previous = {signum: signal.signal(signum, _stop) for signum in _SIGNALS}
    stopped = False
    try:
        yield
    except Terminated:
        stopped = True  # the signals stay ignored: the runner is on its way out
        raise
    finally:
        if not stopped:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _stop(signum: int, _frame) -> None:
    for other in _SIGNALS:  # a second signal must not cut the cleanup short
        signal.signal(other, signal.SIG_IGN)
    stopped = Terminated(signum, signal.Signals(signum).name)
    threading.Thread(target=_exit_at_deadline, args=(stopped,), name="deadline", daemon=True).start()
    raise stopped


def _exit_at_deadline(stopped: Terminated) -> None:
    time.sleep(DEADLINE)
    log.error(
        f"stopped by {stopped.name}; cleanup did not finish within {DEADLINE:g} s, "
        "so an unfinished upload may remain (it is never listed, and prune removes it)",
        exit_code=stopped.exit_code,
    )
    os._exit(stopped.exit_code)
