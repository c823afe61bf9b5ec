"""The v1 API: a resource's settings, its backups (API token), its helper app's claims, and the runner's events.

The resource's API token (REMORA_API_TOKEN on the helper app) opens everything under
``/resources/<id>``; a run's token opens only that run's events.
"""

from __future__ import annotations

import datetime

from flask import Blueprint, abort, current_app, jsonify, request
from werkzeug.exceptions import TooManyRequests

from control import db, inputs, options, pulling, resources, runs, tokens, worker

bp = Blueprint("api", __name__, url_prefix="/api/v1")
MAX_PER_PAGE = 100
MAX_PAGE = 10_000
TRIGGER_WINDOW = datetime.timedelta(hours=1)


def bearer() -> str:
    """The request's bearer token; 401 without one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        abort(401, "missing bearer token")
    return token.strip()


def token_resource() -> dict:
    """The live resource whose API token came with the request; 401 for a bad token."""
    token = bearer()
    with db.pool().connection() as conn:
        resource = resources.by_api_token(conn, token)
    if resource is None:
        abort(401, "invalid API token")
    return resource


def authorized_resource(resource_id) -> dict:
    """The resource whose API token came with the request: 401 for a bad token, 404 for another's."""
    resource = token_resource()
    if resource["id"] != resource_id:
        abort(404, "no such resource")
    return resource


def authorized_run(run_id) -> dict:
    """The run whose token came with the request; 401 for a bad token (a run not claimed yet has none)."""
    token = bearer()
    with db.pool().connection() as conn:
        run = runs.get(conn, run_id)
    if run is None or not tokens.matches(token, run["token_hash"]):
        abort(401, "invalid run token")
    return run


def trigger(resource: dict, *, how: str) -> tuple[dict, bool]:
    """Queue a run of ``resource`` for a worker to launch; (the run, True), or (its active run, False).

    Nothing is launched here: a slow or rate-limited launcher never holds a request up.
    """
    config = current_app.config
    with db.pool().connection() as conn:
        run = runs.active(conn, resource["id"])
        if run is None:
            _within_rate_limit(conn, resource["id"], config["TRIGGERS_PER_HOUR"])
            run = runs.enqueue(conn, resource["id"], trigger=how, time_to_live=config["RUN_TTL"])
            if run is not None:
                worker.notify(conn)
                return run, True
            run = runs.active(conn, resource["id"])  # queued by another request at the same moment
    if run is None:
        abort(409, "a run of this resource was queued and ended meanwhile; ask again")
    return run, False


def _within_rate_limit(conn, resource_id, per_hour: int) -> None:
    """429 once the resource's triggers in the past hour reach ``per_hour``."""
    recent = conn.execute(
        "select count(*) as n, min(created_at) as oldest from runs where resource_id = %s"
        " and trigger in ('api', 'dashboard') and created_at > now() - %s", (resource_id, TRIGGER_WINDOW),
    ).fetchone()
    if recent["n"] >= per_hour:
        wait = recent["oldest"] + TRIGGER_WINDOW - datetime.datetime.now(datetime.timezone.utc)
        raise TooManyRequests(f"at most {per_hour} backups an hour may be asked for",
                              retry_after=max(1, int(wait.total_seconds()) + 1))


def public_resource(config, resource: dict) -> dict:
    """A resource as its owner sees it: its settings, an open incident, and how its runs start."""
    return {
        "id": str(resource["id"]), "app": resource["app"], "plan": resource["plan"],
        "schedule": resource["schedule"], "timezone": resource["timezone"],
        "next_run_at": runs.iso(resource["next_run_at"]), "schedule_error": resource["schedule_error"],
        "alert_webhook": resources.webhook_shown(config, resource), "retention": resource["retention"],
        "incident": {"reason": resource["alert_reason"], "since": runs.iso(resource["alert_opened_at"])}
        if resource["alert_open"] else None,
        "run_mode": resource["run_mode"], "run_mode_reason": resource["run_mode_reason"],
        "last_asked_at": runs.iso(resource["last_asked_at"]),
        "scheduler_job": {"command": resources.SCHEDULER_JOB, "every": "10 minutes",
                          "setup": resources.SCHEDULER_SETUP},
    }


def change_options(resource: dict, given) -> dict:
    """Apply ``given`` to the resource's options, checked as provisioning checks them; OptionError if not."""
    with db.pool().connection() as conn:
        changed = resources.change(conn, current_app.config, resource, given)
    if changed is None:
        abort(404, "this add-on no longer exists")
    return changed


@bp.get("/resources/<uuid:resource_id>")
def show_resource(resource_id):
    return jsonify(resource=public_resource(current_app.config, authorized_resource(resource_id)))


@bp.patch("/resources/<uuid:resource_id>")
def change_resource(resource_id):
    """Change the schedule, time zone or alert webhook; absent ones stay, ``null`` clears one."""
    resource = authorized_resource(resource_id)
    try:
        changed = change_options(resource, inputs.json_object())
    except options.OptionError as e:
        abort(422, str(e))
    return jsonify(resource=public_resource(current_app.config, changed))


@bp.post("/resources/<uuid:resource_id>/runs/claim")
def claim_run(resource_id):
    """The helper app asks for a queued or due run (`run-due`): the run and its token, or 204."""
    authorized_resource(resource_id)
    with db.pool().connection() as conn:
        handed = pulling.hand_over(conn, resource_id, current_app.config)
    if handed is None:
        return "", 204
    run, token = handed
    return jsonify(run=runs.public(run), run_token=token)


@bp.post("/resources/<uuid:resource_id>/backups")
def create_backup(resource_id):
    run, queued = trigger(authorized_resource(resource_id), how="api")
    if queued:
        return jsonify(run=runs.public(run)), 202
    return jsonify(run=runs.public(run), message="a backup of this resource is already queued or running"), 200


@bp.get("/resources/<uuid:resource_id>/backups")
def list_backups(resource_id):
    authorized_resource(resource_id)
    number = inputs.whole_number("page", 1, least=1, most=MAX_PAGE)
    per_page = inputs.whole_number("per_page", 20, least=1, most=MAX_PER_PAGE)
    with db.pool().connection() as conn:
        # one more than asked for tells whether there is a next page
        found = runs.newest(conn, resource_id, limit=per_page + 1, offset=(number - 1) * per_page)
    return jsonify(
        runs=[runs.public(run) for run in found[:per_page]],
        page=number,
        per_page=per_page,
        next_page=number + 1 if len(found) > per_page and number < MAX_PAGE else None,
    )


@bp.get("/resources/<uuid:resource_id>/backups/<backup_id>")
def show_backup(resource_id, backup_id):
    """The run that reported backup ``backup_id``: the runner asks it as a witness before a restore."""
    authorized_resource(resource_id)
    if not runs.BACKUP_ID.fullmatch(backup_id):
        abort(400, "not a backup id")
    with db.pool().connection() as conn:
        run = conn.execute(
            "select * from runs where resource_id = %s and backup_id = %s and state = 'succeeded'"
            " order by finished_at desc limit 1", (resource_id, backup_id),
        ).fetchone()
    if run is None:
        abort(404, f"no run of this resource reported backup {backup_id}")
    return jsonify(run=runs.public(run))


@bp.get("/runs/<uuid:run_id>")
def show_run(run_id):
    resource = token_resource()
    with db.pool().connection() as conn:
        run = runs.get(conn, run_id)
    if run is None or run["resource_id"] != resource["id"]:
        abort(404, "no such run")
    return jsonify(run=runs.public(run))


@bp.post("/runs/<uuid:run_id>/events")
def run_event(run_id):
    run = authorized_run(run_id)
    event = inputs.json_object()  # read only once the token is good
    with db.pool().connection() as conn:
        try:
            updated = runs.record_event(conn, run, event, grace=current_app.config["LOST_GRACE"])
        except runs.EventError as e:
            abort(400, str(e))
        except runs.StartedElsewhere:
            abort(409, "another process of this run has started it: this one must stop")
        except runs.RunEnded:
            abort(403, "run has ended or outlived its time to live")
    return jsonify(run=runs.public(updated))
