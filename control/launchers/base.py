"""The launcher interface: start a run's process somewhere, and say later whether it still runs.

A launcher never touches the control plane's database: the caller records what it returns.
``launch`` raises LaunchError for every failure it understands (the run is then marked failed
with its message), LaunchUnconfirmed when the process may have started although no answer said
so (the run then waits for its process to report), and LaunchRefused when the platform will not
start processes for the resource at all (the run then waits for its helper app to ask for it);
anything else is a bug.
"""

from __future__ import annotations

import abc
import dataclasses

RUNNING, GONE, UNKNOWN = "running", "gone", "unknown"
RUN_COMMAND = "bin/remora-backup backup"


class LaunchError(Exception):
    """The process could not be started; the message says why, without any secret."""


class LaunchUnconfirmed(LaunchError):
    """The request to start the process may have been acted on, but its answer was lost or unreadable."""


class LaunchRefused(LaunchError):
    """The platform will not start processes for this resource (Heroku's 401 or 403): its runs must be pulled."""


@dataclasses.dataclass(frozen=True)
class LaunchSpec:
    """What a run needs to start: where it runs, how long it may live, and how it reports."""

    run_id: str
    resource_id: str
    app: str | None
    control_url: str
    time_to_live: int
    run_token: str = dataclasses.field(repr=False)

    def env(self) -> dict[str, str]:
        """The variables the runner reads to report to the control plane."""
        return {
            "REMORA_RUN_ID": self.run_id,
            "REMORA_RUN_TOKEN": self.run_token,
            "REMORA_CONTROL_URL": self.control_url,
        }


class Launcher(abc.ABC):
    @abc.abstractmethod
    def launch(self, spec: LaunchSpec) -> str:
        """Start the run's process; return its handle (a dyno id, a pid). Raises LaunchError."""

    @abc.abstractmethod
    def state(self, *, resource_id: str, app: str | None, handle: str) -> str:
        """RUNNING, GONE (ended, crashed or never existed) or UNKNOWN (cannot tell from here)."""
