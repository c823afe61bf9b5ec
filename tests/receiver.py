"""A small HTTP server that records the JSON bodies POSTed to it (webhooks, runner reports)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.servers.util import serving


class Receiver:
    def __init__(self, server: ThreadingHTTPServer):
        self.url = f"http://127.0.0.1:{server.server_port}"
        self.requests: list[dict] = []  # {"path", "headers", "body"}
        self.status = 200  # what it answers

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
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    record = Receiver(server)
    with serving(server):
        yield record
