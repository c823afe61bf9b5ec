"""The heroku launcher: a one-off dyno on the customer's helper app, through the Platform API.

A thin client over ``requests`` rather than heroku3: heroku3 (last released 2023) fails to
import on a fresh install without ``six``, cannot send ``time_to_live`` or ``type``, prints to
stdout and never retries.

Heroku gives an add-on's token only a subset of the Platform API (the Platform API for Partners),
which may not include dynos: a 401 or 403 is LaunchRefused, and the resource's runs are then
pulled by its helper app instead (control/pulling.py).

Reads are retried on 429, 409, 5xx and network errors. Creating a dyno is retried only where
Heroku cannot have acted (the connection was never made, 409, 429): after a timeout or a 5xx the
dyno may exist, so the launch is unconfirmed rather than tried again (the run's process, if it
started, reports; a second one of the same run would stop without dumping anyway).
"""

from __future__ import annotations

import urllib.parse

import requests
import tenacity
from urllib3.exceptions import NewConnectionError

from control.launchers.base import (GONE, RUN_COMMAND, RUNNING, UNKNOWN, Launcher, LaunchError, LaunchRefused,
                                    LaunchSpec, LaunchUnconfirmed)

ACCEPT = "application/vnd.heroku+json; version=3"
TIMEOUT = 15  # seconds per request
ATTEMPTS = 5
RUNNING_STATES = ("starting", "up")


class _Retry(Exception):
    """An answer worth asking again; ``acted`` when Heroku may have done what was asked."""

    def __init__(self, message: str, *, rate_limited: bool = False, acted: bool = False):
        super().__init__(message)
        self.rate_limited = rate_limited
        self.acted = acted


class HerokuLauncher(Launcher):
    def __init__(self, api_url: str, access, *, backoff: float = 1.0, rate_limit_wait: float = 5.0,
                 timeout: float = TIMEOUT):
        """``access.token(resource_id)`` gives a valid OAuth access token for the resource's app."""
        self._api_url = api_url.rstrip("/")
        self._access = access
        self._backoff = backoff
        self._rate_limit_wait = rate_limit_wait  # a spent rate limit refills at ~75 requests a minute
        self._timeout = timeout

    def launch(self, spec: LaunchSpec) -> str:
        token = self._access.token(spec.resource_id)
        app = spec.app or _field(self._call("GET", f"/addons/{spec.resource_id}", token), "app", "id")
        body = {"command": RUN_COMMAND, "attach": False, "type": "run", "time_to_live": spec.time_to_live,
                "env": spec.env()}
        created = self._call("POST", f"/apps/{_quote(app)}/dynos", token, body=body, idempotent=False)
        try:
            return _field(created, "id")
        except LaunchError as e:
            raise LaunchUnconfirmed(f"the Platform API created a dyno but did not say which ({e})") from e

    def state(self, *, resource_id: str, app: str | None, handle: str) -> str:
        try:
            token = self._access.token(resource_id)
            app = app or _field(self._call("GET", f"/addons/{resource_id}", token), "app", "id")
            dyno = self._call("GET", f"/apps/{_quote(app)}/dynos/{_quote(handle)}", token, missing_ok=True)
            return GONE if dyno is None or _field(dyno, "state") not in RUNNING_STATES else RUNNING
        except LaunchError:
            return UNKNOWN

    def _call(self, method: str, path: str, token: str, *, body: dict | None = None, missing_ok: bool = False,
              idempotent: bool = True):
        """One Platform API request, retried while that is safe; LaunchError (or LaunchUnconfirmed) otherwise."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, _Retry) and (idempotent or not e.acted)),
            stop=tenacity.stop_after_attempt(ATTEMPTS),
            wait=self._wait,
            reraise=True,
        )
        try:
            return retrying(self._once, method, path, token, body, missing_ok)
        except _Retry as e:
            if e.acted and not idempotent:
                raise LaunchUnconfirmed(f"{e}: the dyno may have started") from e
            raise LaunchError(f"{e} (gave up after {ATTEMPTS} attempts)") from e

    def _wait(self, state: tenacity.RetryCallState) -> float:
        backoff = tenacity.wait_exponential_jitter(
            multiplier=self._backoff, max=30 * self._backoff, jitter=self._backoff)(state)
        error = state.outcome.exception()
        return max(backoff, self._rate_limit_wait) if getattr(error, "rate_limited", False) else backoff

    def _once(self, method: str, path: str, token: str, body: dict | None, missing_ok: bool):
        headers = {"Accept": ACCEPT, "Authorization": f"Bearer {token}"}
        try:
            answer = requests.request(method, self._api_url + path, json=body, headers=headers, timeout=self._timeout,
                                      allow_redirects=False)
        except requests.RequestException as e:
            raise _Retry(f"the Platform API did not answer {method} {path} ({type(e).__name__})",
                         acted=not _never_sent(e)) from e
        if answer.status_code == 404 and missing_ok:
            return None
        if answer.status_code in (409, 429) or answer.status_code >= 500:
            spent = answer.headers.get("RateLimit-Remaining") == "0"
            raise _Retry(f"the Platform API answered {method} {path} with {_describe(answer)}",
                         rate_limited=answer.status_code == 429 or spent, acted=answer.status_code >= 500)
        if answer.status_code in (401, 403):  # the add-on's token may not do this (Platform API for Partners)
            raise LaunchRefused(f"the Platform API refused {method} {path}: {_describe(answer)}")
        if answer.status_code >= 300:
            raise LaunchError(f"the Platform API refused {method} {path}: {_describe(answer)}")
        try:
            return answer.json()
        except ValueError as e:
            raise _Retry(f"the Platform API answered {method} {path} with a body that is not JSON",
                         acted=True) from e


def _never_sent(error: requests.RequestException) -> bool:
    """Whether the request cannot have reached Heroku: the connection itself failed."""
    return isinstance(error, requests.ConnectTimeout) or isinstance(
        getattr(error.args[0] if error.args else None, "reason", None), NewConnectionError)


def _field(answer, *names: str) -> str:
    """``answer[names[0]][names[1]]…`` as a string; LaunchError if the Platform API's answer lacks it."""
    value = answer
    for name in names:
        value = value.get(name) if isinstance(value, dict) else None
    if not isinstance(value, str) or not value:
        raise LaunchError(f"the Platform API's answer has no {'.'.join(names)}")
    return value


def _describe(answer: requests.Response) -> str:
    """HTTP status and Heroku's own error id and message."""
    try:
        error = answer.json()
        return f"HTTP {answer.status_code} {str(error.get('id'))[:100]}: {str(error.get('message'))[:300]}"
    except (ValueError, AttributeError):
        return f"HTTP {answer.status_code}"


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")
