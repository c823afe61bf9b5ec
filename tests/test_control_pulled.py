"""Runs its helper app asks for: when Heroku will not let the add-on start dynos, `run-due` runs them.

The Platform API stand-in in partner-token mode answers 403 outside the Platform API for
Partners, dynos among them, as Heroku may; Heroku Scheduler is simulated by running the command
it would run, `remora-backup run-due`, with the helper app's config vars.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import pytest
import requests
from werkzeug.serving import make_server

from control import create_app, resources
from tests.controlplane import (ADDON_ID, ADDON_PASSWORD, CLIENT_SECRET, SECRET_KEY, clock_pass, connect,
                                make_resource, provision_body, sso_form, work)
from tests.helpers import ok, remora, target_folder
from tests.receiver import receiver
from tests.servers.util import free_port, serving

WAIT = 10  # seconds per request


@pytest.fixture
def plane(control_db, heroku) -> Iterator:
    """The add-on served on loopback (where the helper app's `run-due` asks it), launching through the stand-in."""
    port = free_port()
    app = create_app({
        "SECRET_KEY": SECRET_KEY, "DATABASE_URL": control_db, "LAUNCHER": "heroku",
        "CONTROL_URL": f"http://127.0.0.1:{port}", "HEROKU_API_URL": heroku.api_url, "HEROKU_ID_URL": heroku.id_url,
        "HEROKU_ADDON_ID": ADDON_ID, "HEROKU_ADDON_PASSWORD": ADDON_PASSWORD, "HEROKU_OAUTH_CLIENT_SECRET": CLIENT_SECRET,
    })
    with serving(make_server("127.0.0.1", port, app, threaded=True)):
        yield app
    app.extensions["remora.pool"].close()


class Helper:
    """The helper app as the add-on left it: its config vars, and its API."""

    def __init__(self, config: dict[str, str]):
        self.env = config
        self._headers = {"Authorization": f"Bearer {config['REMORA_API_TOKEN']}"}

    def api(self, method: str, path: str = "", **kwargs) -> requests.Response:
        return requests.request(method, self.env["REMORA_API_URL"] + path, headers=self._headers, timeout=WAIT,
                                **kwargs)

    def resource(self) -> dict:
        return self.api("GET").json()["resource"]

    def newest_run(self) -> dict:
        return self.api("GET", "/backups").json()["runs"][0]


def _provisioned(app, heroku, **options) -> Helper:
    body = provision_body(heroku, **options)
    heroku.add_addon(body["uuid"], "acme-backups")
    answer = requests.post(f"{app.config['CONTROL_URL']}/heroku/resources", json=body, auth=(ADDON_ID, ADDON_PASSWORD),
                           timeout=WAIT)
    assert answer.status_code == 201, answer.text
    return Helper(answer.json()["config"])


def _dyno_creates(heroku) -> int:
    return sum(r["method"] == "POST" and r["path"].endswith("/dynos") for r in heroku.platform_requests())


def test_refused_dynos_make_the_resource_pulled_and_run_due_backs_up_as_a_launched_run_would(
        plane, heroku, database_env, gpg_env, file_target_env):
    helper = _provisioned(plane, heroku, schedule="0 3 * * *")
    heroku.partner_only = True  # the add-on's token as Heroku documents it: no dynos
    asked = helper.api("POST", "/backups").json()["run"]  # "Back up now"
    assert work(plane) == 1 and _dyno_creates(heroku) == 1
    refused = helper.newest_run()
    assert (refused["id"], refused["state"]) == (asked["id"], "queued")  # waiting for the helper app
    assert refused["error"].startswith(
        "Heroku refused to start a dyno for this run (the Platform API refused POST /apps/")
    assert "HTTP 403 forbidden: You do not have access to this resource.)" in refused["error"]
    assert "`bin/remora-backup run-due` every 10 minutes" in refused["error"]
    pulled = helper.resource()
    assert (pulled["run_mode"], pulled["run_mode_reason"], pulled["last_asked_at"]) == ("pulled", refused["error"], None)
    assert pulled["scheduler_job"]["command"] == "bin/remora-backup run-due"

    env = {**database_env, **gpg_env, **file_target_env, **helper.env}
    backup_id = ok(remora("run-due", env=env)).stdout.strip()  # what Heroku Scheduler runs
    done = helper.newest_run()
    assert (done["id"], done["state"], done["trigger"], done["backup"]["id"]) == (asked["id"], "succeeded", "api",
                                                                                 backup_id)
    assert done["bytes"] == done["backup"]["encrypted_bytes"]  # its progress and end, reported as a launched run's

    with connect(plane.config["DATABASE_URL"]) as conn:  # the schedule comes due
        conn.execute("update resources set next_run_at = now() - interval '1 minute'")
    clock_pass(plane)
    assert helper.newest_run()["state"] == "queued" and _dyno_creates(heroku) == 1  # left to the helper app
    scheduled_id = ok(remora("run-due", env=env)).stdout.strip()
    scheduled = helper.newest_run()
    assert (scheduled["trigger"], scheduled["state"], scheduled["backup"]["id"]) == ("schedule", "succeeded",
                                                                                      scheduled_id)

    nothing = ok(remora("run-due", env=env))
    assert nothing.stdout == "" and "nothing due" in nothing.stderr
    assert len(list(target_folder(file_target_env).rglob("*.manifest.json"))) == 2
    assert helper.resource()["last_asked_at"] is not None and _dyno_creates(heroku) == 1
    assert heroku.problems == []


def test_the_helper_app_asking_takes_a_due_schedule_the_clock_has_not_queued(plane, heroku):
    helper = _provisioned(plane, heroku, schedule="0 3 * * *")
    with connect(plane.config["DATABASE_URL"]) as conn:
        conn.execute("update resources set next_run_at = now() - interval '1 minute', run_mode = 'pulled'")
    claimed = helper.api("POST", "/runs/claim")
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["run"]["trigger"] == "schedule" and len(claimed.json()["run_token"]) > 40
    assert helper.newest_run()["state"] == "launched"
    assert helper.api("POST", "/runs/claim").status_code == 204  # the schedule moved on, and its run is taken
    following = datetime.datetime.fromisoformat(helper.resource()["next_run_at"].replace("Z", "+00:00"))
    assert following > datetime.datetime.now(datetime.timezone.utc)


def test_in_full_mode_runs_are_launched_and_the_helper_app_finds_nothing_due(plane, heroku):
    helper = _provisioned(plane, heroku)
    helper.api("POST", "/backups")
    assert work(plane) == 1 and _dyno_creates(heroku) == 1
    assert helper.newest_run()["state"] == "launched" and helper.resource()["run_mode"] == "launched"
    assert helper.api("POST", "/runs/claim").status_code == 204  # a Scheduler job set up ahead does no harm
    assert heroku.problems == []


@pytest.mark.parametrize("change, code, words", [
    (lambda env: env.update(REMORA_API_TOKEN="x" * 43), 2, "the control plane refused the request for a run (HTTP 401)"),
    (lambda env: env.update(REMORA_API_URL=env["REMORA_API_URL"].replace("127.0.0.1", "example.com")), 2,
     "REMORA_API_URL must be https (plain http only to this machine)"),
    (lambda env: env.update(REMORA_API_URL=env["REMORA_API_URL"] + "/backups"), 2,
     "REMORA_API_URL is not the add-on's resource URL"),
    (lambda env: env.pop("REMORA_API_TOKEN"), 2, "REMORA_API_TOKEN not set"),
], ids=["wrong-token", "plain-http-elsewhere", "not-a-resource-url", "no-token"])
def test_run_due_refuses_what_it_cannot_ask_with(plane, heroku, change, code, words):
    env = dict(_provisioned(plane, heroku).env)
    change(env)
    result = remora("run-due", env=env)
    assert (result.returncode, result.stdout) == (code, "") and words in result.stderr, result.stderr
    assert "x" * 43 not in result.stderr


def test_a_run_due_whose_configuration_is_refused_reports_the_failure(plane, heroku, gpg_env):
    helper = _provisioned(plane, heroku)
    with connect(plane.config["DATABASE_URL"]) as conn:
        conn.execute("update resources set run_mode = 'pulled'")
    helper.api("POST", "/backups")
    result = remora("run-due", env={**gpg_env, **helper.env, "REMORA_TARGET_URL": "ftp://nope"})
    assert result.returncode == 2 and "REMORA_TARGET_URL" in result.stderr
    failed = helper.newest_run()
    assert failed["state"] == "failed" and failed["exit_code"] == 2 and "REMORA_TARGET_URL" in failed["error"]


def test_a_helper_app_that_stops_asking_raises_backups_missing_once(app, launcher, control_db):
    with receiver() as hook:
        silent, _ = make_resource(app, alert_webhook=hook.url + "/silent")
        asking, _ = make_resource(app, alert_webhook=hook.url + "/asking")
        with app.extensions["remora.pool"].connection() as conn:
            for resource in (silent, asking):
                resources.pull(conn, resource["id"], "Heroku refused to start a dyno")
        with connect(control_db) as conn:
            conn.execute("update resources set pulled_at = now() - interval '2 hours'")
            conn.execute("update resources set last_asked_at = now() - interval '70 minutes' where id = %s",
                         (silent["id"],))
            conn.execute("update resources set last_asked_at = now() - interval '5 minutes' where id = %s",
                         (asking["id"],))
        clock_pass(app, times=3)
    [missing] = hook.requests
    assert missing["path"] == "/silent" and missing["body"]["event"] == "backups.missing"
    reason = missing["body"]["reason"]
    assert reason.startswith("the helper app has not asked for a run since ") and "it last asked at" in reason
    assert "`bin/remora-backup run-due`" in reason and launcher.specs == []


def test_the_dashboard_says_how_runs_start_and_how_to_set_up_the_scheduler_job(heroku_app):
    resource, _ = make_resource(heroku_app)
    browser = heroku_app.test_client()
    assert browser.post("/heroku/sso", data=sso_form(str(resource["id"]))).status_code == 303
    assert b"Runs are launched by the add-on" in browser.get("/dashboard").data
    with heroku_app.extensions["remora.pool"].connection() as conn:
        resources.pull(conn, resource["id"], "Heroku refused to start a dyno (HTTP 403)")
        conn.execute("update resources set last_asked_at = '2026-11-30T09:10:00Z' where id = %s", (resource["id"],))
    page = browser.get("/dashboard").get_data(as_text=True)
    assert "Runs start when the helper app asks for them: Heroku refused to start a dyno (HTTP 403)" in page
    assert "The helper app last asked 2026-11-30T09:10:00Z." in page
    assert "heroku addons:create scheduler:standard" in page and "`bin/remora-backup run-due` every 10 minutes" in page


def test_a_pulled_run_its_helper_app_never_asked_for_is_lost_saying_so(app, client, launcher, control_db):
    resource, token = make_resource(app)
    with app.extensions["remora.pool"].connection() as conn:
        resources.pull(conn, resource["id"], "Heroku refused to start a dyno")
    client.post(f"/api/v1/resources/{resource['id']}/backups", headers={"Authorization": f"Bearer {token}"})
    with connect(control_db) as conn:
        conn.execute("update runs set created_at = now() - interval '1 day'")
    clock_pass(app)
    with connect(control_db) as conn:
        run = conn.execute("select state, error from runs").fetchone()
    assert run["state"] == "lost" and launcher.specs == []
    assert "its helper app never asked for it (is its Heroku Scheduler job `bin/remora-backup run-due` there?)" \
        in run["error"]
