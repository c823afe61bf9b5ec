"""Heroku OAuth: the provision's grant kept, then exchanged at the id service; tokens stored sealed and refreshed.

Provisioning only keeps the grant's code (sealed) and answers: the exchange happens outside
Heroku's request, at the clock's next pass or at the first launch, whichever comes first, within
the five minutes the code lives. A code is exchanged once (it is taken off the row in the
transaction that stores what it gave); one the id service refuses, or that expired first, leaves
the resource pulled (its helper app asks for runs) with the reason.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging

import requests
from psycopg import Connection
from psycopg_pool import ConnectionPool

from control import resources, tokens
from control.launchers import LaunchError

log = logging.getLogger(__name__)

TIMEOUT = 10  # seconds
REFRESH_MARGIN = datetime.timedelta(minutes=5)  # refresh this long before the token expires
GRANT_LIFETIME = datetime.timedelta(minutes=5)  # how long Heroku's provision grants live
BATCH = 50


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
        # a refresh may come back without a refresh token: the one it was made with stays good
        grant = Grant(access_token=body["access_token"], refresh_token=body.get("refresh_token")
                      or form.get("refresh_token"),
                      expires_at=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds))
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as e:
        raise OAuthError(f"the id service's answer to the {form['grant_type']} grant is not a grant") from e
    if not all(isinstance(t, str) and t for t in (grant.access_token, grant.refresh_token)):
        raise OAuthError(f"the id service's answer to the {form['grant_type']} grant is not a grant")
    return grant


def keep_grant(conn: Connection, config, resource_id, code: str, expires_at: datetime.datetime) -> None:
    """Keep a provision's grant code, sealed, until it is exchanged."""
    conn.execute("update resources set oauth_grant_code = %s, oauth_grant_expires_at = %s where id = %s",
                 (tokens.seal(config, code), expires_at, resource_id))


def store(conn: Connection, config, resource_id, grant: Grant) -> None:
    """Keep a grant's tokens, sealed with the key derived from REMORA_SECRET_KEY; a kept code is spent."""
    conn.execute(
        "update resources set oauth_access_token = %s, oauth_refresh_token = %s, oauth_expires_at = %s,"
        " oauth_grant_code = null, oauth_grant_expires_at = null where id = %s",
        (tokens.seal(config, grant.access_token), tokens.seal(config, grant.refresh_token), grant.expires_at,
         resource_id),
    )


def redeem_pending(pool: ConnectionPool, config) -> int:
    """Exchange the grant codes provisioning kept; return how many resources now hold tokens."""
    with pool.connection() as conn:
        pending = conn.execute("select id from resources where oauth_grant_code is not null"
                               " and deprovisioned_at is null limit %s", (BATCH,)).fetchall()
    access, redeemed = HerokuAccess(pool, config), 0
    for row in pending:
        try:
            access.token(row["id"])
            redeemed += 1
        except LaunchError as e:  # that resource's alone: logged, and the others go on
            log.warning("the grant of %s was not exchanged: %s", row["id"], e)
    return redeemed


class HerokuAccess:
    """Each resource's Platform API access token: from its kept grant, then refreshed shortly before it expires."""

    def __init__(self, pool: ConnectionPool, config):
        self._pool = pool
        self._config = config

    def token(self, resource_id) -> str:
        """A valid access token for the resource; raises LaunchError if there is none to be had."""
        try:
            return self._token(resource_id)
        except tokens.Unreadable as e:
            raise LaunchError(f"the resource's Heroku authorization cannot be read: {e}") from e

    def _token(self, resource_id) -> str:
        with self._pool.connection() as conn:
            # the row lock makes concurrent workers exchange and refresh one at a time; NO KEY leaves runs
            # free to reference the row meanwhile (a trigger queueing a run never waits for the id service)
            row = conn.execute(
                "select oauth_access_token, oauth_refresh_token, oauth_expires_at, oauth_grant_code,"
                " oauth_grant_expires_at from resources where id = %s for no key update", (resource_id,),
            ).fetchone()
            if row is not None and row["oauth_grant_code"] is not None:
                return self._redeem(conn, resource_id, row)
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

    def _redeem(self, conn: Connection, resource_id, row: dict) -> str:
        """Exchange the kept grant code (the caller holds the row's lock); a dead code leaves the resource pulled."""
        try:
            if row["oauth_grant_expires_at"] <= datetime.datetime.now(datetime.timezone.utc):
                raise GrantRefused("Heroku's authorization expired before it could be exchanged")
            grant = exchange(self._config, grant_type="authorization_code",
                             code=tokens.unseal(self._config, row["oauth_grant_code"]))
        except GrantRefused as e:
            conn.execute("update resources set oauth_grant_code = null, oauth_grant_expires_at = null"
                         " where id = %s", (resource_id,))
            resources.pull(conn, resource_id, f"no Heroku authorization: {e}")
            conn.commit()  # kept, though the error below ends the caller's block
            raise LaunchError(str(e)) from e
        except OAuthError as e:  # the code stays for the next try, while it lives
            raise LaunchError(str(e)) from e
        store(conn, self._config, resource_id, grant)
        return grant.access_token
