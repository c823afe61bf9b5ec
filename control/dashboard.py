"""The dashboard: the SSO landing page, listing a resource's runs, with a "Back up now" button."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")
