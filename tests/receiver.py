"""Small HTTP servers for webhooks and runner reports: one that records what is POSTed, one that answers
the same to every request, one that drips."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.servers.util import serving


class Receiver:
    def __init__(self, server: ThreadingHTTPServer):
        self.url = f"http://127.0.0.1:{server.server_port}"
        self.requests: list[dict] = []  # {"path", "headers", "body"}
        self.status = 200  # what it answers
        self.headers: dict[str, str] = {}  # and with these (a Location, for a redirect)

    def bodies(self) -> list[dict]:
        return [r["body"] for r in self.requests]


@contextlib.contextmanager
def receiver() -> Iterator[Receiver]:
    """Start a receiver on a free loopback port; stop it after the block."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            record.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
            self.send_response(record.status)
            for name, value in record.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):  # where a followed redirect would land
            record.requests.append({"path": self.path, "headers": dict(self.headers), "body": None})
            self.send_response(record.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    record = Receiver(server)
    with serving(server):
        yield record


@contextlib.contextmanager
def answering(status: int, body: bytes, headers: dict[str, str] | None = None):
    """An HTTP server on a free loopback port that answers every request with ``status`` and ``body``."""
    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(status)
            for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_DELETE = _answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with serving(server):
        yield f"http://127.0.0.1:{server.server_port}"


class Drip:
    """A server that takes a request, then answers one byte every ``every`` seconds, ``count`` bytes in all."""

    def __init__(self, sock: socket.socket, *, every: float, count: int):
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
        self.every, self.count = every, count
        self.connected = threading.Event()  # a request came
        self.dropped = threading.Event()  # the client hung up before the answer was whole
        self._sock = sock

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed: the block ended
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            self.connected.set()
            try:
                for byte in (b"HTTP/1.1 200 OK" + b" " * self.count)[:self.count]:  # never a whole line
                    conn.sendall(bytes([byte]))
                    time.sleep(self.every)
            except OSError:
                self.dropped.set()


@contextlib.contextmanager
def dripping(*, every: float = 0.5, count: int = 120) -> Iterator[Drip]:
    """A server on a free loopback port whose answer drips far slower than any deadline; closed after the block."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        drip = Drip(sock, every=every, count=count)
        threading.Thread(target=drip.serve, daemon=True).start()
        yield drip
        sock.shutdown(socket.SHUT_RDWR)
