"""A resource's options as its owner sets them: schedule, time zone, alert webhook and the retention policy
of the add-on's storage, checked in one place.

Provisioning, ``remora-control resource create`` and every later change (the dashboard, ``PATCH
/api/v1/resources/<id>``, ``remora-control resource update``: ``changed``) go through
``validate`` before anything else happens (before Heroku's OAuth grant is exchanged, before a row
is written), so that no value the clock or the webhook sender would choke on is ever stored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from control import schedules, settings, webhooks
from runner import retention
from runner.errors import RemoraError

DEFAULT_TIMEZONE = "UTC"
DEFAULT_RETENTION = retention.EXAMPLE  # what the add-on's storage keeps unless told: daily=7,weekly=4,monthly=12
KNOWN = ("schedule", "timezone", "alert_webhook", "retention")


class OptionError(ValueError):
    """An option that cannot be used; the message names it and says why."""


@dataclasses.dataclass(frozen=True)
class Options:
    schedule: str | None
    timezone: str
    alert_webhook: str | None = dataclasses.field(repr=False)  # it often carries a secret
    retention: str = DEFAULT_RETENTION  # normalized, as str(retention.Policy) writes it


def validate(given: Mapping, *, policy: webhooks.Policy, default_schedule: str | None = None) -> Options:
    """The options in ``given`` (absent ones take their defaults), or OptionError for the first bad one."""
    if not isinstance(given, Mapping):
        raise OptionError("options must be an object")
    unknown = sorted(str(key) for key in given if key not in KNOWN)
    if unknown:
        raise OptionError(f"unknown option {', '.join(unknown)[:100]} (known: {', '.join(KNOWN)})")
    schedule = given.get("schedule", default_schedule)
    timezone = given.get("timezone", DEFAULT_TIMEZONE)
    webhook = given.get("alert_webhook")
    try:
        schedules.check(schedule, timezone)
        if webhook is not None:
            policy.validate(webhook)
    except (schedules.ScheduleError, webhooks.WebhookError) as e:
        raise OptionError(str(e)) from e
    return Options(schedule=schedule, timezone=timezone, alert_webhook=webhook,
                   retention=_retention(given.get("retention", DEFAULT_RETENTION)))


def _retention(text) -> str:
    """The policy the clock applies in the add-on's storage, as ``prune`` reads one."""
    if not isinstance(text, str) or len(text) > 100:
        raise OptionError("retention must be a policy like daily=7,weekly=4,monthly=12")
    try:
        return str(retention.parse(text, source="retention"))
    except RemoraError as e:
        raise OptionError(e.one_line()) from e


def changed(current: Mapping, given: Mapping, *, policy: webhooks.Policy) -> Options:
    """The options of a resource (``current``, its row) once ``given`` is applied over them, checked as above.

    A webhook is checked only when ``given`` names it (the stored one stays sealed, unread).
    """
    if not isinstance(given, Mapping) or not given:
        raise OptionError(f"name an option to change (known: {', '.join(KNOWN)})")
    stored = {name: current[name] for name in ("schedule", "timezone", "retention")}
    return validate({**stored, **given}, policy=policy)


def policy(config: Mapping) -> webhooks.Policy:
    """Where this control plane lets webhooks go (development also allows http:// and loopback)."""
    return webhooks.Policy(development=settings.development(config))
