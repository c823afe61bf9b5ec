"""A second witness: the control plane's record of the backups its runs reported (standard library only).

Where the add-on is attached it sets REMORA_API_URL and REMORA_API_TOKEN on the helper app; with
both set, ``verify``, ``download`` and ``restore`` ask ``GET {REMORA_API_URL}/backups/{id}``
whether a run reported this backup, and with which SHA-256. The signatures say which key made a
backup; the record says that a run the control plane launched stored exactly these bytes. A
record of another SHA-256 contradicts the signatures, and refuses the backup (exit 7); no
record (a backup made by hand is not recorded), or no answer, is said, and does not.
"""

from __future__ import annotations

import hmac
import re
import urllib.error
import urllib.parse

import structlog

from runner import bearer
from runner.config import Config
from runner.errors import IntegrityError
from runner.manifest import Manifest

log = structlog.get_logger()
TIMEOUT = 10.0  # seconds: the witness must not hold a restore up for long
MAX_ANSWER = 64 * 1024  # bytes of the answer read: a run is well under 1 KB


def testify(config: Config, manifest: Manifest) -> None:
    """Say whether the control plane recorded this backup; raise IntegrityError if it recorded other bytes."""
    if config.api_url is None and config.api_token is None:
        return
    if config.api_url is None or config.api_token is None:
        log.warning("not asking the control plane: REMORA_API_URL and REMORA_API_TOKEN must both be set")
        return
    url = f"{config.api_url.rstrip('/')}/backups/{urllib.parse.quote(manifest.id, safe='')}"
    try:
        with bearer.request(url, config.api_token.reveal(), timeout=TIMEOUT) as answer:
            body = answer.read(MAX_ANSWER + 1)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            log.warning(f"the control plane has no record of backup {manifest.id}",
                        hint="a backup made by hand is not recorded; one its schedule made should be")
        else:
            log.warning("could not ask the control plane about this backup", problem=f"HTTP {e.code}")
        return
    except bearer.NO_ANSWER as e:
        log.warning("could not ask the control plane about this backup", problem=bearer.problem(e))
        return
    _judge(manifest, _recorded(bearer.json_answer(body, most=MAX_ANSWER)))


def _recorded(answer: object) -> dict | None:
    """The backup the answer records, if it is a run that recorded one, well formed; None otherwise."""
    try:
        run = answer["run"]
        backup = run["backup"]
    except (KeyError, TypeError):
        return None
    forms = {"id": r"[0-9A-Za-z-]{1,64}", "sha256": r"[0-9a-f]{64}"}
    if not isinstance(backup, dict) or not all(
            isinstance(backup.get(name), str) and re.fullmatch(form, backup[name]) for name, form in forms.items()):
        return None
    return {"id": backup["id"], "sha256": backup["sha256"], "run": str(run.get("id"))[:64],
            "finished_at": str(run.get("finished_at"))[:64]}


def _judge(manifest: Manifest, recorded: dict | None) -> None:
    if recorded is None or recorded["id"] != manifest.id:
        log.warning("the control plane's answer is not a record of this backup; not taken as a witness")
        return
    if not hmac.compare_digest(recorded["sha256"], manifest.sha256):
        raise IntegrityError(
            f"the control plane recorded backup {manifest.id} with SHA-256 {recorded['sha256'][:16]}…, "
            f"but its manifest says {manifest.sha256[:16]}…",
            hint="the stored backup is not the one its run reported: do not restore it",
        )
    log.info("the control plane recorded this backup", id=manifest.id, run=recorded["run"],
             finished_at=recorded["finished_at"])
