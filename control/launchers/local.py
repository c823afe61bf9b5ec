"""The local launcher: the run as a subprocess on this machine (development, demos, tests)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Mapping

from control.launchers.base import GONE, RUNNING, UNKNOWN, Launcher, LaunchError, LaunchSpec
from control.settings import SECRET_VARIABLES, STORAGE_VARIABLES


class LocalLauncher(Launcher):
    """Runs ``remora-backup backup`` with this process's environment plus the run's variables.

    The control plane's own secrets (its database, its secret key, Heroku's credentials) and the
    add-on's storage settings are taken out: a run must never hold them.
    """

    def __init__(self, env: Mapping[str, str]):
        self._env = {k: v for k, v in env.items() if k not in SECRET_VARIABLES + STORAGE_VARIABLES}
        self._children: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()  # the worker launches from several threads

    def launch(self, spec: LaunchSpec) -> str:
        self._reap()
        try:
            child = subprocess.Popen(
                [sys.executable, "-m", "runner.cli", "backup"],
                env={**self._env, **spec.env()},
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a run outlives a restarted clock, like a dyno
            )
        except OSError as e:
            raise LaunchError(f"could not start the runner: {e.strerror}") from e
        with self._lock:
            self._children[str(child.pid)] = child
        return str(child.pid)

    def state(self, *, resource_id: str, app: str | None, handle: str) -> str:
        with self._lock:
            child = self._children.get(handle)
        if child is None:
            return UNKNOWN  # started by another process
        return RUNNING if child.poll() is None else GONE

    def _reap(self) -> None:
        """Collect children that have ended, so that none stays a zombie."""
        with self._lock:
            for handle, child in list(self._children.items()):
                if child.poll() is not None:
                    del self._children[handle]
