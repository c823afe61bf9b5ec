"""A TCP proxy on a free loopback port that fails on purpose, between the runner and a real server.

Each new connection takes the next fault of the proxy's plan (``proxy.plan(Cut(...), ...)``);
once the plan is used up, connections pass untouched. With ``opens_with`` (b"SSH-" in front of
sshd), a connection that does not open with those bytes takes none: a stray client of an earlier
test, say, whose server's port this proxy now has, must not use up a fault meant for the runner.
The faults:

    Cut(after)      forward ``after`` bytes from the client (``down=True``: from the server),
                    then close both sides
    Reset(after)    the same, but end with a TCP reset (SO_LINGER 0)
    Stall(after)    forward ``after`` bytes, then nothing more in either direction, holding the
                    connection open until the client gives up
    Refuse()        accept, then reset at once, before a byte passes
    Redirect(port)  forward this connection to another server (e.g. one with another host key)

With ``http=True`` the proxy reads each HTTP request's head and names its S3 operation
("UploadPart 2", "CompleteMultipartUpload"...) or, in front of the control plane, the add-on's
storage request ("storage grant 2", "storage complete"...). Rules (``proxy.answer(...)``) then
answer a chosen operation with an error instead of the server, drop the connection before the
server hears of it, or pass it on and lose the reply; a ``Hook`` does something first and passes the
request on. Everything else is forwarded, one request per connection (the proxy asks for
``Connection: close``).
``proxy.rate`` slows what clients send to that many bytes a second, to keep an upload running.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from tests.servers.util import free_port

CHUNK = 64 * 1024
OPENING_SECONDS = 10  # how long a client may take to send ``opens_with``


@dataclasses.dataclass(frozen=True)
class Cut:
    after: int
    down: bool = False  # count the bytes the server sends (a download) instead


@dataclasses.dataclass(frozen=True)
class Reset:
    after: int
    down: bool = False


@dataclasses.dataclass(frozen=True)
class Stall:
    after: int
    down: bool = False


@dataclasses.dataclass(frozen=True)
class Refuse:
    pass


@dataclasses.dataclass(frozen=True)
class Redirect:
    port: int


@dataclasses.dataclass
class Answer:
    """Answer ``operation`` ``times`` times with an error (``status=None``: lose the reply; ``UNREACHABLE``:
    reset the connection before the server hears of the request)."""

    operation: str
    status: int | None
    code: str = ""
    times: int = 1


UNREACHABLE = 0


@dataclasses.dataclass
class Hook:
    """Call ``action()`` when ``operation`` comes, once, then pass the request on."""

    operation: str
    action: Callable[[], None]
    times: int = 1


class FaultProxy:
    """Forwards 127.0.0.1:port to 127.0.0.1:upstream, with the faults it is told to make."""

    def __init__(self, upstream: int, *, http: bool = False, opens_with: bytes = b""):
        self.upstream = upstream
        self.http = http
        self.opens_with = opens_with
        self.port = free_port()
        self.rate: float | None = None  # bytes a second from the client, None: as fast as it goes
        self.connections = 0
        self.fired: list = []  # the faults and rules that took effect, in order
        self.expected = 0  # how many should have: every fault planned, every answer's times
        self.operations: list[str] = []  # every S3 operation seen, in http mode
        self.stalled = threading.Event()  # set when a Stall begins
        self._plan: deque = deque()
        self._rules: list[Answer] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._closed = False

    def plan(self, *faults) -> None:
        """The faults for the next connections, in order."""
        with self._lock:
            self._plan.extend(faults)
            self.expected += len(faults)

    def answer(self, *rules: Answer | Hook) -> None:
        """Answer chosen operations with errors, or lose their replies, or hook them (http mode)."""
        with self._lock:
            self._rules.extend(rules)
            self.expected += sum(rule.times for rule in rules)

    def __enter__(self) -> FaultProxy:
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                _close(sock)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._sockets.append(client)
            handler = self._serve_http if self.http else self._serve
            threading.Thread(target=handler, args=(client,), name="proxy-conn", daemon=True).start()

    def _next_fault(self, client: socket.socket):
        """The plan's next fault, if ``client`` opens with ``opens_with`` (SSH clients send it at once)."""
        deadline, head = time.monotonic() + OPENING_SECONDS, b""
        client.settimeout(OPENING_SECONDS)
        with contextlib.suppress(OSError):
            while len(head) < len(self.opens_with) and time.monotonic() < deadline:
                peeked = client.recv(len(self.opens_with), socket.MSG_PEEK)
                if not peeked:
                    break  # closed before a word
                if peeked == head:
                    time.sleep(0.01)  # the rest is on its way
                head = peeked
        client.settimeout(None)
        if not head.startswith(self.opens_with):
            return None
        with self._lock:
            return self._plan.popleft() if self._plan else None

    def _open_upstream(self, port: int) -> socket.socket:
        upstream = socket.create_connection(("127.0.0.1", port))
        with self._lock:
            self._sockets.append(upstream)
        return upstream

    # --- plain TCP ------------------------------------------------------------------------------

    def _serve(self, client: socket.socket) -> None:
        fault = self._next_fault(client)
        if isinstance(fault, Refuse):
            self._fire(fault)
            _reset(client)
            return
        if isinstance(fault, Redirect):
            self._fire(fault)
        upstream = self._open_upstream(fault.port if isinstance(fault, Redirect) else self.upstream)
        frozen = threading.Event()
        up, down = (client, upstream), (upstream, client)
        watched, other = (down, up) if getattr(fault, "down", False) else (up, down)
        pump_other = functools.partial(self._pump, *other, frozen=frozen, throttle=other == up)
        threading.Thread(target=pump_other, daemon=True).start()
        if not self._pump(*watched, limit=getattr(fault, "after", None), throttle=watched == up):
            return  # the connection ended before the fault's moment came
        self._fire(fault)
        if isinstance(fault, Stall):
            frozen.set()  # hold both sockets open, silent; the client gives up, or the proxy closes
            self.stalled.set()
            return
        for sock in (client, upstream):
            _reset(sock) if isinstance(fault, Reset) else _close(sock)

    def _fire(self, fault) -> None:
        with self._lock:
            self.fired.append(fault)

    def _pump(self, source, sink, *, limit=None, throttle=False, frozen: threading.Event | None = None) -> bool:
        """Copy until EOF (and pass the EOF on), or until ``limit`` bytes have passed: then
        return True at once. Once ``frozen`` is set, nothing more is passed."""
        moved = 0
        try:
            while limit is None or moved < limit:
                data = source.recv(CHUNK if limit is None else min(CHUNK, limit - moved))
                if not data or (frozen is not None and frozen.is_set()):
                    break
                sink.sendall(data)
                moved += len(data)
                if throttle and self.rate:
                    time.sleep(len(data) / self.rate)
        except OSError:
            return False
        if limit is not None and moved >= limit:
            return True
        if frozen is None or not frozen.is_set():
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
        return False

    # --- HTTP (S3) ------------------------------------------------------------------------------

    def _serve_http(self, client: socket.socket) -> None:
        head, body = _read_head(client)
        if head is None:
            _close(client)
            return
        operation = _operation(head)
        with self._lock:
            self.operations.append(operation)
            rule = next((r for r in self._rules if r.operation == operation and r.times > 0), None)
            if rule is not None:
                rule.times -= 1
                self.fired.append(rule)
        if isinstance(rule, Hook):
            rule.action()
            rule = None
        if rule is not None and rule.status == UNREACHABLE:
            _reset(client)
            return
        if rule is not None and rule.status is not None:
            _discard(client, body, _content_length(head))
            client.sendall(_error_response(rule.status, rule.code))
            _close(client)
            return
        upstream = self._open_upstream(self.upstream)
        upstream.sendall(_closing(head) + body)
        threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
        if rule is not None:  # lose the reply: the server has acted once it answers; the client never hears
            upstream.recv(CHUNK)
            _reset(client)
            return
        self._pump(upstream, client)  # until the server closes, after its answer
        _close(client)


def _read_head(client: socket.socket) -> tuple[bytes | None, bytes]:
    """The request's head (up to the blank line) and any body bytes read with it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(CHUNK)
        if not chunk:
            return None, b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", body


def _operation(head: bytes) -> str:
    """The S3 operation a request is, by its method and query, e.g. 'UploadPart 2', or the add-on's storage
    request, by its path, e.g. 'storage grant 2'."""
    method, target = head.split(b"\r\n", 1)[0].decode().split(" ")[:2]
    path = urlsplit(target).path
    if path.startswith("/api/v1/"):
        return _control_operation(method, path)
    query = parse_qs(urlsplit(target).query, keep_blank_values=True)
    if "partNumber" in query:
        return f"UploadPart {query['partNumber'][0]}"
    if "uploads" in query:
        return "CreateMultipartUpload" if method == "POST" else "ListMultipartUploads"
    if "uploadId" in query:
        return {"POST": "CompleteMultipartUpload", "DELETE": "AbortMultipartUpload"}.get(method, "ListParts")
    if "list-type" in query:
        return "ListObjectsV2"
    plain = {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}
    return plain.get(method, method)


def _control_operation(method: str, path: str) -> str:
    if "/storage/" not in path:
        return "event" if path.endswith("/events") else f"{method} {path}"
    tail = path.split("/storage/", 1)[1].split("/")
    if tail[0] == "objects":
        return "storage manifest" if method == "PUT" else "storage read"
    if len(tail) == 1:
        return "storage start"
    if method == "DELETE":
        return "storage abort"
    return f"storage grant {tail[3]}" if tail[2] == "parts" else f"storage {tail[2]}"


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def _discard(client: socket.socket, already: bytes, length: int) -> None:
    """Read the request's body, as a server does before it answers."""
    left = length - len(already)
    while left > 0:
        chunk = client.recv(min(CHUNK, left))
        if not chunk:
            return
        left -= len(chunk)


def _closing(head: bytes) -> bytes:
    """The head, asking the server to close the connection after its answer."""
    lines = [line for line in head.split(b"\r\n") if line and not line.lower().startswith(b"connection:")]
    return b"\r\n".join(lines + [b"Connection: close"]) + b"\r\n\r\n"


def _error_response(status: int, code: str) -> bytes:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>injected by the test proxy</Message><RequestId>fault</RequestId></Error>"
    ).encode()
    head = (
        f"HTTP/1.1 {status} {code}\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return head + body


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset instead of a clean end."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # wake a pump blocked in recv() on this socket: until it lets go, close() does nothing
        sock.shutdown(socket.SHUT_RD)
    sock.close()
