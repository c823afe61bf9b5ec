"""The dashboard in a real headless Chromium: log in through SSO, click "Back up now", see the new run; change
the settings in its form."""

from __future__ import annotations

import contextlib
import html
import urllib.parse
import zoneinfo

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from werkzeug.serving import make_server

from control import create_app, options
from tests.controlplane import SECRET_KEY, SSO_SALT, connect, make_resource, sso_form, work
from tests.servers.util import require_tool
from tests.servers.util import serving as serving_server  # this module's serving() serves an app

WAIT = 15  # seconds for a page to show what we expect


@pytest.fixture
def browser(tmp_path, monkeypatch):
    """Debian's Chromium through its own chromedriver: nothing is downloaded (the network is closed)."""
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = str(require_tool("/usr/bin/chromium"))
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(require_tool("/usr/bin/chromedriver"))), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@contextlib.contextmanager
def serving(app):
    """The app on a free loopback port, in a thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    with serving_server(server):
        yield f"http://127.0.0.1:{server.server_port}"


def _login_page(base: str, form: dict) -> str:
    """What Heroku's dashboard does: a form POSTed to the add-on's SSO URL."""
    fields = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in form.items())
    page = f'<form method="post" action="{base}/heroku/sso">{fields}<button id="open">Open Remora</button></form>'
    return "data:text/html," + urllib.parse.quote(page)


def test_log_in_through_sso_click_back_up_now_and_see_the_run(browser, control_db, launcher):
    app = create_app({"SECRET_KEY": SECRET_KEY, "DATABASE_URL": control_db, "LAUNCHER": launcher,
                      "HEROKU_SSO_SALT": SSO_SALT})
    resource, _ = make_resource(app, schedule="0 3 * * *")
    with serving(app) as base:
        browser.get(_login_page(base, sso_form(str(resource["id"]))))
        browser.find_element(By.ID, "open").click()
        _wait(browser).until(lambda d: d.current_url == f"{base}/dashboard")
        assert "No runs yet." in browser.find_element(By.ID, "runs").text
        assert browser.find_element(By.ID, "signed-in").text == "Signed in as dba@example.com"
        browser.find_element(By.ID, "back-up-now").click()
        _wait(browser).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#runs tr[data-run-id]"))
        [row] = browser.find_elements(By.CSS_SELECTOR, "#runs tr[data-run-id]")
        state = row.find_element(By.CLASS_NAME, "state").text
        run_id = row.get_attribute("data-run-id")
        work(app, launcher)
        reported = requests.post(
            f"{base}/api/v1/runs/{run_id}/events", timeout=5,
            headers={"Authorization": f"Bearer {launcher.specs[0].run_token}"},
            json={"type": "succeeded", "backup_id": "20260101T030000Z-abc123", "dump_bytes": 1000,
                  "encrypted_bytes": 2048, "sha256": "ef" * 32})
        assert reported.status_code == 200
        browser.refresh()
        finished = browser.find_element(By.CSS_SELECTOR, f'#runs tr[data-run-id="{run_id}"]').text
    assert "succeeded" in finished and "2,048 bytes" in finished and "20260101T030000Z-abc123" in finished
    app.extensions["remora.pool"].close()
    with connect(control_db) as conn:
        run = conn.execute("select id::text as id, state, trigger from runs").fetchone()
    assert run == {"id": run_id, "state": "succeeded", "trigger": "dashboard"} and state == "queued"
    assert [spec.run_id for spec in launcher.specs] == [run_id]


def test_change_the_settings_in_the_form_and_see_a_refusal_worded_as_provisioning_words_it(browser, control_db,
                                                                                          launcher):
    app = create_app({"SECRET_KEY": SECRET_KEY, "DATABASE_URL": control_db, "LAUNCHER": launcher,
                      "HEROKU_SSO_SALT": SSO_SALT})
    resource, _ = make_resource(app, schedule="0 3 * * *")
    with pytest.raises(options.OptionError) as provisioning:  # what provisioning answers for such a schedule
        options.validate({"schedule": "*/20 * * * *"}, policy=options.policy(app.config))
    with serving(app) as base:
        browser.get(_login_page(base, sso_form(str(resource["id"]))))
        browser.find_element(By.ID, "open").click()
        _wait(browser).until(lambda d: d.current_url == f"{base}/dashboard")
        _fill(browser, schedule="30 2 * * *", timezone="Europe/Paris")
        _wait(browser).until(lambda d: "30 2 * * *" in d.find_element(By.ID, "schedule-now").text)
        assert "(Europe/Paris), next at " in browser.find_element(By.ID, "schedule-now").text
        _fill(browser, schedule="*/20 * * * *", timezone="Europe/Paris")
        problem = _wait(browser).until(lambda d: d.find_elements(By.ID, "settings-problem"))[0].text
        assert problem == f"Not saved: {provisioning.value}"
        assert browser.find_element(By.ID, "schedule").get_attribute("value") == "*/20 * * * *"  # kept to correct
    app.extensions["remora.pool"].close()
    with connect(control_db) as conn:
        row = conn.execute("select schedule, timezone, next_run_at from resources").fetchone()
    assert (row["schedule"], row["timezone"]) == ("30 2 * * *", "Europe/Paris")
    assert row["next_run_at"].astimezone(zoneinfo.ZoneInfo("Europe/Paris")).strftime("%H:%M") == "02:30"


def _wait(browser) -> WebDriverWait:
    """Wait for a page; an element read as the old page goes (stale) is looked for again on the new one."""
    return WebDriverWait(browser, WAIT, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,))


def _fill(browser, **fields: str) -> None:
    """Type each field's new value over the old one, and save the form."""
    for name, value in fields.items():
        field = browser.find_element(By.ID, name)
        field.clear()
        field.send_keys(value)
    browser.find_element(By.ID, "save-settings").click()
