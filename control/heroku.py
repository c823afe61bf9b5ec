"""The Heroku Add-on Partner API (provision, plan change, deprovision) and SSO."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("heroku", __name__, url_prefix="/heroku")
