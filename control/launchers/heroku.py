"""The heroku launcher: a one-off dyno on the customer's helper app, through the Platform API.

A thin client over ``requests`` rather than heroku3: heroku3 (last released 2023) fails to
import on a fresh install without ``six``, cannot send ``time_to_live`` or ``type``, prints to
stdout and never retries.
"""

from __future__ import annotations

import urllib.parse

import requests
import tenacity

from control.launchers.base import GONE, RUN_COMMAND, RUNNING, UNKNOWN, Launcher, LaunchError, LaunchSpec

ACCEPT = "application/vnd.heroku+json; version=3"
TIMEOUT = 15  # seconds per request
ATTEMPTS = 5
RUNNING_STATES = ("starting", "up")


class _Retry(Exception):
    """An answer worth asking again: 429 (rate limit), 409 (conflict), 5xx, or no answer at all."""

    def __init__(self, message: str, *, rate_limited: bool = False):
        super().__init__(message)
        self.rate_limited = rate_limited


class HerokuLauncher(Launcher):
    def __init__(self, api_url: str, access, *, backoff: float = 1.0, rate_limit_wait: float = 5.0):
        """``access.token(resource_id)`` gives a valid OAuth access token for the resource's app."""
        self._api_url = api_url.rstrip("/")
        self._access = access
        self._backoff = backoff
        self._rate_limit_wait = rate_limit_wait  # a spent rate limit refills at ~75 requests a minute

    def launch(self, spec: LaunchSpec) -> str:
        token = self._access.token(spec.resource_id)
        app = spec.app or self._call("GET", f"/addons/{spec.resource_id}", token)["app"]["id"]
        body = {"command": RUN_COMMAND, "attach": False, "type": "run", "time_to_live": spec.time_to_live,
                "env": spec.env()}
        return self._call("POST", f"/apps/{_quote(app)}/dynos", token, body=body)["id"]

    def state(self, *, resource_id: str, app: str | None, handle: str) -> str:
        try:
            token = self._access.token(resource_id)
            app = app or self._call("GET", f"/addons/{resource_id}", token)["app"]["id"]
            dyno = self._call("GET", f"/apps/{_quote(app)}/dynos/{_quote(handle)}", token, missing_ok=True)
        except LaunchError:
            return UNKNOWN
        return GONE if dyno is None or dyno["state"] not in RUNNING_STATES else RUNNING

    def _call(self, method: str, path: str, token: str, *, body: dict | None = None, missing_ok: bool = False):
        """One Platform API request, retried on 429, 409, 5xx and network errors; LaunchError otherwise."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Retry),
            stop=tenacity.stop_after_attempt(ATTEMPTS),
            wait=self._wait,
            reraise=True,
        )
        try:
            return retrying(self._once, method, path, token, body, missing_ok)
        except _Retry as e:
            raise LaunchError(f"{e} (gave up after {ATTEMPTS} attempts)") from e

    def _wait(self, state: tenacity.RetryCallState) -> float:
        backoff = tenacity.wait_exponential_jitter(
            multiplier=self._backoff, max=30 * self._backoff, jitter=self._backoff)(state)
        error = state.outcome.exception()
        return max(backoff, self._rate_limit_wait) if getattr(error, "rate_limited", False) else backoff

    def _once(self, method: str, path: str, token: str, body: dict | None, missing_ok: bool):
        headers = {"Accept": ACCEPT, "Authorization": f"Bearer {token}"}
        try:
            answer = requests.request(method, self._api_url + path, json=body, headers=headers, timeout=TIMEOUT)
        except requests.RequestException as e:
            raise _Retry(f"the Platform API did not answer {method} {path} ({type(e).__name__})") from e
        if answer.status_code == 404 and missing_ok:
            return None
        if answer.status_code == 429 or answer.status_code == 409 or answer.status_code >= 500:
            spent = answer.headers.get("RateLimit-Remaining") == "0"
            raise _Retry(f"the Platform API answered {method} {path} with {_describe(answer)}",
                         rate_limited=answer.status_code == 429 or spent)
        if answer.status_code >= 300:
            raise LaunchError(f"the Platform API refused {method} {path}: {_describe(answer)}")
        return answer.json()


def _describe(answer: requests.Response) -> str:
    """HTTP status and Heroku's own error id and message."""
    try:
        error = answer.json()
        return f"HTTP {answer.status_code} {error.get('id')}: {error.get('message')}"
    except ValueError:
        return f"HTTP {answer.status_code}"


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")
