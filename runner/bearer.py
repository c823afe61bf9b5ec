"""Where a bearer token may go, how it is sent there, and how the answer is read (standard library only).

A token (a run's, or the add-on's API token) travels only to an https:// URL, or over plain
http:// to this machine, and never along a redirect: a redirect is an answer, not an address to
send the token to. ``report`` and ``witness`` send through ``request``; the add-on's storage
(``runner.targets.managed``, urllib3) keeps the same rules with ``may_carry`` and ``redirect=False``.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request

LOOPBACK = ("localhost", "127.0.0.1", "::1")
# what urllib raises when no HTTP answer came: refused, reset, timed out, malformed
NO_ANSWER = (OSError, ValueError, http.client.HTTPException)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError with the 3xx code


_OPENER = urllib.request.build_opener(_NoRedirects)


def may_carry(url: str) -> bool:
    """https, or plain http to this machine's loopback: nowhere else may a token travel in clear."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return False
    if not parts.hostname:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK)


def request(url: str, token: str, *, document: dict | None = None, timeout: float):
    """Send ``document`` as a JSON POST (without one, a GET) with the token, following no redirect.

    urllib's answer, to use as a context manager; an error answer (a 3xx too) raises HTTPError,
    no answer one of NO_ANSWER.
    """
    if not may_carry(url):
        raise ValueError("a bearer token goes only to https://, or http:// to this machine")
    headers = {"Authorization": f"Bearer {token}"}
    data = None
    if document is not None:
        data, headers["Content-Type"] = json.dumps(document).encode(), "application/json"
    method = "GET" if data is None else "POST"
    return _OPENER.open(urllib.request.Request(url, data=data, method=method, headers=headers), timeout=timeout)


def problem(error: BaseException) -> str:
    """A request that got no answer, in a few words: the exception's type, and urllib's reason."""
    return type(error).__name__ + (f": {error.reason}" if isinstance(error, urllib.error.URLError) else "")


def json_answer(data: bytes | str, *, most: int) -> object | None:
    """An answer's body as JSON; None if it is longer than ``most``, not JSON, or nested deeper than json parses."""
    if len(data) > most:
        return None
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None
