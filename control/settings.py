"""The control plane's configuration: read from the environment in one place, checked at start."""

from __future__ import annotations

from collections.abc import Mapping

DEFAULT_HEROKU_API_URL = "https://api.heroku.com"
DEFAULT_HEROKU_ID_URL = "https://id.heroku.com"

# variable → (Flask config key, default); numbers are seconds
_TEXT = {
    "REMORA_SECRET_KEY": ("SECRET_KEY", None),
    "DATABASE_URL": ("DATABASE_URL", None),
    "REMORA_LAUNCHER": ("LAUNCHER", "local"),
    "REMORA_CONTROL_URL": ("CONTROL_URL", None),
    "HEROKU_API_URL": ("HEROKU_API_URL", DEFAULT_HEROKU_API_URL),
    "HEROKU_ID_URL": ("HEROKU_ID_URL", DEFAULT_HEROKU_ID_URL),
    "HEROKU_ADDON_ID": ("HEROKU_ADDON_ID", None),
    "HEROKU_ADDON_PASSWORD": ("HEROKU_ADDON_PASSWORD", None),
    "HEROKU_SSO_SALT": ("HEROKU_SSO_SALT", None),
    "HEROKU_OAUTH_CLIENT_SECRET": ("HEROKU_OAUTH_CLIENT_SECRET", None),
}
_NUMBERS = {
    "REMORA_RUN_TTL": ("RUN_TTL", 4 * 3600),
    "REMORA_LOST_GRACE": ("LOST_GRACE", 300),
    "REMORA_CLOCK_INTERVAL": ("CLOCK_INTERVAL", 10),
}
LAUNCHERS = ("local", "heroku")
# the control plane's own secrets: never handed to a run's process
SECRET_VARIABLES = ("REMORA_SECRET_KEY", "DATABASE_URL", "HEROKU_ADDON_PASSWORD", "HEROKU_SSO_SALT",
                    "HEROKU_OAUTH_CLIENT_SECRET")


class ConfigError(Exception):
    """A missing or invalid setting; the message names every variable at fault."""


def from_env(env: Mapping[str, str]) -> dict:
    """Flask config keys from the environment, with defaults; raises ConfigError on bad numbers."""
    config, problems = {}, []
    for variable, (key, default) in _TEXT.items():
        config[key] = (env.get(variable) or "").strip() or default
    for variable, (key, default) in _NUMBERS.items():
        text = (env.get(variable) or "").strip()
        if text and not (text.isdigit() and int(text) > 0):
            problems.append(f"{variable} must be a whole number of seconds, not {text!r}")
        config[key] = int(text) if text.isdigit() and int(text) > 0 else default
    if problems:
        raise ConfigError("; ".join(problems))
    return config


def check(config: Mapping) -> None:
    """Refuse to start without what every process needs."""
    problems = []
    if not config.get("SECRET_KEY"):
        problems.append("REMORA_SECRET_KEY is not set (it signs sessions and encrypts stored tokens)")
    elif len(config["SECRET_KEY"]) < 16:
        problems.append("REMORA_SECRET_KEY is too short (use 32 random bytes or more)")
    if not config.get("DATABASE_URL"):
        problems.append("DATABASE_URL is not set (the control plane's PostgreSQL)")
    if isinstance(config.get("LAUNCHER"), str) and config["LAUNCHER"] not in LAUNCHERS:
        problems.append(f"REMORA_LAUNCHER {config['LAUNCHER']!r} is not one of {', '.join(LAUNCHERS)}")
    if problems:
        raise ConfigError("; ".join(problems))
