"""The Heroku Add-on Partner API (provision, plan change, deprovision) and SSO to the dashboard.

Heroku delivers at least once, so every call is idempotent on the add-on's ``uuid``. A repeated
provision answers the same config: the resource's random API token is kept sealed for that.
Options are checked before the OAuth grant is exchanged: a refused provision spends no grant.
"""

from __future__ import annotations

import datetime
import time
import uuid

from flask import Blueprint, abort, current_app, jsonify, redirect, request, session, url_for

from control import db, inputs, keys, oauth, options, resources, tokens
from control import sso as heroku_sso

bp = Blueprint("heroku", __name__, url_prefix="/heroku")
DEFAULT_SCHEDULE = "0 3 * * *"
PLAN = r"[A-Za-z0-9][A-Za-z0-9:_.-]*"
REGION = r"[A-Za-z0-9:_./-]*"


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


def _answer(resource_id, api_token: str, *, status: int, pulled: bool = False):
    base = current_app.config["CONTROL_URL"] or request.url_root.rstrip("/")
    config = {"REMORA_API_URL": f"{base}/api/v1/resources/{resource_id}", "REMORA_API_TOKEN": api_token}
    message = (f"Remora's backups run when the helper app asks for them: {resources.SCHEDULER_SETUP}." if pulled
               else "Remora will launch your backups.")
    return jsonify(id=str(resource_id), config=config, message=message), status


def _grant(body: dict) -> tuple[str, datetime.datetime] | None:
    """The provision's OAuth grant code and when it expires; None when Heroku sent none (400 if malformed)."""
    grant = body.get("oauth_grant")
    if grant is None:
        return None
    code = inputs.text(grant.get("code") if isinstance(grant, dict) else None, name="oauth_grant.code",
                       pattern=r"[A-Za-z0-9._~-]+", most=500)
    try:
        expires_at = datetime.datetime.fromisoformat(str(grant.get("expires_at")).replace("Z", "+00:00"))
    except ValueError:
        expires_at = None
    now = datetime.datetime.now(datetime.timezone.utc)
    if expires_at is None or expires_at.tzinfo is None or expires_at > now + oauth.GRANT_LIFETIME:
        expires_at = now + oauth.GRANT_LIFETIME  # never trust a grant to live longer than Heroku says they do
    return code, expires_at


@bp.post("/resources")
def provision():
    """A new add-on: its options checked, its grant kept for later, its config answered at once."""
    body = inputs.json_object()
    try:
        resource_id = uuid.UUID(str(body.get("uuid")))
    except ValueError:
        abort(400, "uuid is required")
    grant = _grant(body)
    plan = inputs.text(body.get("plan", "default"), name="plan", pattern=PLAN)
    region = inputs.text(body.get("region", ""), name="region", pattern=REGION) or None
    if (repeated := _repeated(resource_id)) is not None:
        return repeated  # Heroku asked again: the same answer, and the grant kept the first time stays
    try:
        chosen = options.validate(body.get("options") or {}, policy=options.policy(current_app.config),
                                  default_schedule=DEFAULT_SCHEDULE)
    except options.OptionError as e:
        abort(422, str(e))
    with db.pool().connection() as conn:
        created = resources.create(conn, current_app.config, chosen, app=None, resource_id=resource_id, plan=plan,
                                   region=region, keep_token=True)
        if created is not None and grant is None:
            resources.pull(conn, resource_id, "Heroku sent no authorization with the provision")
        elif created is not None:
            oauth.keep_grant(conn, current_app.config, resource_id, *grant)
    if created is None:  # provisioned by a request just before this one
        return _repeated(resource_id)
    return _answer(resource_id, created[1], status=201, pulled=grant is None)


def _repeated(resource_id):
    """The answer to a provision of an add-on that exists already (410 once deprovisioned), or None."""
    with db.pool().connection() as conn:
        existing = conn.execute("select * from resources where id = %s", (resource_id,)).fetchone()
        if existing is None:
            return None
        if existing["deprovisioned_at"] is not None:
            abort(410, "this add-on was deprovisioned")
        try:
            api_token = resources.kept_token(conn, current_app.config, existing)
        except tokens.Unreadable as e:
            abort(503, f"the add-on's API token cannot be read: {e}")
    return _answer(resource_id, api_token, status=200, pulled=existing["run_mode"] == "pulled")


@bp.put("/resources/<uuid:resource_id>")
def change_plan(resource_id):
    plan = inputs.text(inputs.json_object().get("plan"), name="plan", pattern=PLAN)
    with db.pool().connection() as conn:
        found = conn.execute("update resources set plan = case when deprovisioned_at is null then %s else plan end"
                             " where id = %s returning deprovisioned_at", (plan, resource_id)).fetchone()
    if found is None:
        abort(404, "no such add-on")
    if found["deprovisioned_at"] is not None:
        abort(410, "this add-on was deprovisioned")
    return jsonify(message=f"Plan changed to {plan}.")


@bp.delete("/resources/<uuid:resource_id>")
def deprovision(resource_id):
    """Stop its schedule and forget every secret it kept sealed; 410 for one already gone (or never here)."""
    forget = ", ".join(f"{column} = null" for column in keys.SEALED)
    with db.pool().connection() as conn:
        found = conn.execute(f"update resources set deprovisioned_at = now(), next_run_at = null, {forget}"
                             " where id = %s and deprovisioned_at is null", (resource_id,)).rowcount
    if not found:
        abort(410, "this add-on is already deprovisioned")
    return "", 204


@bp.post("/sso")
def sso():
    """Heroku's SSO form (control/sso.py checks it): a session for that resource; each form opens one."""
    try:
        login = heroku_sso.check(request.form, salt=current_app.config["HEROKU_SSO_SALT"], now=time.time())
    except heroku_sso.SSOError as e:
        abort(403, str(e))
    with db.pool().connection() as conn:
        resource = resources.get(conn, login.resource_id)
        if resource is None:
            abort(403, "no such add-on")
        # a form seen within its window (a replay) opens no second session
        conn.execute("delete from sso_logins where used_at < now() - make_interval(secs => %s)",
                     (2 * heroku_sso.MAX_AGE,))
        if not conn.execute("insert into sso_logins (resource_id, timestamp) values (%s, %s)"
                            " on conflict do nothing", (resource["id"], login.timestamp)).rowcount:
            abort(403, heroku_sso.STALE)
    session.clear()
    session.update(resource_id=str(resource["id"]), csrf=tokens.new_token(), email=login.email,
                   nav_data=(request.form.get("nav-data") or "")[:1000])
    return redirect(url_for("dashboard.index"), code=303)
