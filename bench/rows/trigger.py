"""The trigger endpoint under an open-loop load on loopback: its latency at 100 requests a second.

The web server is started as `remora-control web` starts it (gunicorn, its workers and access
log). A trigger only queues a run: a worker process beside it (the clock's loop, with an instant
launcher, so that no runner is started) launches what is queued as it comes. Requests go out on a
fixed timetable whatever the answers (open loop), each on a new connection and each for a
resource of its own (a resource has one active run at a time), and each one's latency runs from
the time it was due: a server that falls behind is charged for the queue it causes.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import functools
import hashlib
import http.client
import multiprocessing
import secrets
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from bench.context import Bench
from bench.measure import Figure, Goal, Sample, rounds, values
from control import cli, db, settings, worker
from tests.controlplane import REPO, RecordingLauncher, connect, control_env
from tests.servers.util import free_port

ORDER = 70
TITLE = "control plane: trigger endpoint under load"
RATE = 100  # requests a second
LIMIT_MS = 50.0  # the goal, on each round's 99th percentile
CONNECTIONS = 50  # client threads: enough for 0.5 s of requests in flight before the timetable slips
TIMEOUT = 10  # seconds per request
START_TIMEOUT = 60  # seconds for gunicorn to answer
LAUNCH_TIMEOUT = 60  # seconds for the worker to launch what a round queued


Target = tuple[str, str]  # (resource id, API token)
NOBODY: Target = ("00000000-0000-0000-0000-000000000000", "no-such-token")


def run(bench: Bench) -> list[Figure]:
    seconds = bench.settings.load_seconds
    failed: collections.Counter[str] = collections.Counter()  # what the requests that failed got
    with bench.control_database() as url, _serving(bench, url) as port, _working(url):
        targets = _resources(url, round(RATE * seconds))
        fire = functools.partial(_round, url, port, targets, seconds, failed)
        samples = rounds({"load": fire}, repeats=bench.settings.repeats,
                         log=lambda m: bench.log(f"trigger: {m}"))["load"]
    failures = [f"round {number}: {s['errors']:.0f} of {s['requests']:.0f} requests failed"
                for number, s in enumerate(samples, 1) if s["errors"]]
    failures += [f"round {number}: {s['runs']:.0f} runs launched for {s['requests'] - s['errors']:.0f} answers 202"
                 for number, s in enumerate(samples, 1) if s["runs"] != s["requests"] - s["errors"]]
    if failed:
        failures.append("errors: " + ", ".join(f"{n}× {what}" for what, n in failed.most_common()))
    return [Figure(
        row="trigger", name=f"`POST /api/v1/resources/<id>/backups` at {RATE} requests/s for {seconds:g} s, "
                            "open loop, loopback: 99th percentile latency", unit="ms",
        candidate=values(samples, "p99_ms"),
        goal=Goal(f"p99 ≤ {LIMIT_MS:g} ms at {RATE} requests/s, no errors", at_most=LIMIT_MS, on="max"),
        failures=failures,
        notes=f"p50 {statistics.median(values(samples, 'p50_ms')):.1f} ms, largest "
              f"{max(values(samples, 'max_ms')):.1f} ms; {sum(values(samples, 'requests')):.0f} requests, "
              f"{sum(values(samples, 'errors')):.0f} errors; each 202 queued one run, which a worker process beside "
              f"(the clock's loop, an instant launcher) launched; gunicorn with {cli.WEB_WORKERS} sync workers and "
              "its access log; a resource per request; latency from when each request was due, on a new connection "
              "each",
    )]


@contextlib.contextmanager
def _serving(bench: Bench, url: str) -> Iterator[int]:
    """gunicorn serving the app on a free loopback port, as `remora-control web` serves it; its port."""
    port = free_port()
    argv = cli.gunicorn_argv(host="127.0.0.1", port=str(port), workers=cli.WEB_WORKERS)
    log = bench.work / "gunicorn.log"
    with open(log, "wb") as sink:
        server = subprocess.Popen(argv, env=control_env(url), cwd=REPO, stdin=subprocess.DEVNULL, stdout=sink,
                                  stderr=subprocess.STDOUT)
    try:
        _wait_until_up(port, server, log)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_until_up(port: int, server: subprocess.Popen, log: Path) -> None:
    """Until the server has refused a few unknown tokens (each a database query); its last words if not."""
    deadline = time.monotonic() + START_TIMEOUT
    refused = 0
    while refused < 2 * cli.WEB_WORKERS:  # warms the workers up: the first query of each opens its pool
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"gunicorn did not answer on port {port}: {log.read_text()[-2000:]}")
        try:
            status = _post(port, NOBODY)
        except OSError:
            time.sleep(0.2)
            continue
        if status != 401:
            raise RuntimeError(f"gunicorn answered {status} to an unknown token: {log.read_text()[-2000:]}")
        refused += 1


@contextlib.contextmanager
def _working(url: str) -> Iterator[None]:
    """A worker process launching queued runs as they come (as the clock does between its passes)."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    process = context.Process(target=_work, args=(url, stop), daemon=True)
    process.start()
    try:
        yield
    finally:
        stop.set()
        process.join(timeout=START_TIMEOUT)
        if process.is_alive():
            process.kill()


def _work(url: str, stop) -> None:
    config = settings.from_env({"REMORA_CONTROL_URL": "https://control.bench.invalid"})
    launcher = RecordingLauncher()
    with db.open_pool(url, max_size=worker.THREADS + 1) as pool, worker.listening(url) as listener:
        while not stop.is_set():
            worker.launch_queued(pool, launcher, config)
            worker.wait(listener, timeout=0.5)


def _resources(url: str, count: int) -> list[Target]:
    """``count`` resources with their API tokens, made in one statement."""
    tokens = [secrets.token_urlsafe(32) for _ in range(count)]
    with connect(url) as conn:
        ids = conn.execute(
            "insert into resources (id, app, api_token_hash) select gen_random_uuid(), 'bench-' || n, token"
            " from unnest(%s::bytea[]) with ordinality as t(token, n) returning id",
            ([hashlib.sha256(token.encode()).digest() for token in tokens],)).fetchall()
    return [(str(row["id"]), token) for row, token in zip(ids, tokens)]


def _round(url: str, port: int, targets: list[Target], seconds: float, failed: collections.Counter) -> Sample:
    """RATE requests a second for ``seconds``; latency percentiles, errors, and the runs they made."""
    with connect(url) as conn:
        conn.execute("truncate runs cascade")
    answers = _fire(port, targets, count=round(RATE * seconds))
    failed.update(what for what, _ in answers if what != "202")
    latencies = sorted(ms for _, ms in answers)
    made = _launched(url)
    return {"p50_ms": statistics.median(latencies), "p99_ms": statistics.quantiles(latencies, n=100)[98],
            "max_ms": latencies[-1], "requests": len(answers), "runs": made,
            "errors": sum(what != "202" for what, _ in answers)}


def _launched(url: str) -> int:
    """The runs launched, once the worker has launched all it was given (or after LAUNCH_TIMEOUT)."""
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    with connect(url) as conn:
        while conn.execute("select count(*) as n from runs where state = 'queued'").fetchone()["n"] and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        return conn.execute("select count(*) as n from runs where state = 'launched'").fetchone()["n"]


def _fire(port: int, targets: list[Target], *, count: int) -> list[tuple[str, float]]:
    """``count`` requests on RATE's timetable; (what each got, its latency in ms from when it was due)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=CONNECTIONS) as pool:
        begin = time.monotonic()
        futures = []
        for number in range(count):
            due = begin + number / RATE
            time.sleep(max(0.0, due - time.monotonic()))
            futures.append(pool.submit(_timed_post, port, targets[number], due))
        return [future.result() for future in futures]


def _timed_post(port: int, target: Target, due: float) -> tuple[str, float]:
    try:
        what = str(_post(port, target))
    except OSError as e:
        what = type(e).__name__
    return what, (time.monotonic() - due) * 1000


def _post(port: int, target: Target) -> int:
    """One trigger on a new connection (gunicorn's sync workers close each after answering); its status."""
    resource_id, token = target
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("POST", f"/api/v1/resources/{resource_id}/backups", headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()
