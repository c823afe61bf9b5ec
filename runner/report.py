"""Reporting a run to the control plane that launched it (standard library only).

When REMORA_CONTROL_URL, REMORA_RUN_ID and REMORA_RUN_TOKEN are all set, ``backup`` posts
``started``, ``progress`` (bytes, as often as progress is logged), then ``succeeded`` or
``failed`` to ``{REMORA_CONTROL_URL}/api/v1/runs/{id}/events``. A report that cannot be
delivered is a warning: it never fails the backup itself.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import structlog

from runner import log as logs
from runner import transfer
from runner.config import Config
from runner.errors import RemoraError, Terminated
from runner.manifest import Manifest

log = structlog.get_logger()

TIMEOUT = 5.0  # seconds per attempt: a slow control plane must not hold the backup up
ATTEMPTS = 2
RETRY_AFTER = 1.0
STOPPING_TIMEOUT = 1.5  # seconds: the report of a run stopped by a signal, inside its 4 s to exit


class Reporter:
    """Posts a run's events; ``send`` never raises."""

    def __init__(self, url: str, token: str):
        self._url = url
        self._token = token
        self._progress_failed = False

    def send(self, event: dict, *, attempts: int = ATTEMPTS, timeout: float = TIMEOUT) -> bool:
        """Deliver one event; a failure is logged as a warning. True if it was delivered."""
        request = urllib.request.Request(
            self._url, data=json.dumps(event).encode(), method="POST",
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
        )
        for attempt in range(1, attempts + 1):
            try:
                with urllib.request.urlopen(request, timeout=timeout):
                    return True
            except urllib.error.HTTPError as e:
                problem = f"HTTP {e.code}"
                if e.code < 500 and e.code != 429:
                    break  # refused: asking again gets the same answer
            except (OSError, ValueError, http.client.HTTPException) as e:
                problem = type(e).__name__ + (f": {e.reason}" if isinstance(e, urllib.error.URLError) else "")
            if attempt < attempts:
                time.sleep(RETRY_AFTER)
        log.warning("could not report to the control plane", report=event["type"], problem=problem)
        return False

    def progress(self, done: int) -> None:
        """Report bytes done, until a report fails: a hung control plane must not slow the upload down."""
        if not self._progress_failed:
            self._progress_failed = not self.send({"type": "progress", "bytes": done})

    def succeeded(self, manifest: Manifest) -> None:
        self.send({"type": "succeeded", "backup_id": manifest.id, "dump_bytes": manifest.dump_bytes,
                   "encrypted_bytes": manifest.encrypted_bytes, "sha256": manifest.sha256})


@contextlib.contextmanager
def reporting(config: Config) -> Iterator[Reporter | None]:
    """Report the block as a run: started, progress, failed (on an error, re-raised); None if not a run."""
    token = config.run_token.reveal() if config.run_token else None
    reporter = _reporter(config.control_url, config.run_id, token)
    if reporter is None:
        yield None
        return
    reporter.send({"type": "started"})
    try:
        with transfer.progress_listener(reporter.progress):
            yield reporter
    except RemoraError as e:
        reporter.send({"type": "failed", "exit_code": e.exit_code, "error": logs.redactor.scrub(e.one_line())})
        raise
    except Terminated as e:
        # one quick try: the runner must be gone before Heroku's SIGKILL, whatever the control plane does
        reporter.send({"type": "failed", "exit_code": e.exit_code, "error": f"stopped by {e.name}"},
                      attempts=1, timeout=STOPPING_TIMEOUT)
        raise
    except Exception as e:
        reporter.send({"type": "failed", "exit_code": 1, "error": f"internal error: {type(e).__name__}"})
        raise


def unconfigured(env, error: RemoraError) -> None:
    """Report a run whose configuration was refused before there was a Config to report with."""
    reporter = _reporter(*(env.get(name, "").strip() or None for name in _VARIABLES))
    if reporter is not None:
        reporter.send({"type": "failed", "exit_code": error.exit_code, "error": logs.redactor.scrub(error.one_line())})


_VARIABLES = ("REMORA_CONTROL_URL", "REMORA_RUN_ID", "REMORA_RUN_TOKEN")


def _reporter(control_url: str | None, run_id: str | None, token: str | None) -> Reporter | None:
    given = [control_url, run_id, token]
    if not any(given):
        return None
    if not all(given):
        log.warning(f"not reporting: {', '.join(_VARIABLES)} must all be set")
        return None
    return Reporter(f"{control_url.rstrip('/')}/api/v1/runs/{urllib.parse.quote(run_id, safe='')}/events", token)
