"""Storage targets, chosen by URL scheme and imported lazily: file:// never imports boto3 or paramiko."""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from runner.config import Config
from runner.errors import UsageError
from runner.targets.base import Leftover, ObjectInfo, Target, Upload

__all__ = ["Leftover", "ObjectInfo", "Target", "Upload", "open_target"]

_BACKENDS = {"file": "runner.targets.local", "s3": "runner.targets.s3", "sftp": "runner.targets.sftp"}


def open_target(config: Config) -> Target:
    """Connect to the target that ``config.target_url`` names."""
    config.require("target_url")
    parts = urlsplit(config.target_url)
    module = _BACKENDS.get(parts.scheme)
    if module is None:
        raise UsageError(f"REMORA_TARGET_URL scheme {parts.scheme!r} is not file://, s3:// or sftp://")
    return importlib.import_module(module).from_url(parts, config)
