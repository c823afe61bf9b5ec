"""Heroku OAuth: the provision grant exchanged at the id service, tokens stored sealed and refreshed."""

from __future__ import annotations

import dataclasses
import datetime

import requests
from psycopg import Connection
from psycopg_pool import ConnectionPool

from control import tokens
from control.launchers import LaunchError

TIMEOUT = 10  # seconds
REFRESH_MARGIN = datetime.timedelta(minutes=5)  # refresh this long before the token expires


class OAuthError(Exception):
    """The id service refused or failed; the message names the step, never a token."""


class GrantRefused(OAuthError):
    """The id service answered, and refused the grant: asking again with it gets the same answer."""


@dataclasses.dataclass(frozen=True)
class Grant:
    access_token: str = dataclasses.field(repr=False)
    refresh_token: str = dataclasses.field(repr=False)
    expires_at: datetime.datetime


def exchange(config, **form: str) -> Grant:
    """POST a grant to ``{HEROKU_ID_URL}/oauth/token``; the client secret is added here."""
    if not config["HEROKU_OAUTH_CLIENT_SECRET"]:
        raise OAuthError("HEROKU_OAUTH_CLIENT_SECRET is not set")
    try:
        answer = requests.post(f"{config['HEROKU_ID_URL']}/oauth/token", timeout=TIMEOUT, allow_redirects=False,
                               data={**form, "client_secret": config["HEROKU_OAUTH_CLIENT_SECRET"]})
    except requests.RequestException as e:
        raise OAuthError(f"the id service is unreachable ({type(e).__name__})") from e
    if 400 <= answer.status_code < 500:
        raise GrantRefused(f"the id service refused the {form['grant_type']} grant (HTTP {answer.status_code})")
    if answer.status_code != 200:
        raise OAuthError(f"the id service answered the {form['grant_type']} grant (HTTP {answer.status_code})")
    try:
        body = answer.json()
        seconds = int(body["expires_in"])
        grant = Grant(access_token=body["access_token"], refresh_token=body["refresh_token"],
                      expires_at=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds))
    except (ValueError, KeyError, TypeError, OverflowError) as e:
        raise OAuthError(f"the id service's answer to the {form['grant_type']} grant is not a grant") from e
    if not all(isinstance(t, str) and t for t in (grant.access_token, grant.refresh_token)):
        raise OAuthError(f"the id service's answer to the {form['grant_type']} grant is not a grant")
    return grant


def store(conn: Connection, config, resource_id, grant: Grant) -> None:
    """Keep a grant's tokens, sealed with the key derived from REMORA_SECRET_KEY."""
    conn.execute(
        "update resources set oauth_access_token = %s, oauth_refresh_token = %s, oauth_expires_at = %s"
        " where id = %s",
        (tokens.seal(config, grant.access_token), tokens.seal(config, grant.refresh_token), grant.expires_at,
         resource_id),
    )


class HerokuAccess:
    """Each resource's Platform API access token, refreshed at the id service shortly before it expires."""

    def __init__(self, pool: ConnectionPool, config):
        self._pool = pool
        self._config = config

    def token(self, resource_id: str) -> str:
        """A valid access token for the resource; raises LaunchError if there is none to be had."""
        try:
            return self._token(resource_id)
        except tokens.Unreadable as e:
            raise LaunchError(f"the resource's Heroku authorization cannot be read: {e}") from e

    def _token(self, resource_id: str) -> str:
        with self._pool.connection() as conn:
            # the row lock makes concurrent workers refresh one at a time; NO KEY leaves runs free to
            # reference the row meanwhile (a trigger queueing a run never waits for the id service)
            row = conn.execute(
                "select oauth_access_token, oauth_refresh_token, oauth_expires_at from resources"
                " where id = %s for no key update", (resource_id,),
            ).fetchone()
            if row is None or row["oauth_refresh_token"] is None:
                raise LaunchError("the resource has no Heroku authorization (was it provisioned by Heroku?)")
            if row["oauth_expires_at"] - datetime.datetime.now(datetime.timezone.utc) > REFRESH_MARGIN:
                return tokens.unseal(self._config, row["oauth_access_token"])
            try:
                grant = exchange(self._config, grant_type="refresh_token",
                                 refresh_token=tokens.unseal(self._config, row["oauth_refresh_token"]))
            except OAuthError as e:
                raise LaunchError(str(e)) from e
            store(conn, self._config, resource_id, grant)
            return grant.access_token
