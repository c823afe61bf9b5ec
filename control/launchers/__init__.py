"""Launchers, chosen by REMORA_LAUNCHER; the heroku one is imported only when used."""

from __future__ import annotations

import os

from control.launchers.base import (GONE, RUNNING, UNKNOWN, Launcher, LaunchError, LaunchRefused, LaunchSpec,
                                    LaunchUnconfirmed)

__all__ = ["GONE", "RUNNING", "UNKNOWN", "Launcher", "LaunchError", "LaunchRefused", "LaunchSpec", "LaunchUnconfirmed",
           "from_config"]


def from_config(config, pool) -> Launcher:
    """The launcher the config names (or, in tests, the Launcher instance it holds)."""
    choice = config["LAUNCHER"]
    if isinstance(choice, Launcher):
        return choice
    if choice == "local":
        from control.launchers.local import LocalLauncher

        return LocalLauncher(os.environ)
    from control.launchers.heroku import HerokuLauncher
    from control.oauth import HerokuAccess

    return HerokuLauncher(config["HEROKU_API_URL"], HerokuAccess(pool, config))
