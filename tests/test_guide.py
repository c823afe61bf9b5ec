"""The guides, run as a reader would run them: every shell block, in order, in bash.

The README's quick start and docs/local.md run against a throwaway PostgreSQL cluster of their
own; docs/heroku.md runs
against the same, a real sshd as the customer's SFTP server, the control plane as the add-on, and
the stand-ins for what this machine cannot reach: `tests/guide/heroku` for the Heroku CLI, and
the Platform API's (tests/servers/heroku.py), whose dynos the CLI's stand-in runs. How each block
is taken is in tests/guide/__init__.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shlex
import subprocess
import threading
from pathlib import Path

import psycopg
import pytest
import requests
from werkzeug.serving import make_server

from control import create_app, settings
from tests import guide
from tests.controlplane import (ADDON_ID, ADDON_PASSWORD, CLIENT_SECRET, SSO_SALT, connect, control_argv,
                               control_env, provision_body)
from tests.helpers import REPO
from tests.procs import with_marker
from tests.servers.gpg import stop_agent
from tests.servers.postgres import running_cluster
from tests.servers.seaweed import storage_variables
from tests.servers.sshd import SSHD, keygen
from tests.servers.util import free_port, serving

QUICK_START = guide.Guide(REPO / "README.md", "## Quick start")
LOCAL = guide.Guide(REPO / "docs" / "local.md")
HEROKU = guide.Guide(REPO / "docs" / "heroku.md")
PASSPHRASE = "guide-" + secrets.token_hex(8)  # what the reader types when gpg asks


@pytest.fixture
def workdir(tmp_path):
    """The reader's folder and home; whatever the guide leaves running is stopped afterwards."""
    home = tmp_path / "home"
    home.mkdir()
    marker = "GUIDE_MARKER=" + secrets.token_hex(8)
    yield tmp_path / "work", home, marker
    for pid in with_marker(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)


def reader_env(home: Path, marker: str, *, extra_path: str = "") -> dict[str, str]:
    """A reader's terminal: PATH, HOME, locale; gpg asks for the passphrase through a file, not a tty."""
    gnupg = home / ".gnupg"
    gnupg.mkdir(mode=0o700)
    (gnupg / "passphrase").write_text(PASSPHRASE)
    # what a person types at gpg's prompts; `batch` only stops gpg asking for a terminal
    (gnupg / "gpg.conf").write_text(f"batch\npinentry-mode loopback\npassphrase-file {gnupg / 'passphrase'}\n")
    (gnupg / "gpg-agent.conf").write_text("allow-loopback-pinentry\ns2k-count 65536\n")
    name, value = marker.split("=")
    return {"PATH": f"{extra_path}/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
            "TMPDIR": str(home), name: value}


def test_every_guide_block_is_taken():
    """Each guide has runnable blocks, every marker is one the test knows, and none is left unread."""
    for each, runnable in ((QUICK_START, 4), (LOCAL, 5), (HEROKU, 5)):
        text, _ = each.text()
        found = each.steps()
        assert sum(s.kind == "run" or s.kind in ("expect", "until") for s in found) >= runnable, each
        assert text.count("```sh") == sum(s.kind not in guide.TABLES for s in found), each
        assert text.count("<!-- guide:") == sum(s.kind != "run" for s in found), f"{each}: a marker is misplaced"
        for step in found:
            assert step.kind != "not run" or step.detail, f"{step.where()}: say why it is not run"


def test_quick_start(workdir):
    """The README's shortest round trip: a database backed up to a folder and restored into another."""
    work, home, marker = workdir
    work.mkdir()
    (work / ".venv").symlink_to(REPO / ".venv")
    with running_cluster() as cluster:
        shell = guide.Shell(work, reader_env(home, marker))
        values = {"PGHOST": cluster.host, "PGPORT": str(cluster.port), "PGUSER": cluster.user,
                  "PGPASSWORD": cluster.password}
        try:
            for step in QUICK_START.steps():
                guide.take(step, shell, values=values, actions={}, deploy=_no_deploy)
            assert len(list((work / "backups").rglob("*.manifest.json"))) == 1
        finally:
            for gnupghome in home.glob("tmp.*"):  # the guide's `mktemp -d` keyring
                stop_agent(gnupghome)


def test_on_your_machine(workdir):
    """A newcomer's path: a local database backed up and restored by the runner, by hand, and by the control plane."""
    work, home, marker = workdir
    work.mkdir()
    (work / ".venv").symlink_to(REPO / ".venv")  # the guide runs from the repository's root
    with running_cluster() as cluster:
        shell = guide.Shell(work, reader_env(home, marker))
        values = {"PGHOST": cluster.host, "PGPORT": str(cluster.port), "PGUSER": cluster.user,
                  "PGPASSWORD": cluster.password, "PORT": str(free_port())}
        try:
            for step in LOCAL.steps():
                guide.take(step, shell, values=values, actions={}, deploy=_no_deploy)
            backups = sorted((work / "backups").rglob("*.manifest.json"))
            assert len(backups) == 2, "one backup by the runner, one through the control plane"
        finally:
            for gnupghome in home.glob("tmp.*"):  # the guide's `mktemp -d` keyring
                stop_agent(gnupghome)


def _no_deploy(shell, form):
    raise AssertionError("the local guide deploys nothing")


@pytest.fixture
def control_plane(control_db, heroku, storage_config):
    """The add-on: the control plane served on a free port, and its clock launching dynos through the stand-in;
    managed plans store in SeaweedFS."""
    port = free_port()
    env = {**control_env(control_db), "REMORA_LAUNCHER": "heroku", "REMORA_CONTROL_URL": f"http://127.0.0.1:{port}",
           "HEROKU_API_URL": heroku.api_url, "HEROKU_ID_URL": heroku.id_url, "HEROKU_ADDON_ID": ADDON_ID,
           "HEROKU_ADDON_PASSWORD": ADDON_PASSWORD, "HEROKU_SSO_SALT": SSO_SALT,
           "HEROKU_OAUTH_CLIENT_SECRET": CLIENT_SECRET, **storage_variables(storage_config)}
    app = create_app(settings.from_env(env))
    clock = subprocess.Popen(control_argv("clock"), env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        with serving(make_server("127.0.0.1", port, app, threaded=True)):
            yield f"http://127.0.0.1:{port}"
    finally:
        clock.terminate()
        clock.wait(timeout=30)
        app.extensions["remora.pool"].close()


def test_on_heroku(workdir, sshd_server, heroku, control_plane, control_db, s3_server, storage_config):
    """The customer's path: the Heroku CLI's and Platform API's stand-ins, the add-on with its storage on SeaweedFS,
    then a real sshd as their own SFTP server.

    Both ways a run starts: the add-on launches the first "Back up now"; from the guide's Heroku
    Scheduler step on, the stand-in's tokens are what Heroku documents for an add-on (no dynos),
    and the Scheduler's jobs run every few seconds, so the helper app's `run-due` takes the next.
    """
    work, home, marker = workdir
    work.mkdir()
    (home / "offline").mkdir()
    sftp_dir = sshd_server.root / ("guide-" + secrets.token_hex(4))
    with running_cluster() as cluster:
        state = work.parent / "heroku.json"
        state.write_text(json.dumps({"cluster": cluster.url("postgres"), "apps": {}}))
        app, helper = "acme-shop", "acme-shop-backups"
        _heroku_postgres_app(cluster, state, app)
        env = reader_env(home, marker, extra_path=f"{REPO / 'tests' / 'guide'}:{REPO / '.venv' / 'bin'}:")
        env["HEROKU_STANDIN_STATE"] = str(state)
        heroku.on_dyno = lambda dyno, body: _start_dyno(env, dyno, body)
        shell = guide.Shell(work, env, typed=PASSPHRASE + "\n")
        values = {"APP": app, "HELPER": helper, "OFFLINE": str(home / "offline"),
                  "SFTP_HOST": sshd_server.host, "SFTP_PORT": str(sshd_server.port),
                  "SFTP_USER": sshd_server.user, "SFTP_DIR": str(sftp_dir)}
        actions = {
            "restricted account": lambda shell: _restricted_account(shell, sftp_dir),
            "authorize remora_sftp.pub": lambda shell: sshd_server.authorize((work / "remora_sftp.pub").read_text()),
        }
        deployed = []

        def deploy(shell, form):
            deployed.append(_deploy_button(shell, state, helper, form, heroku=heroku, control_plane=control_plane))

        def schedule(shell, jobs):
            assert "scheduler:standard" in json.loads(state.read_text())["apps"][helper].get("addons", [])
            heroku.partner_only = True
            scheduler.append(_Scheduler(env, helper, jobs))

        scheduler: list[_Scheduler] = []
        try:
            for step in HEROKU.steps():
                guide.take(step, shell, values=values, actions=actions, deploy=deploy, schedule=schedule)
        finally:
            for each in scheduler:
                each.stop()
        stop_agent(home / ".gnupg")

    assert deployed and "database    next" in deployed[0], "the postdeploy check said what comes next"
    assert "target      ok    the add-on's storage: 0 objects" in deployed[0]
    assert [d["command"] for d in heroku.dynos.values()] == ["bin/remora-backup backup"], "the add-on launched one"
    bucket, prefix = storage_config["STORAGE_URL"].removeprefix("s3://").split("/", 1)
    stored = s3_server.client().list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
    assert sorted(o["Key"].rsplit(".", 2)[1] for o in stored) == ["dump", "dump", "manifest", "manifest"], \
        "two backups in the add-on's storage: one a dyno made, one the helper app's `run-due`"
    assert len(list(sftp_dir.rglob("*.manifest.json"))) == 1, "and one on the customer's own server"
    with connect(control_db) as conn:
        started = conn.execute("select state, handle, error from runs order by created_at").fetchall()
        mode = conn.execute("select run_mode from resources").fetchone()["run_mode"]
    assert [(r["state"], r["handle"]) for r in started] == [("succeeded", next(iter(heroku.dynos))),
                                                          ("succeeded", "run-due")], started
    assert started[1]["error"].startswith("Heroku refused to start a dyno") and mode == "pulled"
    assert heroku.problems == []
    assert not any(work.rglob("*.dump")), "nothing decrypted was left on disk"


class _Scheduler:
    """Heroku Scheduler's stand-in: each job on the app, one after the other, every few seconds until stopped."""

    EVERY = 3  # seconds, where Heroku's is 10 minutes at the shortest

    def __init__(self, env: dict[str, str], app: str, jobs: list[str]):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(env, app, jobs), daemon=True)
        self._thread.start()

    def _run(self, env: dict[str, str], app: str, jobs: list[str]) -> None:
        while not self._stop.wait(self.EVERY):
            for job in jobs:
                subprocess.run(["heroku", "run:detached", "-a", app, *shlex.split(job)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, timeout=300)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=300)


def _heroku_postgres_app(cluster, state: Path, app: str) -> None:
    """An app with Heroku Postgres: a database and its default credential, which owns everything in it."""
    owner, password, dbname = "u" + secrets.token_hex(4), secrets.token_hex(12), "d" + secrets.token_hex(5)
    with cluster.connect() as conn:
        conn.execute(f"create role {owner} login password '{password}'")
        conn.execute(f"create database {dbname} owner {owner}")
    url = cluster.url(dbname, user=owner, password=password)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table customer (id bigint generated always as identity primary key, name text)")
        conn.execute("insert into customer (name) select 'customer ' || n from generate_series(1, 500) n")
    _add_app(state, app, {"DATABASE_URL": url})


def _add_app(state: Path, app: str, config: dict[str, str]) -> None:
    """An app, with these config vars, in the Heroku CLI stand-in's state."""
    data = json.loads(state.read_text())
    data["apps"][app] = {"config": config}
    state.write_text(json.dumps(data))


def _restricted_account(shell: guide.Shell, folder: Path) -> None:
    """The server block's sshd_config lines are valid sshd configuration; the account's folder exists."""
    step = next(s for s in HEROKU.steps() if s.detail == "restricted account")
    match = re.search(r"<<'EOF'\n(.*?)\nEOF\n", step.code, re.DOTALL)
    assert match, "the restricted account's block appends its sshd_config lines with a <<'EOF' heredoc"
    config = shell.workdir.parent / "sshd_config_guide"
    host_key = shell.workdir.parent / "host_key"
    keygen(host_key)
    config.write_text(f"HostKey {host_key}\nSubsystem sftp internal-sftp\n{match[1]}\n")
    checked = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, f"sshd -t refuses the guide's sshd_config lines: {checked.stderr}"
    folder.mkdir(mode=0o700)


def _start_dyno(env: dict[str, str], dyno: dict, body: dict) -> None:
    """What Heroku does with a dyno the add-on creates: run its command on the app, detached."""
    subprocess.Popen(["heroku", "run:detached", "-a", dyno["app"]["name"], *shlex.split(body["command"])],
                     env={**env, "HEROKU_STANDIN_DYNO_ENV": json.dumps(body.get("env", {}))},
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _provision(addon: dict, helper: str, *, heroku, control_plane: str) -> dict[str, str]:
    """What Heroku's marketplace does for app.json's add-on: provision it, with a grant; its config vars."""
    assert addon["plan"].split(":")[0] == ADDON_ID, "app.json's add-on is this project's"
    body = provision_body(heroku, plan=addon["plan"].partition(":")[2] or "default", **addon.get("options", {}))
    heroku.add_addon(body["uuid"], helper)
    answer = requests.post(f"{control_plane}/heroku/resources", auth=(ADDON_ID, ADDON_PASSWORD), json=body, timeout=30)
    assert answer.status_code in (200, 201, 202), answer.text
    config = answer.json()["config"]
    assert all(name.startswith(addon["as"] + "_") for name in config), "the attachment's name prefixes its vars"
    return config


def _deploy_button(shell: guide.Shell, state: Path, helper: str, form: dict[str, str], *, heroku,
                   control_plane: str) -> str:
    """What the Deploy to Heroku button does with app.json and the form: the app, its add-ons, postdeploy."""
    app_json = json.loads((REPO / "app.json").read_text())
    env_entries = app_json["env"]
    config = {}
    for name, source in form.items():
        assert name in env_entries, f"the guide's form asks for {name}, which app.json does not declare"
        value = shell.variable(source[1:]) if source.startswith("$") else (shell.workdir / source).read_text()
        config[name] = value.replace("\r", "").replace("\n", "")  # what a single-line field keeps of a paste
    for name, entry in env_entries.items():
        if entry.get("required"):
            assert config.get(name), f"app.json requires {name}, and the guide's form leaves it empty"
        if "value" in entry and name not in config:
            config[name] = entry["value"]
    for addon in app_json["addons"]:
        config.update(_provision(addon, helper, heroku=heroku, control_plane=control_plane))
    _add_app(state, helper, config)
    postdeploy = app_json["scripts"]["postdeploy"]
    result = subprocess.run(["heroku", "run", "-a", helper, *shlex.split(postdeploy)], check=False, env=shell.env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"postdeploy `{postdeploy}` failed:\n{result.stdout}{result.stderr}"
    return result.stdout
