"""Sealed values at rest: sealed again with the current key (``rotate-keys``), and plaintext ones sealed (``migrate``).

Rotating REMORA_SECRET_KEY: put the old key in REMORA_PREVIOUS_SECRET_KEYS and the new one in
REMORA_SECRET_KEY (everything stays readable, new values are sealed with the new key), run
``remora-control rotate-keys``, then drop the old key.
"""

from __future__ import annotations

from collections.abc import Mapping

from psycopg import Connection

from control import tokens

# every column of resources that holds a sealed value: rotated here, forgotten at deprovisioning
SEALED = ("oauth_access_token", "oauth_refresh_token", "oauth_grant_code", "api_token_sealed", "alert_webhook_sealed")
BATCH = 500


def rotate(conn: Connection, config: Mapping) -> tuple[int, list[str]]:
    """Seal every sealed value again with the current key; (resources done, ids of those no key opens)."""
    done, unreadable, after = 0, [], None
    while rows := conn.execute(
        f"select id, {', '.join(SEALED)} from resources where (%s::uuid is null or id > %s)"
        " order by id limit %s for no key update", (after, after, BATCH),
    ).fetchall():
        for row in rows:
            try:
                values = [None if row[c] is None else tokens.reseal(config, row[c]) for c in SEALED]
            except tokens.Unreadable:
                unreadable.append(str(row["id"]))
                continue
            conn.execute(f"update resources set {', '.join(f'{c} = %s' for c in SEALED)} where id = %s",
                         (*values, row["id"]))
            done += 1
        after = rows[-1]["id"]
    return done, unreadable


def seal_legacy_webhooks(conn: Connection, config: Mapping) -> int:
    """Seal the webhook URLs stored in plaintext before they were sealed, and forget the plaintext."""
    rows = conn.execute("select id, alert_webhook_legacy from resources where alert_webhook_legacy is not null"
                        " for no key update").fetchall()
    for row in rows:
        conn.execute("update resources set alert_webhook_sealed = %s, alert_webhook_legacy = null where id = %s",
                     (tokens.seal(config, row["alert_webhook_legacy"]), row["id"]))
    return len(rows)
