"""Alert webhooks: refused where they would reach the control plane's own network, by the address they resolve to.

The production policy is what is tried here; a test hands in its own name service only to make a
name resolve where it wants (there is no DNS to lean on), and development only to reach the
tests' own servers on loopback.
"""

from __future__ import annotations

import base64
import socket
import subprocess

import pytest

from control import deliveries, options, tokens, webhooks
from control.webhooks import Policy, WebhookError
from tests.controlplane import (ADDON_ID, ADDON_PASSWORD, REPO, connect, control_argv, control_env, make_resource,
                               provision_body)
from tests.receiver import receiver

PRODUCTION = Policy()
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{ADDON_ID}:{ADDON_PASSWORD}".encode()).decode()}


def resolving(names: dict[str, list[str]]):
    """A name service that knows only ``names``."""
    def resolve(host, port, **kwargs):
        if host not in names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in names[host]]
    return resolve


@pytest.mark.parametrize("url, kind", [
    ("https://localhost/hook", "loopback"),  # the system's own name service: /etc/hosts
    ("https://127.1/hook", "loopback"),
    ("https://2130706433/hook", "loopback"),
    ("https://0x7f000001/hook", "loopback"),
    ("https://[::1]/hook", "loopback"),
    ("https://[::ffff:127.0.0.1]/hook", "loopback"),
    ("https://[64:ff9b::7f00:1]/hook", "loopback"),
    ("https://10.1.2.3/hook", "private"),
    ("https://192.168.0.10/hook", "private"),
    ("https://172.16.5.4/hook", "private"),
    ("https://169.254.169.254/latest/meta-data/", "link-local"),
    ("https://[fe80::1]/hook", "link-local"),
    ("https://224.0.0.1/hook", "multicast"),
    ("https://0.0.0.0/hook", "unspecified"),
    ("https://100.64.0.1/hook", "not public"),
    ("https://240.0.0.1/hook", "reserved"),
], ids=lambda value: value if "/" not in value else value.split("/")[2])
def test_webhooks_that_resolve_to_our_own_network_are_refused(url, kind):
    with pytest.raises(options.OptionError, match=f"resolves to .*, a {kind} address: not allowed"):
        options.validate({"alert_webhook": url}, policy=PRODUCTION)


def test_a_name_is_refused_if_any_of_its_addresses_is():
    policy = Policy(resolve=resolving({"hooks.example": ["93.184.216.34", "10.0.0.5"], "ok.example": ["93.184.216.34"]}))
    with pytest.raises(WebhookError, match="'hooks.example' resolves to 10.0.0.5, a private address"):
        policy.validate("https://hooks.example/x")
    assert policy.validate("https://ok.example/x") == "https://ok.example/x"
    for refused, why in [("http://ok.example/x", "must be an https:// URL"), ("https://u:p@ok.example/", "user name"),
                         ("https://nowhere.example/", "does not resolve"), ("ftp://ok.example/", "https://")]:
        with pytest.raises(WebhookError, match=why):
            policy.validate(refused)


def test_provisioning_refuses_a_loopback_webhook_before_the_grant_is_spent(heroku_app, heroku):
    answer = heroku_app.test_client().post(
        "/heroku/resources", json=provision_body(heroku, alert_webhook="https://localhost:8080/hook"), headers=BASIC)
    assert answer.status_code == 422 and "a loopback address: not allowed" in answer.json["message"]
    assert heroku.requests == []


def test_a_name_that_resolves_elsewhere_at_delivery_is_checked_again(app):
    with receiver() as hook:
        port = int(hook.url.rsplit(":", 1)[1])
        resource, _ = make_resource(app)
        with connect(app.config["DATABASE_URL"]) as conn:  # a name that resolved far away when it was set
            conn.execute("update resources set alert_webhook_sealed = %s", (tokens.seal(
                app.config, f"https://rebinding.example:{port}/hook"),))
        _queue_delivery(app, resource["id"])
        # the name now resolves to the control plane's own machine, where the receiver listens
        rebound = Policy(resolve=resolving({"rebinding.example": ["127.0.0.1"]}))
        assert deliveries.deliver(app.extensions["remora.pool"], app.config, policy=rebound) == 0
    assert hook.requests == []
    with connect(app.config["DATABASE_URL"]) as conn:
        delivery = conn.execute("select * from webhook_deliveries").fetchone()
    assert "resolves to 127.0.0.1, a loopback address: not allowed" in delivery["last_error"]


def test_the_address_checked_is_the_address_connected_to():
    with receiver() as hook:
        port = int(hook.url.rsplit(":", 1)[1])
        # a name only this policy knows: had the connection looked it up again, it would have failed
        pinned = Policy(development=True, resolve=resolving({"hooks.test": ["127.0.0.1"]}))
        assert webhooks.post(f"http://hooks.test:{port}/hook?k=v", {"event": "x"}, policy=pinned, deadline=5) == 200
    [request] = hook.requests
    assert (request["path"], request["headers"]["Host"], request["body"]) == ("/hook?k=v", f"hooks.test:{port}",
                                                                              {"event": "x"})


def test_a_redirect_is_not_followed(app):
    with receiver() as elsewhere, receiver() as hook:
        hook.status, hook.headers = 307, {"Location": elsewhere.url + "/stolen"}
        with pytest.raises(WebhookError, match="answered HTTP 307: redirects are not followed"):
            webhooks.post(hook.url, {"event": "x"}, policy=options.policy(app.config), deadline=5)
    assert len(hook.requests) == 1 and elsewhere.requests == []


def _queue_delivery(app, resource_id) -> None:
    with connect(app.config["DATABASE_URL"]) as conn:
        conn.execute("insert into webhook_deliveries (resource_id, body) values (%s, '{\"event\": \"backups.missing\"}')",
                     (resource_id,))


def test_webhook_urls_are_stored_sealed_and_migrate_seals_those_stored_before(app, control_db):
    secret_url = "http://127.0.0.1:9/hook?token=s3cr3t-webhook-token"
    resource, _ = make_resource(app, alert_webhook=secret_url)
    legacy, _ = make_resource(app)
    with connect(control_db) as conn:
        conn.execute("update resources set alert_webhook_legacy = %s where id = %s", (secret_url, legacy["id"]))
    result = subprocess.run(control_argv("migrate"), env=control_env(control_db), cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and "sealed 1 alert webhook URLs stored in plaintext" in result.stderr
    with connect(control_db) as conn:
        dump = conn.execute("select string_agg(r::text, ' ') as everything from resources r").fetchone()["everything"]
        rows = conn.execute("select id, alert_webhook_sealed, alert_webhook_legacy from resources").fetchall()
    assert "s3cr3t-webhook-token" not in dump
    assert [(row["alert_webhook_legacy"], tokens.unseal(app.config, row["alert_webhook_sealed"])) for row in rows] == \
        [(None, secret_url)] * 2
