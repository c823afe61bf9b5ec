"""`run-due`: the helper app asks its control plane for a run, and runs it as a launched run would.

Heroku Scheduler runs `bin/remora-backup run-due` on the helper app every 10 minutes. It asks
``POST {REMORA_API_URL}/runs/claim`` with REMORA_API_TOKEN, the config vars the add-on set: the
control plane answers 204 when its resource has nothing queued or due, which ends the command at
once; else it hands over one run, its id and its token. This process then is that run: the same
`backup`, reporting the same events to the same control plane (REMORA_API_URL's origin) as a dyno
the control plane launched would. It is how the backups of a resource run when Heroku does not let
the add-on start dynos.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from runner import report
from runner.config import Config, Secret
from runner.errors import RemoraError, UsageError

API_PATH = re.compile(r"(?P<base>.*)/api/v1/resources/[0-9a-fA-F-]{36}")


def claim(config: Config) -> Config | None:
    """The configuration of the run the control plane hands over, or None when nothing is due."""
    config.require("api_url", "api_token")
    base = control_url(config.api_url)
    answer = report.claim(f"{config.api_url.rstrip('/')}/runs/claim", config.api_token.reveal())
    if answer is None:
        return None
    run, token = answer.get("run"), answer.get("run_token")
    run_id = run.get("id") if isinstance(run, dict) else None
    if not (isinstance(run_id, str) and re.fullmatch(r"[0-9a-f-]{36}", run_id)
            and isinstance(token, str) and re.fullmatch(r"[A-Za-z0-9_-]{20,200}", token)):
        raise UsageError("the control plane's answer names no run and token",
                         hint="Heroku Scheduler asks again at the job's next run")
    return dataclasses.replace(config, control_url=base, run_id=run_id, run_token=Secret(token))


def control_url(api_url: str) -> str:
    """Where a run reports: the origin (and path prefix) of REMORA_API_URL."""
    try:
        parts = urlsplit(api_url)
    except ValueError:
        parts = None
    match = API_PATH.fullmatch(api_url.rstrip("/"))
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or match is None:
        raise UsageError("REMORA_API_URL is not the add-on's resource URL (https://HOST/api/v1/resources/ID)",
                         hint="the add-on sets it: `heroku config:get REMORA_API_URL -a HELPER`")
    return match["base"]


def unconfigured(env: Mapping[str, str], error: RemoraError) -> None:
    """Take the due run anyway and report it failed with ``error``, so that it is not lost silently."""
    api_url, token = (env.get(name, "").strip() for name in ("REMORA_API_URL", "REMORA_API_TOKEN"))
    if not (api_url and token):
        return
    try:
        run = claim(Config(api_url=api_url, api_token=Secret(token)))
    except RemoraError:
        return  # the error that stopped this process is logged already
    if run is not None:
        report.unconfigured({"REMORA_CONTROL_URL": run.control_url, "REMORA_RUN_ID": run.run_id,
                             "REMORA_RUN_TOKEN": run.run_token.reveal()}, error)
