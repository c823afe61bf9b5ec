"""Storage targets, chosen by URL scheme and imported lazily: file:// never imports boto3 or paramiko.

Without REMORA_TARGET_URL, the add-on's variables choose the add-on's own storage (``managed``).

Every target comes wrapped in ``RetryingTarget``: retries live there, not in the backends.
"""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from runner.config import Config
from runner.errors import UsageError
from runner.targets.base import Leftover, ObjectInfo, Target, Upload
from runner.targets.retrying import RetryingTarget, RetryPolicy

__all__ = ["Leftover", "ObjectInfo", "Target", "Upload", "open_target"]

_BACKENDS = {"file": "runner.targets.local", "s3": "runner.targets.s3", "sftp": "runner.targets.sftp"}


def open_target(config: Config) -> Target:
    """Connect to the target that ``config.target_url`` names (else the add-on's storage), with retries around it."""
    config.require("target_url")
    policy = RetryPolicy(attempts=config.retry_attempts, backoff_max=config.retry_backoff_max)
    if config.add_on_storage:
        backend = importlib.import_module("runner.targets.managed").from_config(config)
        return RetryingTarget(backend, policy)
    parts = urlsplit(config.target_url)
    module = _BACKENDS.get(parts.scheme)
    if module is None:
        raise UsageError(f"REMORA_TARGET_URL scheme {parts.scheme!r} is not file://, s3:// or sftp://")
    connect = importlib.import_module(module).from_url
    backend = policy.call(connect, parts, config, what=f"connect to {config.target_url}")
    return RetryingTarget(backend, policy)
