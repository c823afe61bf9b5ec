"""The control plane: a Flask app that queues backup runs and records what they report."""

from __future__ import annotations

import datetime
import os

from flask import Flask, abort, jsonify, request
from werkzeug.exceptions import HTTPException

from control import db, inputs, settings
from control.store import Store

SESSION_LIFETIME = datetime.timedelta(hours=1)
SECURITY_HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Strict-Transport-Security": "max-age=31536000",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app(test_config: dict | None = None) -> Flask:
    """The app, configured from the environment (or ``test_config``); refuses to start without a strong secret."""
    app = Flask(__name__)
    app.config.from_mapping(settings.from_env(os.environ if test_config is None else {}))
    app.config.from_mapping(test_config or {})
    settings.check(app.config)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_SECURE=True,
                      PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME, MAX_CONTENT_LENGTH=inputs.MAX_BODY)
    db.init_app(app)
    app.extensions["remora.store"] = Store.from_config(app.config)

    from control import api, dashboard, heroku, storage_api

    app.register_blueprint(api.bp)
    app.register_blueprint(storage_api.bp)
    app.register_blueprint(heroku.bp)
    app.register_blueprint(dashboard.bp)
    app.before_request(_refuse_long_bodies)
    app.after_request(_security_headers)
    app.register_error_handler(HTTPException, _http_error)
    return app


def _refuse_long_bodies():
    """413 before anything else for a body longer than any route takes, whoever sends it."""
    if (request.content_length or 0) > inputs.MAX_BODY:
        abort(413, f"the body is longer than {inputs.MAX_BODY} bytes")


def _security_headers(response):
    response.headers.update(SECURITY_HEADERS)
    if request.path.startswith("/dashboard"):
        response.headers["Cache-Control"] = "no-store"
    return response


def _http_error(e: HTTPException):
    """JSON errors for the APIs, under ``message`` where Heroku shows it to its user; the dashboard keeps HTML."""
    if request.path.startswith("/dashboard"):
        return e
    description = e.description if isinstance(e.description, str) else e.name
    partner = request.path.startswith("/heroku")
    response = jsonify(message=description) if partner else jsonify(error=description)
    response.status_code = e.code
    response.headers.update({k: v for k, v in e.get_headers() if k == "Retry-After"})
    if e.code == 401:
        response.headers["WWW-Authenticate"] = "Basic" if partner else "Bearer"
    return response
