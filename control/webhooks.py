"""Alert webhooks: where a URL may point, and one POST to it that cannot hang, follow or be led astray.

A webhook URL is the customer's, so it is hostile: it may name the control plane's own network
(127.0.0.1, 10.x, the cloud's metadata service at 169.254.169.254) by a name that resolves there,
answer with a redirect, or drip its answer a byte at a time. So the host is resolved here, every
address is checked, and the connection goes to the checked address itself (a second lookup could
answer differently); the whole exchange has one deadline; only the status line is read; a
redirect is a failure. Outside development only https is allowed, and only public addresses.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import contextlib
import json
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable

MAX_URL = 2000
MAX_ANSWER = 8192  # bytes read at most: the status line is all that counts
USER_AGENT = "remora-control (alert webhook)"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

Resolver = Callable[..., list]


class WebhookError(ValueError):
    """A webhook that may not be used or could not be told; the message says why, never the URL's secrets."""


@dataclasses.dataclass(frozen=True)
class Policy:
    """Where webhooks may go: ``development`` adds http:// and this machine's loopback addresses."""

    development: bool = False
    resolve: Resolver = socket.getaddrinfo  # tests hand in their own name service

    def check_url(self, url) -> urllib.parse.SplitResult:
        """The URL's parts, if its form is allowed (no lookup); WebhookError otherwise."""
        if not isinstance(url, str) or len(url) > MAX_URL or not url.isascii() or not url.isprintable() \
                or " " in url:
            raise WebhookError(f"alert webhook must be a URL of at most {MAX_URL} ASCII characters, without spaces")
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError as e:
            raise WebhookError(f"alert webhook is not a URL ({e})") from e
        schemes = ("https", "http") if self.development else ("https",)
        if parts.scheme not in schemes or not parts.hostname:
            raise WebhookError(f"alert webhook must be an {' or '.join(s + '://' for s in schemes)} URL")
        if parts.username is not None or parts.password is not None:
            raise WebhookError("alert webhook must not hold a user name or password (put a secret in its path)")
        return parts

    def addresses(self, host: str, port: int) -> list[str]:
        """Every address ``host`` resolves to, if all are allowed; WebhookError otherwise."""
        try:
            found = self.resolve(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as e:
            raise WebhookError(f"alert webhook's host {host!r} does not resolve ({type(e).__name__})") from e
        addresses = list(dict.fromkeys(info[4][0] for info in found))
        if not addresses:
            raise WebhookError(f"alert webhook's host {host!r} does not resolve")
        for address in addresses:
            if (why := self._refusal(address)) is not None:
                raise WebhookError(f"alert webhook's host {host!r} resolves to {address}, {why}")
        return addresses

    def _refusal(self, address: str) -> str | None:
        ip = ipaddress.ip_address(address.split("%")[0])
        for inner in reversed(_embedded(ip)):  # an IPv4 address inside says most
            if self.development and inner.is_loopback:
                continue
            if inner.is_multicast or not inner.is_global:
                kind = next((name for name in ("loopback", "unspecified", "link_local", "multicast", "reserved",
                                               "private") if getattr(inner, f"is_{name}")), "not public")
                return f"a {kind.replace('_', '-')} address: not allowed"
        return None

    def validate(self, url) -> str:
        """``url`` if a webhook may be sent there now (its host is resolved and checked)."""
        parts = self.check_url(url)
        self.addresses(parts.hostname, parts.port or _default_port(parts.scheme))
        return url


def _embedded(ip) -> list:
    """The address and any IPv4 address inside it (mapped, 6to4, NAT64): each must be allowed."""
    inner = [ip]
    if ip.version == 6:
        if ip.ipv4_mapped:
            inner.append(ip.ipv4_mapped)
        if ip.sixtofour:
            inner.append(ip.sixtofour)
        if ip in _NAT64:
            inner.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return inner


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def post(url: str, body: dict, *, policy: Policy, deadline: float) -> int:
    """POST ``body`` as JSON within ``deadline`` seconds in all; the status, or WebhookError (not 2xx is one)."""
    end = time.monotonic() + deadline
    parts = policy.check_url(url)
    port = parts.port or _default_port(parts.scheme)
    address = policy.addresses(parts.hostname, port)[0]
    data = json.dumps(body).encode()
    path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    host = parts.netloc.rpartition("@")[2]
    request = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n")
    try:
        status = _exchange(address, port, request.encode() + data, tls_host=parts.hostname
                           if parts.scheme == "https" else None, end=end)
    except TimeoutError as e:
        raise WebhookError(no_answer(deadline)) from e
    except (OSError, ssl.SSLError) as e:
        raise WebhookError(f"could not be reached ({type(e).__name__}: {e.strerror or e})") from e
    if 300 <= status < 400:
        raise WebhookError(f"answered HTTP {status}: redirects are not followed")
    if not 200 <= status < 300:
        raise WebhookError(f"answered HTTP {status}")
    return status


def no_answer(deadline: float) -> str:
    """What a webhook that ran out of ``deadline`` seconds is said to have done, however it ran out."""
    return f"no answer within {round(deadline, 1):g} s"  # a deadline of 1.99997 s reads as 2 s


def _cut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _exchange(address: str, port: int, request: bytes, *, tls_host: str | None, end: float) -> int:
    """Send ``request`` to exactly ``address``; the answer's status code. Every step gets the time left."""

    def left() -> float:
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        return remaining

    with socket.create_connection((address, port), timeout=left()) as raw:
        # a TLS handshake reads many times with one timeout: the watchdog cuts it off at the deadline
        watchdog = threading.Timer(left(), _cut, (raw,))
        watchdog.daemon = True
        watchdog.start()
        try:
            sock = ssl.create_default_context().wrap_socket(raw, server_hostname=tls_host) if tls_host else raw
            sock.settimeout(left())
            sock.sendall(request)
            answer = b""
            while b"\r\n" not in answer and len(answer) < MAX_ANSWER:
                sock.settimeout(left())
                chunk = sock.recv(MAX_ANSWER - len(answer))
                if not chunk:
                    break
                answer += chunk
            if b"\r\n" not in answer:
                left()  # cut off by the watchdog: a timeout
        except OSError:
            left()  # past the deadline, the watchdog's cut is a timeout
            raise
        finally:
            watchdog.cancel()
    line = answer.partition(b"\r\n")[0].split()
    if len(line) < 2 or not line[0].startswith(b"HTTP/1.") or not line[1].isdigit() or len(line[1]) != 3:
        raise OSError(f"not an HTTP answer: {answer[:40]!r}")
    return int(line[1])
