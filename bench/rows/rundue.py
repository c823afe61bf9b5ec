"""The helper app asking with nothing due: what Heroku Scheduler's `run-due` job costs every 10 minutes.

The control plane is the real app, served on loopback from a thread; the job is the real
`bin/remora-backup run-due` in a fresh process with the helper app's two config vars, so the
time is the whole of it: the interpreter's start, the imports, the request, the answer (204).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

from werkzeug.serving import make_server

from bench.commands import timed
from bench.context import Bench
from bench.measure import Figure, Goal, Sample, rounds, values
from control import create_app
from tests.controlplane import REPO, SECRET_KEY, RecordingLauncher, make_resource
from tests.helpers import base_env
from tests.servers.util import free_port, serving

ORDER = 75
TITLE = "helper app: run-due with nothing due"
LIMIT_S = 1.0
TIMEOUT = 60  # seconds one job may take


def run(bench: Bench) -> list[Figure]:
    with bench.control_database() as url, _plane(url) as env:
        samples = rounds({"run-due": functools.partial(_job, env)}, repeats=bench.settings.repeats,
                         log=lambda m: bench.log(f"rundue: {m}"))["run-due"]
    return [Figure(
        row="rundue", name="`bin/remora-backup run-due` with nothing due, the control plane on loopback: "
                           "wall time of the whole process", unit="s",
        candidate=values(samples, "s"), goal=Goal(f"exits 0 in ≤ {LIMIT_S:g} s", at_most=LIMIT_S, on="max"),
        notes="one request (`POST …/runs/claim`, answered 204); interpreter start and imports included; "
              "CPU " + ", ".join(f"{s:.2f}" for s in values(samples, "cpu_s")) + " s",
    )]


@contextlib.contextmanager
def _plane(url: str) -> Iterator[dict[str, str]]:
    """The control plane serving a resource with nothing due; the helper app's environment for it."""
    port = free_port()
    app = create_app({"SECRET_KEY": SECRET_KEY, "DATABASE_URL": url, "LAUNCHER": RecordingLauncher(),
                      "CONTROL_URL": f"http://127.0.0.1:{port}"})
    resource, token = make_resource(app, app_name="bench-helper")
    try:
        with serving(make_server("127.0.0.1", port, app, threaded=True)):
            yield {**base_env(), "REMORA_API_URL": f"http://127.0.0.1:{port}/api/v1/resources/{resource['id']}",
                   "REMORA_API_TOKEN": token}
    finally:
        app.extensions["remora.pool"].close()


def _job(env: dict[str, str]) -> Sample:
    """One `run-due`, as Heroku Scheduler starts it (timed() fails the row on a non-zero exit)."""
    return timed([str(REPO / "bin" / "remora-backup"), "run-due"], env=env, timeout=TIMEOUT)
