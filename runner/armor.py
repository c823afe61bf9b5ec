"""gpg keys pasted where their line breaks were lost, given them back.

The Deploy to Heroku button asks for each config var in a single-line field, and a browser strips
the line breaks out of whatever is pasted there (other forms turn them into spaces). An armored
gpg key then arrives as one line, which gpg does not read. Its body is base64 and a last `=CRC`
line, so the lines can be rebuilt exactly; a block that still has line breaks, or that carries
headers, is left as it is. (SSH private keys need none of this: their parser reads them flat.)
"""

from __future__ import annotations

import re

_BLOCK = re.compile(r"-----BEGIN (?P<label>PGP [A-Z ]+)-----(?P<body>.*?)-----END (?P=label)-----", re.DOTALL)
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_PGP_CRC = re.compile(r"=[A-Za-z0-9+/]{4}")


def refold(text: str) -> str:
    """``text`` with each BEGIN/END block that lost its line breaks rebuilt; everything else as it was."""
    return _BLOCK.sub(_refold_block, text)


def _refold_block(match: re.Match) -> str:
    label, body = match["label"], match["body"]
    if "\n" in body.strip():
        return match[0]  # it has its lines
    joined = "".join(body.split())
    crc = ""
    if _PGP_CRC.fullmatch(joined[-5:]) and len(joined[:-5]) % 4 == 0:
        joined, crc = joined[:-5], joined[-5:]
    if not joined or len(joined) % 4 or not _BASE64.fullmatch(joined):
        return match[0]  # headers, or not base64: nothing to rebuild with certainty
    lines = [joined[i:i + 64] for i in range(0, len(joined), 64)]
    # an empty line ends the armor's (absent) headers
    return "\n".join([f"-----BEGIN {label}-----", "", *lines, *([crc] if crc else []), f"-----END {label}-----"])
