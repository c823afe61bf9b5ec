"""The dashboard: the SSO landing page, listing a resource's runs, with a "Back up now" button."""

from __future__ import annotations

import uuid

from flask import Blueprint, abort, redirect, render_template, request, session, url_for

from control import api, db, deliveries, resources, runs, tokens

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")
SHOWN = 50  # runs listed


def _resource() -> dict:
    """The resource this browser logged in to through SSO; 401 without a session."""
    if "resource_id" not in session:
        abort(401, "log in from the add-on's page in Heroku's dashboard")
    with db.pool().connection() as conn:
        resource = resources.get(conn, uuid.UUID(session["resource_id"]))
    if resource is None:
        session.clear()
        abort(401, "this add-on no longer exists")
    return resource


@bp.get("")
def index():
    resource = _resource()
    with db.pool().connection() as conn:
        shown = [runs.public(run) for run in runs.newest(conn, resource["id"], limit=SHOWN)]
        delivery = deliveries.latest(conn, resource["id"])
    return render_template("dashboard.html", resource=resource, runs=shown, delivery=delivery, csrf=session["csrf"])


@bp.post("/backups")
def back_up_now():
    resource = _resource()
    if not tokens.same(request.form.get("csrf", ""), session.get("csrf", "")):
        abort(403, "the form is stale; reload the page")
    api.trigger(resource, how="dashboard")
    return redirect(url_for("dashboard.index"), code=303)
