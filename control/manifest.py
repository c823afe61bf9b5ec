"""The add-on manifest that ``heroku addons:admin:manifest:push`` sends: the committed template, filled in.

``addon-manifest.json`` at the repository's root holds ``${NAME}`` placeholders where the add-on's
password, its SSO salt and the control plane's URL go, so the committed file holds no secret.
``render`` fills them from the environment and refuses a manifest the control plane could not
serve or Heroku would not take: an id other than HEROKU_ADDON_ID (Heroku's Basic auth would then
always fail), a production URL that is not https (Heroku sends the add-on password there with
every call), or a password outside Heroku's 8 to 72 characters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

TEMPLATE = "addon-manifest.json"
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
PASSWORD_LENGTH = range(8, 73)  # what Heroku takes for an add-on manifest's password


class ManifestError(Exception):
    """The manifest cannot be rendered; the message names what is missing or wrong, never a value."""


def load(path: Path) -> dict:
    """The template, parsed."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as e:
        raise ManifestError(f"{path} not found (run from the repository's root, or pass --template)") from e
    except ValueError as e:
        raise ManifestError(f"{path} is not JSON: {e}") from e


def placeholders(node) -> set[str]:
    """The names of every ``${NAME}`` in the template's strings."""
    if isinstance(node, dict):
        return set().union(*map(placeholders, node.values()))
    if isinstance(node, list):
        return set().union(*map(placeholders, node))
    return set(PLACEHOLDER.findall(node)) if isinstance(node, str) else set()


def render(template: dict, env: Mapping[str, str]) -> dict:
    """The template with every placeholder filled from ``env``; ManifestError on a missing or bad value."""
    # stripped as control/settings.py strips them, so the manifest says what the control plane checks
    values = {name: (env.get(name) or "").strip() for name in placeholders(template)}
    missing = sorted(name for name, value in values.items() if not value)
    if missing:
        raise ManifestError(f"{', '.join(missing)} not set: the add-on manifest needs "
                            + ("it" if len(missing) == 1 else "them"))
    if "REMORA_CONTROL_URL" in values:
        values["REMORA_CONTROL_URL"] = values["REMORA_CONTROL_URL"].rstrip("/")
    manifest = _fill(template, values)
    addon_id = (env.get("HEROKU_ADDON_ID") or "").strip()
    if addon_id and addon_id != manifest["id"]:
        raise ManifestError(f"the manifest's id {manifest['id']!r} is not HEROKU_ADDON_ID {addon_id!r}: "
                            "Heroku's calls would be refused")
    if len(manifest["api"]["password"]) not in PASSWORD_LENGTH:
        raise ManifestError(f"the add-on password (HEROKU_ADDON_PASSWORD) has {len(manifest['api']['password'])} "
                            "characters: Heroku takes 8 to 72")
    for key, url in manifest["api"]["production"].items():
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ManifestError(f"production {key} is not an https:// URL: Heroku sends the add-on password "
                                "there (set REMORA_CONTROL_URL to the control plane's https:// address)")
    return manifest


def _fill(node, values: Mapping[str, str]):
    if isinstance(node, dict):
        return {key: _fill(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_fill(item, values) for item in node]
    if isinstance(node, str):
        return PLACEHOLDER.sub(lambda m: values[m.group(1)], node)
    return node
