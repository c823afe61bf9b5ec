"""Logging: human lines on a terminal, one logfmt event per line on a dyno, secrets redacted."""

from __future__ import annotations

import logging
import re
import sys

import structlog

# user:password@ in any URL-shaped text
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s]*:)[^@\s/]+@")
REDACTED = "***"


class Redactor:
    """A structlog processor that hides every configured secret and any URL password."""

    def __init__(self) -> None:
        self.secrets: list[str] = []

    def add(self, values: list[str]) -> None:
        # longest first, so that a secret containing another is hidden whole
        self.secrets = sorted(set(self.secrets) | {v for v in values if len(v) >= 4}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return _URL_PASSWORD.sub(rf"\g<head>{REDACTED}@", text)

    def __call__(self, _logger, _name, event: dict) -> dict:
        return {key: self.scrub(value) if isinstance(value, str) else value for key, value in event.items()}


redactor = Redactor()

# C0 and C1 control characters, DEL, and the bidirectional overrides that reorder what a terminal shows
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every control character escaped (``\\x1b``): a value from storage cannot drive a terminal."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match[0]):02x}" if ord(match[0]) < 256 else f"\\u{ord(match[0]):04x}",
                        text)


def _printable(_logger, _name, event: dict) -> dict:
    return {key: printable(value) if isinstance(value, str) else value for key, value in event.items()}


def configure(*, stream=None) -> None:
    """Human output on a terminal; one logfmt event a line elsewhere (Heroku's log drains parse it)."""
    stream = stream or sys.stderr
    renderer = (
        structlog.dev.ConsoleRenderer(colors=False)
        if stream.isatty()
        else structlog.processors.LogfmtRenderer(key_order=["level", "event"], drop_missing=True)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redactor,
            _printable,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
