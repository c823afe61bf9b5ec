"""The Heroku Add-on Partner API (provision, plan change, deprovision) and SSO to the dashboard.

Heroku delivers at least once, so every call is idempotent on the add-on's ``uuid``. A repeated
provision answers the same config: the API token of a Heroku resource is derived from
REMORA_SECRET_KEY and the uuid rather than stored.
"""

from __future__ import annotations

import hashlib
import time
import uuid

from flask import Blueprint, abort, current_app, jsonify, redirect, request, session, url_for

from control import db, oauth, resources, tokens

bp = Blueprint("heroku", __name__, url_prefix="/heroku")
SSO_MAX_AGE = 300  # seconds either side of now that an SSO timestamp may be
DEFAULT_SCHEDULE = "0 3 * * *"


@bp.before_request
def _partner_auth():
    """HTTP Basic with the add-on manifest's id and password, compared in constant time (not for SSO)."""
    if request.endpoint == "heroku.sso":
        return
    given = request.authorization
    config = current_app.config
    if given is None or given.type != "basic":
        abort(401, "Heroku's add-on credentials are required")
    # both compared every time, so the answer's timing tells nothing about which one was wrong
    id_ok = tokens.same(given.username or "", config["HEROKU_ADDON_ID"] or "")
    password_ok = tokens.same(given.password or "", config["HEROKU_ADDON_PASSWORD"] or "")
    if not (id_ok and password_ok):
        abort(401, "Heroku's add-on credentials are required")


def _answer(resource_id, api_token: str, *, status: int):
    base = current_app.config["CONTROL_URL"] or request.url_root.rstrip("/")
    config = {"REMORA_API_URL": f"{base}/api/v1/resources/{resource_id}", "REMORA_API_TOKEN": api_token}
    return jsonify(id=str(resource_id), config=config, message="Remora will launch your backups."), status


@bp.post("/resources")
def provision():
    body = request.get_json(silent=True) or {}
    try:
        resource_id = uuid.UUID(str(body.get("uuid")))
        code = body["oauth_grant"]["code"]
    except (ValueError, KeyError, TypeError):
        abort(400, "uuid and oauth_grant.code are required")
    api_token = tokens.derived(current_app.config["SECRET_KEY"], "api-token", str(resource_id))
    with db.pool().connection() as conn:
        existing = conn.execute("select deprovisioned_at from resources where id = %s", (resource_id,)).fetchone()
    if existing is not None:
        if existing["deprovisioned_at"] is not None:
            abort(410, "this add-on was deprovisioned")
        return _answer(resource_id, api_token, status=200)
    options = body.get("options") or {}
    try:
        resources.check_settings(schedule=options.get("schedule", DEFAULT_SCHEDULE),
                                 timezone=options.get("timezone", "UTC"), alert_webhook=options.get("alert_webhook"))
        grant = oauth.exchange(current_app.config, grant_type="authorization_code", code=code)
    except resources.SettingError as e:
        abort(422, str(e))
    except oauth.OAuthError as e:
        abort(503, f"could not complete the authorization: {e}")
    with db.pool().connection() as conn:
        resources.create(conn, app=None, resource_id=resource_id, plan=str(body.get("plan", "")),
                         region=body.get("region"), schedule=options.get("schedule", DEFAULT_SCHEDULE),
                         timezone=options.get("timezone", "UTC"), alert_webhook=options.get("alert_webhook"),
                         api_token=api_token)
        oauth.store(conn, current_app.config, resource_id, grant)
    return _answer(resource_id, api_token, status=201)


@bp.put("/resources/<uuid:resource_id>")
def change_plan(resource_id):
    plan = (request.get_json(silent=True) or {}).get("plan")
    if not isinstance(plan, str) or not plan:
        abort(400, "plan is required")
    with db.pool().connection() as conn:
        if conn.execute("update resources set plan = %s where id = %s and deprovisioned_at is null",
                        (plan, resource_id)).rowcount == 0:
            abort(404, "no such resource")
    return jsonify(message=f"Plan changed to {plan}.")


@bp.delete("/resources/<uuid:resource_id>")
def deprovision(resource_id):
    with db.pool().connection() as conn:
        found = conn.execute(
            "update resources set deprovisioned_at = coalesce(deprovisioned_at, now()), next_run_at = null,"
            " oauth_access_token = null, oauth_refresh_token = null where id = %s", (resource_id,)).rowcount
    if not found:
        abort(404, "no such resource")
    return "", 204


@bp.post("/sso")
def sso():
    """Heroku's SSO form: the resource id, a timestamp and sha1("id:salt:timestamp")."""
    form = request.form
    resource_id = form.get("resource_id") or form.get("id") or ""
    token = form.get("resource_token") or form.get("token") or ""
    timestamp = form.get("timestamp", "")
    salt = current_app.config["HEROKU_SSO_SALT"]
    if not salt or not timestamp.isdigit() or abs(time.time() - int(timestamp)) > SSO_MAX_AGE:
        abort(403, "the login link is stale or invalid; open the add-on from Heroku's dashboard again")
    expected = hashlib.sha1(f"{resource_id}:{salt}:{timestamp}".encode()).hexdigest()
    if not tokens.same(token, expected):
        abort(403, "the login link is stale or invalid; open the add-on from Heroku's dashboard again")
    try:
        with db.pool().connection() as conn:
            resource = resources.get(conn, uuid.UUID(resource_id))
    except ValueError:
        resource = None
    if resource is None:
        abort(403, "no such add-on")
    session.clear()
    session.update(resource_id=str(resource["id"]), csrf=tokens.new_token(), nav_data=form.get("nav-data"))
    return redirect(url_for("dashboard.index"), code=303)
