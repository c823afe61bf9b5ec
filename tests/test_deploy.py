"""What deploys: app.json (the helper app), Procfile and bin/release, the add-on manifest, the pins."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from control import cli, db, manifest
from control.launchers import LaunchSpec
from control.launchers.heroku import HerokuLauncher
from runner.config import Config, Secret
from runner.errors import UsageError
from tests.controlplane import ADDON_PASSWORD, SSO_SALT, connect, provision_body, sso_form
from tests.helpers import REPO, base_env

APP_JSON = json.loads((REPO / "app.json").read_text())
SCHEMA = json.loads((REPO / "reference" / "heroku" / "app-json-schema.json").read_text())
TEMPLATE = json.loads((REPO / "addon-manifest.json").read_text())
# set on each run by the control plane's launcher, so never app.json entries (checked against it below)
PER_RUN = {"REMORA_CONTROL_URL", "REMORA_RUN_ID", "REMORA_RUN_TOKEN"}
# set on the helper app by the add-on's provisioning (its config vars), so never app.json entries either
ADD_ON = set(TEMPLATE["api"]["config_vars"])
# a managed plan needs no REMORA_TARGET_URL: the add-on stores the backups
REQUIRED = {"REMORA_GPG_PUBLIC_KEYS"}
# a database URL: every secret variable takes it, and most others refuse it (see secret_variables)
PROBE = "postgres://probe:probe@probe.invalid/probe"


def procfile() -> dict[str, str]:
    lines = (REPO / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


class Recording(Mapping):
    """An empty environment that remembers every variable it was asked for."""

    def __init__(self):
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def runner_variables() -> set[str]:
    """Every variable ``Config.from_env`` reads."""
    env = Recording()
    Config.from_env(env)
    return env.asked


def secret_variables() -> set[str]:
    """The variables whose value Config holds as a Secret: each one set alone to a probe value."""
    found = set()
    for name in runner_variables():
        try:
            config = Config.from_env({name: PROBE})
        except UsageError:
            continue  # this variable cannot hold such a value: a number, a policy, a label...
        if Secret(PROBE) in vars(config).values():
            found.add(name)
    return found


# app.json


def test_app_json_validates_against_herokus_schema_with_uris_checked():
    checker = jsonschema.Draft7Validator.FORMAT_CHECKER
    assert "uri" in checker.checkers, "rfc3986-validator is not installed: jsonschema would pass any `uri`"
    validator = jsonschema.Draft7Validator(SCHEMA, format_checker=checker)
    validator.validate(APP_JSON)
    with pytest.raises(jsonschema.ValidationError, match="is not a 'uri'"):
        validator.validate({**APP_JSON, "repository": "github.com/remora-backup"})


class OneToken:
    """The launcher's access to Heroku: the same OAuth token for every resource."""

    def __init__(self, token: str):
        self._token = token

    def token(self, resource_id: str) -> str:
        return self._token


def test_run_variables_are_what_the_heroku_launcher_gives_each_dyno(heroku):
    heroku.access_tokens.add("HRKU-deploy-test")
    access = OneToken("HRKU-deploy-test")
    spec = LaunchSpec(run_id="run-1", resource_id="res-1", app="helper-app", control_url="https://control.test",
                      time_to_live=60, run_token="rt-" + "x" * 40)
    HerokuLauncher(heroku.api_url, access).launch(spec)
    [create] = heroku.platform_requests()
    assert set(json.loads(create["body"])["env"]) == PER_RUN
    assert heroku.problems == []


def test_every_variable_the_runner_reads_has_an_env_entry_and_no_other():
    read = runner_variables()
    assert PER_RUN <= read  # the runner reads them; the launcher, not the customer, sets them
    assert ADD_ON <= read  # the runner reads them too; the add-on sets them when it is provisioned
    assert set(APP_JSON["env"]) == read - PER_RUN - ADD_ON


def test_entries_say_what_they_are_and_whether_they_are_required():
    for name, entry in APP_JSON["env"].items():
        assert len(entry.get("description", "")) > 30, name
        assert isinstance(entry.get("required"), bool), f"{name}: Heroku takes a missing `required` as true"
    assert {name for name, entry in APP_JSON["env"].items() if entry["required"]} == REQUIRED
    database = APP_JSON["env"]["REMORA_DATABASE_URL"]["description"]
    assert "Leave empty" in database and "--credential" in database and "--as REMORA_DATABASE" in database
    for name in ("REMORA_GPG_PRIVATE_KEY", "REMORA_GPG_PASSPHRASE"):
        assert "keep the private key offline" in APP_JSON["env"][name]["description"]


def test_no_secret_has_a_default():
    secrets = secret_variables()
    assert {"REMORA_DATABASE_URL", "REMORA_GPG_PRIVATE_KEY", "AWS_SECRET_ACCESS_KEY"} <= secrets
    sensitive = secrets | {n for n in APP_JSON["env"] if n.startswith(("AWS_", "REMORA_SFTP_", "REMORA_GPG_"))}
    for name in sensitive & set(APP_JSON["env"]):
        assert not {"value", "generator"} & set(APP_JSON["env"][name]), name


def test_the_postdeploy_script_checks_the_helper_app():
    assert APP_JSON["scripts"]["postdeploy"] == "bin/remora-backup check --postdeploy"
    assert os.access(REPO / "bin" / "remora-backup", os.X_OK)
    assert APP_JSON["addons"] == [{"plan": "remora", "as": "REMORA"}]


# Procfile and bin/release


def test_the_formation_starts_no_dyno_and_the_procfile_runs_real_commands():
    processes = procfile()
    assert APP_JSON["formation"] == {kind: {"quantity": 0} for kind in processes if kind != "release"}
    assert processes["release"] == "bin/release" and os.access(REPO / "bin" / "release", os.X_OK)
    parser = cli.build_parser()
    for kind, command in processes.items():
        if kind != "release":
            program, *args = command.split()
            assert program == "remora-control"
            assert parser.parse_args(args).command == kind


def release(env: dict[str, str]) -> subprocess.CompletedProcess:
    """bin/release as Heroku runs it, with this venv's ``remora-control`` on the PATH."""
    venv_bin = Path(sys.executable).parent
    assert (venv_bin / "remora-control").exists(), f"no remora-control in {venv_bin}"
    path = f"{venv_bin}:{base_env()['PATH']}"
    return subprocess.run([str(REPO / "bin" / "release")], env={**base_env(), "PATH": path, "PYTHONPATH": str(REPO),
                          **env}, cwd=REPO, capture_output=True, text=True, timeout=60)


def relations(url: str) -> set[str]:
    with connect(url) as conn:
        rows = conn.execute("select relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
                            " where nspname not in ('pg_catalog', 'information_schema', 'pg_toast')").fetchall()
    return {row["relname"] for row in rows}


def test_release_migrates_the_control_plane(pg_cluster):
    url = pg_cluster.url(pg_cluster.create_database(sample=False))
    result = release({"REMORA_SECRET_KEY": secrets.token_urlsafe(32), "DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    with connect(url) as conn:
        done = [row["version"] for row in conn.execute("select version from schema_migrations order by version")]
    assert done == [version for version, _ in db.migrations()]
    assert {"resources", "runs"} <= relations(url)


def test_release_on_a_helper_app_touches_no_database(pg_cluster, database):
    url = pg_cluster.url(database)  # the customer's own database, attached as DATABASE
    before = relations(url)
    result = release({"DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "release: helper app (no REMORA_SECRET_KEY): nothing to migrate"
    assert relations(url) == before and "schema_migrations" not in before


# the add-on manifest

MANIFEST_ENV = {"HEROKU_ADDON_PASSWORD": ADDON_PASSWORD, "HEROKU_SSO_SALT": SSO_SALT,
                "REMORA_CONTROL_URL": "https://control.test/"}


def render_cli(env: dict[str, str]) -> subprocess.CompletedProcess:
    """``remora-control manifest`` with only ``env``: no database, no secret key."""
    return subprocess.run([sys.executable, "-m", "control.cli", "manifest"], env={**base_env(), **env},
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def strings(node) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    elif isinstance(node, str):
        yield node


def test_the_committed_manifest_holds_placeholders_not_secrets():
    api = TEMPLATE["api"]
    assert manifest.PLACEHOLDER.fullmatch(api["password"]) and manifest.PLACEHOLDER.fullmatch(api["sso_salt"])
    assert manifest.placeholders(TEMPLATE) == set(MANIFEST_ENV)
    for text in strings(TEMPLATE):
        assert not re.search(r"[A-Za-z0-9]{16,}", manifest.PLACEHOLDER.sub("", text)), text
    assert "test" not in api  # the retired kensa tool's block: Heroku's manifest has no such key now
    assert (TEMPLATE["id"], api["version"], api["config_vars_prefix"]) == ("remora", "3", "REMORA")


def test_the_manifest_renders_from_the_environment():
    result = render_cli({**MANIFEST_ENV, "HEROKU_ADDON_ID": "remora"})
    assert result.returncode == 0, result.stderr
    rendered = json.loads(result.stdout)
    assert rendered["api"]["password"] == ADDON_PASSWORD and rendered["api"]["sso_salt"] == SSO_SALT
    assert rendered["api"]["production"] == {"base_url": "https://control.test/heroku/resources",
                                             "sso_url": "https://control.test/heroku/sso"}
    assert "${" not in result.stdout


@pytest.mark.parametrize("name", sorted(MANIFEST_ENV))
def test_a_missing_variable_renders_nothing(name):
    for env in ({k: v for k, v in MANIFEST_ENV.items() if k != name}, {**MANIFEST_ENV, name: "  "}):
        result = render_cli(env)
        assert (result.returncode, result.stdout) == (2, "")
        [line] = result.stderr.splitlines()
        assert name in line and ADDON_PASSWORD not in line and SSO_SALT not in line


@pytest.mark.parametrize("env, words", [
    ({"REMORA_CONTROL_URL": "http://control.test"}, "REMORA_CONTROL_URL"),
    ({"REMORA_CONTROL_URL": "control.test"}, "https://"),
    ({"HEROKU_ADDON_ID": "remora-staging"}, "HEROKU_ADDON_ID"),
    ({"HEROKU_ADDON_PASSWORD": "p" * 7}, "has 7 characters: Heroku takes 8 to 72"),
    ({"HEROKU_ADDON_PASSWORD": "p" * 73}, "has 73 characters: Heroku takes 8 to 72"),
], ids=["plain-http", "no-scheme", "other-id", "short-password", "long-password"])
def test_a_manifest_the_control_plane_could_not_serve_is_refused(env, words):
    result = render_cli({**MANIFEST_ENV, **env})
    assert (result.returncode, result.stdout) == (2, "")
    [line] = result.stderr.splitlines()
    assert words in line and ADDON_PASSWORD not in line and "ppppppp" not in line


def test_passwords_of_8_and_72_characters_are_taken():
    for password in ("p" * 8, "p" * 72):
        assert manifest.render(TEMPLATE, {**MANIFEST_ENV, "HEROKU_ADDON_PASSWORD": password})["api"]["password"] \
            == password


def test_the_manifest_matches_what_the_control_plane_serves(heroku_app, heroku):
    rendered = manifest.render(TEMPLATE, MANIFEST_ENV)
    api, client = rendered["api"], heroku_app.test_client()
    basic = base64.b64encode(f"{rendered['id']}:{api['password']}".encode()).decode()
    answer = client.post(urlsplit(api["production"]["base_url"]).path, json=provision_body(heroku),
                         headers={"Authorization": f"Basic {basic}"})
    assert answer.status_code == 201, answer.json  # the app's Basic auth takes the manifest's id and password
    assert set(answer.json["config"]) == set(api["config_vars"])
    assert all(name.startswith(api["config_vars_prefix"] + "_") for name in api["config_vars"])
    urls = heroku_app.url_map.bind("control.test")
    resources = urlsplit(api["production"]["base_url"]).path
    assert urls.match(resources, method="POST")[0] == "heroku.provision"
    assert urls.match(f"{resources}/{answer.json['id']}", method="DELETE")[0] == "heroku.deprovision"
    sso = urlsplit(api["production"]["sso_url"]).path
    assert urls.match(sso, method="POST")[0] == "heroku.sso"
    login = client.post(sso, data=sso_form(answer.json["id"], salt=api["sso_salt"]))
    assert login.status_code == 303  # the app checks SSO tokens with the manifest's salt


# what the Python buildpack installs


def test_the_buildpack_installs_the_project_at_the_pinned_versions():
    lines = [line for line in (REPO / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines == ["-c requirements/constraints.txt", ".[control]"]
    assert (REPO / ".python-version").read_text().strip() == f"{sys.version_info.major}.{sys.version_info.minor}"
    setup = (REPO / "scripts" / "setup.sh").read_text()
    assert re.search(r"pip install .*-c requirements/constraints\.txt -e \"\.\[test,control", setup)


def test_every_runtime_requirement_is_pinned_to_the_installed_version():
    constraints = (REPO / "requirements" / "constraints.txt").read_text()
    pins = dict(line.split("==") for line in constraints.splitlines() if line and not line.startswith("#"))
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"] + project["optional-dependencies"]["control"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not pinned in requirements/constraints.txt"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} is not {requirement.specifier}"
    # the pins are the installed versions of all that and what it needs, no more and no less
    generated = subprocess.run([sys.executable, str(REPO / "scripts" / "constraints.py")],
                               capture_output=True, text=True, check=True).stdout
    assert generated == constraints, "run scripts/constraints.py > requirements/constraints.txt"
