"""The v1 API: trigger, list and look up a resource's backups (API token), and the runner's events (run token)."""

from __future__ import annotations

import re

from flask import Blueprint, abort, current_app, jsonify, request

from control import db, resources, runs, tokens

bp = Blueprint("api", __name__, url_prefix="/api/v1")
MAX_PER_PAGE = 100


def bearer() -> str:
    """The request's bearer token; 401 without one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        abort(401, "missing bearer token")
    return token.strip()


def authorized_resource(resource_id) -> dict:
    """The resource whose API token came with the request: 401 for a bad token, 404 for another's."""
    token = bearer()
    with db.pool().connection() as conn:
        resource = resources.by_api_token(conn, token)
    if resource is None:
        abort(401, "invalid API token")
    if resource["id"] != resource_id:
        abort(404, "no such resource")
    return resource


def trigger(resource: dict, *, how: str) -> dict:
    """Create a run for ``resource`` and launch it now."""
    config = current_app.config
    with db.pool().connection() as conn:
        run, token = runs.create(conn, resource, trigger=how, time_to_live=config["RUN_TTL"])
    control_url = config["CONTROL_URL"] or request.url_root.rstrip("/")
    return runs.launch(db.pool(), current_app.extensions["remora.launcher"], run, token, resource, control_url)


@bp.post("/resources/<uuid:resource_id>/backups")
def create_backup(resource_id):
    run = trigger(authorized_resource(resource_id), how="api")
    return jsonify(run=runs.public(run)), 202


@bp.get("/resources/<uuid:resource_id>/backups")
def list_backups(resource_id):
    authorized_resource(resource_id)
    number = request.args.get("page", 1, type=int)
    per_page = request.args.get("per_page", 20, type=int)
    if number < 1 or not 1 <= per_page <= MAX_PER_PAGE:
        abort(400, f"page must be 1 or more and per_page from 1 to {MAX_PER_PAGE}")
    with db.pool().connection() as conn:
        # one more than asked for tells whether there is a next page
        found = runs.newest(conn, resource_id, limit=per_page + 1, offset=(number - 1) * per_page)
    return jsonify(
        runs=[runs.public(run) for run in found[:per_page]],
        page=number,
        per_page=per_page,
        next_page=number + 1 if len(found) > per_page else None,
    )


@bp.get("/resources/<uuid:resource_id>/backups/<backup_id>")
def show_backup(resource_id, backup_id):
    """The run that reported backup ``backup_id``: the runner asks it as a witness before a restore."""
    authorized_resource(resource_id)
    if not re.fullmatch(r"[0-9A-Za-z-]{1,64}", backup_id):
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
    token = bearer()
    with db.pool().connection() as conn:
        resource = resources.by_api_token(conn, token)
        if resource is None:
            abort(401, "invalid API token")
        run = conn.execute("select * from runs where id = %s", (run_id,)).fetchone()
    if run is None or run["resource_id"] != resource["id"]:
        abort(404, "no such run")
    return jsonify(run=runs.public(run))


@bp.post("/runs/<uuid:run_id>/events")
def run_event(run_id):
    token = bearer()
    event = request.get_json(silent=True)
    with db.pool().connection() as conn:
        run = conn.execute("select * from runs where id = %s", (run_id,)).fetchone()
        if run is None or not tokens.matches(token, run["token_hash"]):
            abort(401, "invalid run token")
        if not runs.accepts_events(run, grace=current_app.config["LOST_GRACE"]):
            abort(403, f"run has ended ({run['state']}) or outlived its time to live")
        if not isinstance(event, dict):
            abort(400, "the body must be a JSON object")
        try:
            updated = runs.apply_event(conn, run_id, event)
        except runs.EventError as e:
            abort(400, str(e))
    if updated is None:
        abort(403, "run has ended")
    return jsonify(run=runs.public(updated))
