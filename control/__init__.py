"""The control plane: a Flask app that launches backup runs and records what they report."""

from __future__ import annotations

import os

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from control import db, launchers, settings


def create_app(test_config: dict | None = None) -> Flask:
    """The app, configured from the environment (or ``test_config``); refuses to start without a secret."""
    app = Flask(__name__)
    app.config.from_mapping(settings.from_env(os.environ if test_config is None else {}))
    app.config.from_mapping(test_config or {})
    settings.check(app.config)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    db.init_app(app)
    app.extensions["remora.launcher"] = launchers.from_config(app.config, app.extensions["remora.pool"])

    from control import api, dashboard, heroku

    app.register_blueprint(api.bp)
    app.register_blueprint(heroku.bp)
    app.register_blueprint(dashboard.bp)
    app.register_error_handler(HTTPException, _http_error)
    return app


def _http_error(e: HTTPException):
    """JSON errors for the APIs; the dashboard keeps HTML pages."""
    if request.path.startswith("/dashboard"):
        return e
    response = jsonify(error=e.description if isinstance(e.description, str) else e.name)
    response.status_code = e.code
    if e.code == 401:
        response.headers["WWW-Authenticate"] = "Basic" if request.path.startswith("/heroku") else "Bearer"
    return response
