"""Reporting a run to the control plane that launched it, and `run-due`'s claim of one (standard library only).

When REMORA_CONTROL_URL, REMORA_RUN_ID and REMORA_RUN_TOKEN are all set, ``backup`` posts
``started``, ``progress`` (bytes, as often as progress is logged), then ``succeeded`` or
``failed`` to ``{REMORA_CONTROL_URL}/api/v1/runs/{id}/events``. A report that cannot be
delivered is a warning: it never fails the backup itself.

The run token goes only to an https:// URL (http:// only to this machine), and never along a
redirect (runner.bearer). ``started`` names this process: if another process of the same run
started it first (a dyno launched twice), the control plane answers 409 and this one stops
without dumping. ``claim`` asks the control plane for a run with the resource's API token, under
the same rules.
"""

from __future__ import annotations

import contextlib
import secrets
import time
import urllib.error
import urllib.parse
from collections.abc import Iterator

import structlog

from runner import bearer, transfer
from runner import log as logs
from runner.config import Config
from runner.errors import RemoraError, Terminated, UsageError
from runner.manifest import Manifest

log = structlog.get_logger()

TIMEOUT = 5.0  # seconds per attempt: a slow control plane must not hold the backup up
ATTEMPTS = 2
RETRY_AFTER = 1.0
STOPPING_TIMEOUT = 1.5  # seconds: the report of a run stopped by a signal, inside its 4 s to exit
CLAIM_TIMEOUT = 10.0  # seconds: `run-due` has nothing else to do, and Heroku Scheduler asks again anyway
MAX_ANSWER = 64 * 1024  # bytes of a claim's answer read: a run is a few hundred

ANOTHER_PROCESS = 409  # the control plane's answer to the `started` of a second process of one run


class Reporter:
    """Posts a run's events; ``send`` never raises."""

    def __init__(self, url: str, token: str):
        self._url = url
        self._token = token
        self._progress_failed = False
        self._process = secrets.token_hex(16)  # tells this process from another launched for the same run
        self.another_process_started = False

    def start(self) -> None:
        """Report ``started``; sets ``another_process_started`` if one did first (this one must not dump)."""
        if self._post({"type": "started", "process": self._process}) == ANOTHER_PROCESS:
            log.warning("another process of this run has started it: this one stops without dumping")
            self.another_process_started = True

    def send(self, event: dict, *, attempts: int = ATTEMPTS, timeout: float = TIMEOUT) -> bool:
        """Deliver one event; a failure is logged as a warning. True if it was delivered."""
        return self._post(event, attempts=attempts, timeout=timeout) is None

    def _post(self, event: dict, *, attempts: int = ATTEMPTS, timeout: float = TIMEOUT) -> int | None:
        """Deliver one event; None if it was, else the HTTP status that refused it (0: no answer)."""
        status = 0
        for attempt in range(1, attempts + 1):
            try:
                with bearer.request(self._url, self._token, document=event, timeout=timeout):
                    return None
            except urllib.error.HTTPError as e:
                status, problem = e.code, f"HTTP {e.code}" + (" (redirects are not followed)" if 300 <= e.code < 400
                                                              else "")
                if e.code < 500 and e.code != 429:
                    break  # refused: asking again gets the same answer
            except bearer.NO_ANSWER as e:
                problem = bearer.problem(e)
            if attempt < attempts:
                time.sleep(RETRY_AFTER)
        if status != ANOTHER_PROCESS:
            log.warning("could not report to the control plane", report=event["type"], problem=problem)
        return status

    def progress(self, done: int) -> None:
        """Report bytes done, until a report fails: a hung control plane must not slow the upload down."""
        if not self._progress_failed:
            self._progress_failed = not self.send({"type": "progress", "bytes": done})

    def succeeded(self, manifest: Manifest) -> None:
        self.send({"type": "succeeded", "backup_id": manifest.id, "dump_bytes": manifest.dump_bytes,
                   "encrypted_bytes": manifest.encrypted_bytes, "sha256": manifest.sha256})


@contextlib.contextmanager
def reporting(config: Config) -> Iterator[Reporter | None]:
    """Report the block as a run: started, progress, failed (on an error, re-raised); None if not a run.

    A block whose reporter says ``another_process_started`` must not dump: the run is another's.
    """
    token = config.run_token.reveal() if config.run_token else None
    reporter = _reporter(config.control_url, config.run_id, token)
    if reporter is None:
        yield None
        return
    reporter.start()
    if reporter.another_process_started:
        yield reporter
        return
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
    if not bearer.may_carry(control_url):
        log.warning("not reporting: REMORA_CONTROL_URL must be https:// (http:// only to localhost)")
        return None
    return Reporter(f"{control_url.rstrip('/')}/api/v1/runs/{urllib.parse.quote(run_id, safe='')}/events", token)


def claim(url: str, token: str) -> dict | None:
    """POST to the resource's claim URL; the JSON answer (a run and its token), or None for 204 (nothing due).

    Raises UsageError when the control plane refuses the API token or cannot be asked: the
    message names the variables and the status, never the token.
    """
    hint = "check REMORA_API_URL and REMORA_API_TOKEN, the add-on's config vars; Heroku Scheduler asks again"
    if not bearer.may_carry(url):
        raise UsageError("REMORA_API_URL must be https:// (http:// only to localhost): the API token goes there",
                         hint=hint)
    try:
        with bearer.request(url, token, document={}, timeout=CLAIM_TIMEOUT) as answer:
            if answer.status == 204:
                return None
            data = answer.read(MAX_ANSWER + 1)
    except urllib.error.HTTPError as e:
        refused = e.code in (401, 403, 404)
        raise UsageError(f"the control plane {'refused' if refused else 'failed'} the request for a run "
                         f"(HTTP {e.code}{'; redirects are not followed' if 300 <= e.code < 400 else ''})",
                         hint=hint) from e
    except bearer.NO_ANSWER as e:
        raise UsageError(f"could not ask the control plane for a run ({bearer.problem(e)})", hint=hint) from e
    body = bearer.json_answer(data, most=MAX_ANSWER)
    if not isinstance(body, dict):
        raise UsageError("the control plane's answer to the request for a run is not a JSON object", hint=hint)
    return body
