"""What a request carries, read within bounds: no body, parameter or number gives a 500.

Bodies are read only after the credentials were checked, and never past MAX_BODY (the app
answers 413 to a request that says it is longer, before anything is read).
"""

from __future__ import annotations

import json
import re

from flask import abort, request

MAX_BODY = 64 * 1024  # bytes: the largest request any route takes is a few hundred
_NUMBER = re.compile(r"[0-9]{1,12}")


def json_object() -> dict:
    """The request's body as a JSON object; 400 for anything else (413 past MAX_BODY)."""
    data = request.get_data(cache=False)  # stops at the app's MAX_CONTENT_LENGTH (413 if a length says more)
    if len(data) >= MAX_BODY:  # a body of unsaid length (chunked) is cut there, not refused: refuse it here
        abort(413, f"the body is {MAX_BODY} bytes or longer")
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the interpreter's stack
        abort(400, "the body is not JSON")
    if not isinstance(value, dict):
        abort(400, "the body must be a JSON object")
    return value


def whole_number(name: str, default: int, *, least: int, most: int) -> int:
    """A query parameter from ``least`` to ``most``; 400 naming it otherwise."""
    text = request.args.get(name)
    if text is None:
        return default
    if not _NUMBER.fullmatch(text) or not least <= int(text) <= most:
        abort(400, f"{name} must be a whole number from {least} to {most}")
    return int(text)


def is_whole_number(text: str) -> bool:
    """Whether ``text`` is ASCII digits, a dozen at most (``"²".isdigit()`` is true, and int() refuses it)."""
    return _NUMBER.fullmatch(text) is not None


def is_count(value, *, most: int) -> bool:
    """Whether a JSON value is a whole number from 0 to ``most`` (``true`` is an int to Python, not a count)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= most


def text(value, *, name: str, pattern: str, most: int = 100) -> str:
    """``value`` if it is a string matching ``pattern`` (at most ``most`` characters); 400 naming it otherwise."""
    if not isinstance(value, str) or len(value) > most or not re.fullmatch(pattern, value):
        abort(400, f"{name} is missing or malformed")
    return value
