"""Fixtures for the control plane: a migrated database per test, the app, and a recording launcher.

Every test gets its own database, copied from a template migrated once per session
(``CREATE DATABASE … TEMPLATE`` takes a fraction of a second).
"""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import sys
import threading
import time
import uuid

import psycopg
import pytest
import requests

from control import create_app, db
from control.launchers import GONE, Launcher, LaunchSpec
from tests.helpers import REPO, base_env

SECRET_KEY = secrets.token_urlsafe(32)


class RecordingLauncher(Launcher):
    """Records what it is asked to launch; ``states`` says what ``state`` answers (default GONE)."""

    def __init__(self):
        self.specs: list[LaunchSpec] = []
        self.states: dict[str, str] = {}
        self.asked: list[str] = []  # handles whose state was asked
        self._lock = threading.Lock()

    def launch(self, spec: LaunchSpec) -> str:
        with self._lock:
            self.specs.append(spec)
            return f"recorded-{len(self.specs)}"

    def state(self, *, resource_id, app, handle) -> str:
        self.asked.append(handle)
        return self.states.get(handle, GONE)


@pytest.fixture(scope="session")
def control_template(pg_cluster) -> str:
    """A database with every migration applied, used as the template of each test's database."""
    name = pg_cluster.create_database(sample=False)
    db.migrate(pg_cluster.url(name))
    return name


def migrated_database(pg_cluster, control_template: str) -> str:
    """A new database copied from the migrated template; its URL."""
    name = "control_" + secrets.token_hex(4)
    with pg_cluster.connect() as conn:
        conn.execute(f'create database "{name}" template "{control_template}"')
    return pg_cluster.url(name)


@pytest.fixture
def control_db(pg_cluster, control_template) -> str:
    """A fresh, migrated control-plane database; returns its URL."""
    return migrated_database(pg_cluster, control_template)


@pytest.fixture
def launcher() -> RecordingLauncher:
    return RecordingLauncher()


@pytest.fixture
def app(control_db, launcher):
    """The app in development (its webhooks may be the tests' servers on loopback), launching with ``launcher``."""
    app = create_app({"SECRET_KEY": SECRET_KEY, "DATABASE_URL": control_db, "LAUNCHER": launcher,
                      "CONTROL_URL": "https://control.test", "ENV": "development"})
    yield app
    app.extensions["remora.pool"].close()


@pytest.fixture
def client(app):
    return app.test_client()


ADDON_ID, ADDON_PASSWORD, SSO_SALT, CLIENT_SECRET = "remora", "addon-pw-" + "p" * 20, "salt-" + "s" * 20, "oauth-cs"


@pytest.fixture
def heroku_app(control_db, heroku):
    """The app as the Heroku add-on: the heroku launcher against the Platform API stand-in."""
    app = create_app({
        "SECRET_KEY": SECRET_KEY, "DATABASE_URL": control_db, "LAUNCHER": "heroku",
        "CONTROL_URL": "https://control.test", "HEROKU_API_URL": heroku.api_url, "HEROKU_ID_URL": heroku.id_url,
        "HEROKU_ADDON_ID": ADDON_ID, "HEROKU_ADDON_PASSWORD": ADDON_PASSWORD, "HEROKU_SSO_SALT": SSO_SALT,
        "HEROKU_OAUTH_CLIENT_SECRET": CLIENT_SECRET,
    })
    yield app
    app.extensions["remora.pool"].close()


def provision_body(heroku, *, plan: str = "basic", **options) -> dict:
    """A provision request as Heroku sends it, with a fresh uuid and an OAuth grant from the stand-in."""
    addon = str(uuid.uuid4())
    return {"uuid": addon, "plan": plan, "region": "amazon-web-services::us-east-1",
            "callback_url": f"https://api.heroku.com/addons/{addon}", "name": "remora-shiny-12345",
            "oauth_grant": heroku.grant(CLIENT_SECRET), "options": options,
            "log_input_url": "https://token:t@1.us.logplex.io/logs", "log_drain_token": "d.x"}


def sso_form(resource_id: str, *, timestamp: int | None = None, salt: str = SSO_SALT,
             email: str = "dba@example.com", user_id: str = "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d") -> dict:
    """The form Heroku's SSO posts for ``resource_id``, signed with ``salt``: both tokens, as Heroku sends them."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {"resource_id": resource_id, "timestamp": str(timestamp), "user_id": user_id, "email": email,
            "resource_token": hashlib.sha1(f"{resource_id}:{salt}:{timestamp}".encode()).hexdigest(),
            "user_scoped_resource_token": hashlib.sha256(
                f"{resource_id}:{salt}:{timestamp}:{user_id}:{email}".encode()).hexdigest(),
            "nav-data": "nav", "app": "helper-app", "context_app": "helper-app"}


def connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True, row_factory=psycopg.rows.dict_row)


def control_env(control_db: str) -> dict[str, str]:
    """What every ``remora-control`` process needs."""
    return {**base_env(), "DATABASE_URL": control_db, "REMORA_SECRET_KEY": SECRET_KEY}


def control_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "control.cli", *args]


def start_web(env: dict[str, str], port: int, *, workers: int = 1) -> subprocess.Popen:
    """``remora-control web`` (gunicorn) on ``port``, once it answers; its output is in ``stdout``."""
    web = subprocess.Popen(control_argv("web", "--host", "127.0.0.1", "--workers", str(workers)),
                           env={**env, "PORT": str(port)}, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert web.poll() is None, web.stdout.read()
        try:
            requests.get(f"http://127.0.0.1:{port}/api/v1/runs/00000000-0000-0000-0000-000000000000", timeout=5)
            return web
        except requests.ConnectionError:  # not listening yet (a worker still booting times out: waited for)
            time.sleep(0.1)
    web.kill()
    raise AssertionError(f"remora-control web did not answer:\n{web.communicate()[0]}")


def make_resource(app, *, app_name: str = "helper-app", plan: str = "byo", **given) -> tuple[dict, str]:
    """A resource created straight in the app's database, with these options; returns it and its API token."""
    from control import options, resources

    chosen = options.validate(given, policy=options.policy(app.config))
    with app.extensions["remora.pool"].connection() as conn:
        return resources.create(conn, app.config, chosen, app=app_name, plan=plan)


def work(app, launcher: Launcher | None = None) -> int:
    """What the worker does (in the clock process): launch every queued run, with ``launcher`` or the app's own."""
    from control import launchers, worker

    pool = app.extensions["remora.pool"]
    return worker.launch_queued(pool, launcher or launchers.from_config(app.config, pool), app.config)


def clock_pass(app, *, times: int = 1) -> None:
    """Passes of the clock over ``app``'s database (and its storage, if any), as `remora-control clock` makes them."""
    from control import clock, launchers

    pool = app.extensions["remora.pool"]
    for _ in range(times):
        clock.tick(pool, launchers.from_config(app.config, pool), app.config, app.extensions["remora.store"])


def due_schedules(url: str, count: int) -> None:
    """``count`` resources whose (yearly) schedule came due a minute ago, inserted in one statement."""
    with connect(url) as conn:
        conn.execute(
            "insert into resources (id, app, api_token_hash, schedule, next_run_at)"
            " select gen_random_uuid(), 'app-' || n, sha256(('token-' || n)::bytea), '0 3 1 1 *',"
            " now() - interval '1 minute' from generate_series(1, %s) n", (count,))


__all__ = ["REPO", "RecordingLauncher", "clock_pass", "connect", "control_argv", "control_env", "due_schedules", "make_resource",
           "migrated_database", "provision_body", "sso_form", "start_web", "work"]
