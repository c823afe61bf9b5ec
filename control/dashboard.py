"""The dashboard: the SSO landing page, listing a resource's runs, with a "Back up now" button, its
settings, and the backups in the add-on's storage with a short-lived download link each.

Every form carries the session's CSRF field; the settings are checked as provisioning checks them
(``api.change_options``), and a refused change shows the same message the API answers.
"""

from __future__ import annotations

import uuid

from flask import Blueprint, abort, current_app, redirect, render_template, request, session, url_for

from control import api, db, deliveries, options, resources, runs, tokens
from runner import catalog
from runner.errors import ObjectNotFound, StorageError

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


def _checked_form() -> dict:
    """The signed-in resource, once the form's CSRF field matches the session's (403 otherwise)."""
    resource = _resource()
    if not tokens.same(request.form.get("csrf", ""), session.get("csrf", "")):
        abort(403, "the form is stale; reload the page")
    return resource


@bp.get("")
def index():
    return _page(_resource())


def _page(resource: dict, *, problem: str | None = None, status: int = 200):
    with db.pool().connection() as conn:
        shown = [runs.public(run) for run in runs.newest(conn, resource["id"], limit=SHOWN)]
        delivery = deliveries.latest(conn, resource["id"])
    view = api.public_resource(current_app.config, resource)
    return render_template("dashboard.html", resource=resource, view=view, runs=shown, delivery=delivery,
                           csrf=session["csrf"], email=session.get("email"), stored=_stored(resource),
                           problem=problem, form=request.form if problem else None), status


def _stored(resource: dict) -> dict | None:
    """The complete backups in the add-on's storage, newest first, and the bytes stored; None on a byo plan."""
    store = current_app.extensions.get("remora.store")
    if store is None or not resources.managed(resource):
        return None
    try:
        objects = {info.key: info for info in store.objects(resource["id"])}
    except StorageError as e:
        current_app.logger.warning("listing the add-on's storage failed: %s", e.one_line())
        return {"backups": [], "bytes": None}
    backups = []
    for key in objects:
        file = catalog.parse_key(key)
        archive = objects.get(catalog.archive_key(file.label, file.id)) if file else None
        if file and file.suffix == catalog.MANIFEST_SUFFIX and archive is not None:
            backups.append({"id": file.id, "label": file.label, "size": archive.size, "key": archive.key,
                            "time": archive.modified.strftime("%Y-%m-%d %H:%M:%S UTC")})
    backups.sort(key=lambda backup: backup["id"], reverse=True)
    return {"backups": backups, "bytes": sum(info.size for info in objects.values())}


@bp.get("/backups/<path:key>")
def download(key):
    """The archive's ciphertext, through a presigned GET that lasts minutes, made at the click."""
    resource = _resource()
    store = current_app.extensions.get("remora.store")
    file = catalog.parse_key(key)
    if store is None or not resources.managed(resource) or file is None or file.suffix != catalog.ARCHIVE_SUFFIX:
        abort(404)
    try:
        store.stat(resource["id"], key)
    except ObjectNotFound:
        abort(404)
    return redirect(store.read_url(resource["id"], key), code=303)


@bp.post("/backups")
def back_up_now():
    api.trigger(_checked_form(), how="dashboard")
    return redirect(url_for("dashboard.index"), code=303)


@bp.post("/settings")
def change_settings():
    """The settings form: the fields whose value changed (an empty schedule: on demand only)."""
    resource = _checked_form()
    form = request.form
    shown = {"schedule": form.get("schedule", "").strip() or None, "timezone": form.get("timezone", "").strip()}
    if "retention" in form:  # shown on a plan that stores in the add-on's storage
        shown["retention"] = form["retention"].strip()
    given = {name: value for name, value in shown.items() if value != resource[name]}
    if form.get("alert_webhook", "").strip():  # empty: unchanged (the stored one is never shown whole)
        given["alert_webhook"] = form["alert_webhook"].strip()
    if form.get("no_alert_webhook"):
        given["alert_webhook"] = None
    try:
        if given:  # a form saved as it was shown changes nothing (and skips no due time)
            api.change_options(resource, given)
    except options.OptionError as e:
        return _page(resource, problem=str(e), status=422)
    return redirect(url_for("dashboard.index"), code=303)
