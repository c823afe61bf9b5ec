"""The control plane's configuration: read from the environment in one place, checked at start."""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from collections.abc import Mapping

from runner import bearer

DEFAULT_HEROKU_API_URL = "https://api.heroku.com"
DEFAULT_HEROKU_ID_URL = "https://id.heroku.com"

# variable → (Flask config key, default); numbers are seconds unless named otherwise
_TEXT = {
    "REMORA_SECRET_KEY": ("SECRET_KEY", None),
    "DATABASE_URL": ("DATABASE_URL", None),
    "REMORA_ENV": ("ENV", "production"),
    "REMORA_LAUNCHER": ("LAUNCHER", "local"),
    "REMORA_CONTROL_URL": ("CONTROL_URL", None),
    "HEROKU_API_URL": ("HEROKU_API_URL", DEFAULT_HEROKU_API_URL),
    "HEROKU_ID_URL": ("HEROKU_ID_URL", DEFAULT_HEROKU_ID_URL),
    "HEROKU_ADDON_ID": ("HEROKU_ADDON_ID", None),
    "HEROKU_ADDON_PASSWORD": ("HEROKU_ADDON_PASSWORD", None),
    "HEROKU_SSO_SALT": ("HEROKU_SSO_SALT", None),
    "HEROKU_OAUTH_CLIENT_SECRET": ("HEROKU_OAUTH_CLIENT_SECRET", None),
    "REMORA_STORAGE_URL": ("STORAGE_URL", None),
    "REMORA_STORAGE_ENDPOINT_URL": ("STORAGE_ENDPOINT_URL", None),
    "REMORA_STORAGE_REGION": ("STORAGE_REGION", None),
    "REMORA_STORAGE_ACCESS_KEY_ID": ("STORAGE_ACCESS_KEY_ID", None),
    "REMORA_STORAGE_SECRET_ACCESS_KEY": ("STORAGE_SECRET_ACCESS_KEY", None),
}
# variable → (Flask config key, default); whole days, kept as a timedelta
MAX_DAYS = 36500
_DAYS = {
    "REMORA_STORAGE_LOCK_DAYS": ("STORAGE_LOCK", None),
    "REMORA_STORAGE_GRACE_DAYS": ("STORAGE_GRACE", 30),
}
_NUMBERS = {
    "REMORA_RUN_TTL": ("RUN_TTL", 4 * 3600),
    "REMORA_LOST_GRACE": ("LOST_GRACE", 300),
    "REMORA_CLOCK_INTERVAL": ("CLOCK_INTERVAL", 10),
    "REMORA_WEBHOOK_TIMEOUT": ("WEBHOOK_TIMEOUT", 10),
    "REMORA_TRIGGERS_PER_HOUR": ("TRIGGERS_PER_HOUR", 12),  # a count: API and dashboard runs per resource
    "REMORA_HELPER_SILENCE": ("HELPER_SILENCE", 3600),  # a pulled resource's helper app asks every 10 minutes
}
LAUNCHERS = ("local", "heroku")
ENVIRONMENTS = ("production", "development")
# the control plane's own secrets: never handed to a run's process
SECRET_VARIABLES = ("REMORA_SECRET_KEY", "REMORA_PREVIOUS_SECRET_KEYS", "DATABASE_URL", "HEROKU_ADDON_PASSWORD",
                    "HEROKU_SSO_SALT", "HEROKU_OAUTH_CLIENT_SECRET", "REMORA_STORAGE_SECRET_ACCESS_KEY")
# the add-on's storage, the control plane's alone (REMORA_STORAGE_TIMEOUT is the runner's own, not one of these)
STORAGE_VARIABLES = (*(v for v in _TEXT if v.startswith("REMORA_STORAGE_")), *_DAYS)
KEY_BYTES = 32  # 256 bits
GENERATE_KEY = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
MAX_NUMBER = 10**9


class ConfigError(Exception):
    """A missing or invalid setting; the message names every variable at fault."""


def from_env(env: Mapping[str, str]) -> dict:
    """Flask config keys from the environment, with defaults; raises ConfigError on bad numbers."""
    config, problems = {}, []
    for variable, (key, default) in _TEXT.items():
        config[key] = (env.get(variable) or "").strip() or default
    for variable, (key, default) in _NUMBERS.items():
        text = (env.get(variable) or "").strip()
        good = re.fullmatch(r"[0-9]{1,10}", text) is not None and 0 < int(text) <= MAX_NUMBER
        if text and not good:
            problems.append(f"{variable} must be a whole number from 1 to {MAX_NUMBER}, not {text!r}")
        config[key] = int(text) if good else default
    for variable, (key, default) in _DAYS.items():
        text = (env.get(variable) or "").strip()
        good = re.fullmatch(r"[0-9]{1,5}", text) is not None and int(text) <= MAX_DAYS
        if text and not good:
            problems.append(f"{variable} must be a whole number of days up to {MAX_DAYS}, not {text!r}")
        days = int(text) if good else default
        config[key] = None if days is None else datetime.timedelta(days=days)
    # decrypt-only keys, newest first: what REMORA_SECRET_KEY was before a rotation (Flask's name for them)
    previous = (env.get("REMORA_PREVIOUS_SECRET_KEYS") or "").strip()
    config["SECRET_KEY_FALLBACKS"] = re.split(r"[\s,]+", previous) if previous else []
    if problems:
        raise ConfigError("; ".join(problems))
    return config


def check(config: Mapping) -> None:
    """Refuse to start without what every process needs."""
    problems = []
    if not config.get("SECRET_KEY"):
        problems.append("REMORA_SECRET_KEY is not set (it signs sessions and encrypts stored secrets)")
    elif (weak := key_weakness(config["SECRET_KEY"])) is not None:
        problems.append(f"REMORA_SECRET_KEY {weak}: make one with {GENERATE_KEY}")
    if not config.get("DATABASE_URL"):
        problems.append("DATABASE_URL is not set (the control plane's PostgreSQL)")
    if isinstance(config.get("LAUNCHER"), str) and config["LAUNCHER"] not in LAUNCHERS:
        problems.append(f"REMORA_LAUNCHER {config['LAUNCHER']!r} is not one of {', '.join(LAUNCHERS)}")
    if config.get("ENV", "production") not in ENVIRONMENTS:
        problems.append(f"REMORA_ENV {config['ENV']!r} is not one of {', '.join(ENVIRONMENTS)}")
    problems += _storage_problems(config)
    if problems:
        raise ConfigError("; ".join(problems))


def _storage_problems(config: Mapping) -> list[str]:
    """The add-on's storage is optional, but all of a piece: a bucket, its credentials, a lock of a day or more."""
    needed = ("STORAGE_URL", "STORAGE_ACCESS_KEY_ID", "STORAGE_SECRET_ACCESS_KEY")
    if not any(config.get(key) for key in needed):
        return []
    problems = [f"REMORA_{key} is not set (the add-on's storage needs it)" for key in needed if not config.get(key)]
    url = config.get("STORAGE_URL")
    if url and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?", url):
        problems.append(f"REMORA_STORAGE_URL {url!r} is not s3://BUCKET/PREFIX")
    lock = config.get("STORAGE_LOCK")
    if lock is not None and lock <= datetime.timedelta(0):
        problems.append("REMORA_STORAGE_LOCK_DAYS must be 1 or more (unset: no Object Lock)")
    return problems


def key_weakness(key: str) -> str | None:
    """Why ``key`` cannot be REMORA_SECRET_KEY, or None: it must be 32 random bytes or more, in hex or base64.

    A key is decoded as its generator wrote it (hex digits first, then base64 or base64url), so its
    length counts bits, not characters. Random bytes repeat little: 32 of them hold 23 distinct
    values or more in a million draws, while a pattern repeated (``passwordpassword…``) holds few.
    """
    raw = _decoded(key)
    if raw is None:
        return "is not hex or base64"
    if len(raw) < KEY_BYTES:
        return f"holds {len(raw) * 8} bits, fewer than {KEY_BYTES * 8}"
    if len(set(raw)) < min(len(raw), 256) // 2:
        return "repeats itself: it is not random"
    return None


def _decoded(key: str) -> bytes | None:
    if re.fullmatch(r"(?:[0-9a-fA-F]{2})+", key):
        return bytes.fromhex(key)
    if not re.fullmatch(r"[A-Za-z0-9+/_-]+=*", key):
        return None
    text = key.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def launching(config: Mapping) -> None:
    """Refuse to launch runs without a URL they may report to: https, or http to this machine."""
    url = config.get("CONTROL_URL")
    if not url:
        raise ConfigError("REMORA_CONTROL_URL is not set (the runs report to it)")
    if not bearer.may_carry(url):
        raise ConfigError(f"REMORA_CONTROL_URL {url!r} is not an https:// URL (http:// only to localhost): "
                          "the runs send their token there")


def development(config: Mapping) -> bool:
    return config.get("ENV") == "development"
