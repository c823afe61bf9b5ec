"""Heroku's single sign-on form, checked: which resource it opens, and for whom.

Heroku's dashboard posts ``resource_id``, ``timestamp``, ``user_id``, ``email`` and two tokens:
``user_scoped_resource_token`` = sha256("resource_id:salt:timestamp:user_id:email"), which also
signs who the user is, and the older ``resource_token`` = sha1("resource_id:salt:timestamp"),
which Heroku still sends. The user-scoped token is checked when it is there (and then decides
alone: a wrong one is refused whatever the sha1 one says); the email is shown only when it signed
it. The v1 form (``id`` and ``token``), whose end of life was July 2023, is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Mapping

from control import inputs, tokens

MAX_AGE = 300  # seconds either side of now that a timestamp may be
STALE = "the login link is stale or invalid; open the add-on from Heroku's dashboard again"


class SSOError(ValueError):
    """A form that signs nobody in; the message is what the browser is shown."""


@dataclasses.dataclass(frozen=True)
class Login:
    resource_id: uuid.UUID
    timestamp: int  # the form's: with the resource, what makes a replayed form known
    email: str | None  # only when the user-scoped token signed it


def check(form: Mapping[str, str], *, salt: str | None, now: float) -> Login:
    """The login a form stands for; SSOError if it is stale, unsigned, or Heroku's retired v1 form."""
    resource_id, timestamp = form.get("resource_id", ""), form.get("timestamp", "")
    if not resource_id and ("id" in form or "token" in form):
        raise SSOError("this login link uses Heroku's retired v1 sign-on; open the add-on from Heroku's dashboard")
    if not salt or not inputs.is_whole_number(timestamp) or abs(now - int(timestamp)) > MAX_AGE:
        raise SSOError(STALE)
    user_scoped = form.get("user_scoped_resource_token")
    if user_scoped is not None:
        email = form.get("email", "")
        signed = f"{resource_id}:{salt}:{timestamp}:{form.get('user_id', '')}:{email}"
        expected, given = hashlib.sha256(signed.encode()).hexdigest(), user_scoped
    else:
        email = None
        expected = hashlib.sha1(f"{resource_id}:{salt}:{timestamp}".encode()).hexdigest()
        given = form.get("resource_token", "")
    if not tokens.same(given, expected):
        raise SSOError(STALE)
    try:
        return Login(uuid.UUID(resource_id), int(timestamp), email or None)
    except ValueError as e:
        raise SSOError(STALE) from e
