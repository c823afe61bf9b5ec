"""Resources: one per add-on (or per `resource create`), each with its API token, schedule and webhook.

A resource's options are checked in control/options.py at every change (``change``). It is
launched, or pulled once Heroku will not start its dynos (``pull``; control/pulling.py).

An API token is random and stored as its SHA-256. A Heroku resource's token is also kept sealed,
so that a repeated provision (Heroku delivers at least once) answers the same one. The alert
webhook is kept sealed too: its URL often carries the customer's secret.
"""

from __future__ import annotations

import datetime
import urllib.parse
import uuid
from collections.abc import Mapping

from psycopg import Connection

from control import options, schedules, tokens
from control.options import Options

BYO = "byo"  # the plan whose backups go to the customer's own target; every other plan stores in the add-on's
SCHEDULER_JOB = "bin/remora-backup run-due"  # what a pulled resource's helper app runs (control/pulling.py)
SCHEDULER_SETUP = ("add Heroku Scheduler to the helper app (heroku addons:create scheduler:standard -a HELPER_APP) "
                   f"and, in its dashboard, the job `{SCHEDULER_JOB}` every 10 minutes")


def create(conn: Connection, config: Mapping, options: Options, *, app: str | None,
           resource_id: uuid.UUID | None = None, plan: str = BYO, region: str | None = None,
           keep_token: bool = False) -> tuple[dict, str] | None:
    """Insert a resource with validated ``options``; its row and API token, or None if ``resource_id`` exists.

    ``keep_token`` seals the token too, for a provision that Heroku may repeat.
    """
    api_token = tokens.new_token()
    now = datetime.datetime.now(datetime.timezone.utc)
    next_run_at = schedules.next_after(options.schedule, options.timezone, now) if options.schedule else None
    webhook = tokens.seal(config, options.alert_webhook) if options.alert_webhook else None
    row = conn.execute(
        "insert into resources (id, app, plan, region, api_token_hash, api_token_sealed, schedule, timezone,"
        " next_run_at, alert_webhook_sealed, retention) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " on conflict (id) do nothing returning *",
        (resource_id or uuid.uuid4(), app, plan, region, tokens.digest(api_token),
         tokens.seal(config, api_token) if keep_token else None, options.schedule, options.timezone, next_run_at,
         webhook, options.retention),
    ).fetchone()
    return None if row is None else (row, api_token)


def managed(resource: dict) -> bool:
    """Whether the resource's plan stores its backups in the add-on's storage."""
    return resource["plan"] != BYO


def change(conn: Connection, config: Mapping, resource: dict, given: Mapping) -> dict | None:
    """Apply ``given`` to the resource's options, checked as provisioning checks them (OptionError if not);
    the resource as it is now (None if it was deprovisioned meanwhile).

    The schedule's next time is computed again only when its schedule or time zone changed, so
    that the clock's next pass uses it, and a change of anything else never skips a due time.
    """
    chosen = options.changed(resource, given, policy=options.policy(config))
    sets, values = [], []
    if {"schedule", "timezone"} & set(given):
        now = datetime.datetime.now(datetime.timezone.utc)
        following = schedules.next_after(chosen.schedule, chosen.timezone, now) if chosen.schedule else None
        sets.append("schedule = %s, timezone = %s, next_run_at = %s, schedule_error = null")
        values += [chosen.schedule, chosen.timezone, following]
    if "alert_webhook" in given:
        sets.append("alert_webhook_sealed = %s")
        values.append(tokens.seal(config, chosen.alert_webhook) if chosen.alert_webhook else None)
    if "retention" in given:
        sets.append("retention = %s")
        values.append(chosen.retention)
    return conn.execute(f"update resources set {', '.join(sets)} where id = %s and deprovisioned_at is null"
                        " returning *", (*values, resource["id"])).fetchone()


def webhook_shown(config: Mapping, resource: dict) -> str | None:
    """The alert webhook as its owner is shown it: scheme and host only (its path often holds a secret)."""
    if resource["alert_webhook_sealed"] is None:
        return None
    try:
        parts = urllib.parse.urlsplit(tokens.unseal(config, resource["alert_webhook_sealed"]))
    except tokens.Unreadable:
        return "(sealed with a key this control plane no longer has: set it again)"
    return f"{parts.scheme}://{parts.hostname}/…"


def kept_token(conn: Connection, config: Mapping, resource: dict) -> str:
    """The API token a repeated provision answers: the sealed one, or a new one for a resource that has none."""
    if resource["api_token_sealed"] is not None:
        return tokens.unseal(config, resource["api_token_sealed"])
    # provisioned before tokens were kept: a new token replaces the old, as rotating it would
    api_token = tokens.new_token()
    conn.execute("update resources set api_token_hash = %s, api_token_sealed = %s where id = %s",
                 (tokens.digest(api_token), tokens.seal(config, api_token), resource["id"]))
    return api_token


def by_api_token(conn: Connection, api_token: str) -> dict | None:
    """The live resource this API token belongs to.

    Looked up by the token's SHA-256: the lookup's timing tells nothing about the token itself.
    """
    return conn.execute(
        "select * from resources where api_token_hash = %s and deprovisioned_at is null",
        (tokens.digest(api_token),),
    ).fetchone()


def pull(conn: Connection, resource_id, reason: str) -> bool:
    """Make a resource pulled (its helper app asks for runs), keeping the first reason; True if it was launched."""
    return conn.execute(
        "update resources set run_mode = 'pulled', run_mode_reason = %s, pulled_at = now()"
        " where id = %s and run_mode = 'launched'",
        (reason, resource_id),
    ).rowcount == 1


def get(conn: Connection, resource_id) -> dict | None:
    return conn.execute(
        "select * from resources where id = %s and deprovisioned_at is null", (resource_id,)
    ).fetchone()

