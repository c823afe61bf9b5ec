"""The second way a run starts: the helper app asks for it, so that no Heroku permission is needed.

A resource is *launched* (the worker starts each run's dyno through the Platform API) until
Heroku refuses a dyno create with 401 or 403, or gives the add-on no authorization at all; from
then on it is *pulled*: its runs stay queued until its helper app asks. Heroku Scheduler runs
`bin/remora-backup run-due` on the helper app every 10 minutes, which asks
``POST /api/v1/resources/<id>/runs/claim`` (the resource's API token): the control plane queues
the schedule's run if it is due and no clock has yet, hands over the oldest queued run and its
token, and the runner runs it as a launched run would. Either mode answers the helper app, so a
Scheduler job set up ahead of time does no harm: whoever claims a run first runs it.

A pulled resource whose helper app stops asking opens an incident, as a lost run does
(``alerts.open_silent``).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from psycopg import Connection

from control import clock, runs


def hand_over(conn: Connection, resource_id, config: Mapping) -> tuple[dict, str] | None:
    """The run the helper app asking for ``resource_id`` is to run, with its new token; None when none is due."""
    now = datetime.datetime.now(datetime.timezone.utc)
    conn.execute("update resources set last_asked_at = %s where id = %s", (now, resource_id))
    clock.queue_if_due(conn, resource_id, now=now, time_to_live=config["RUN_TTL"])
    claimed = runs.claim(conn, limit=1, resource_id=resource_id)
    if not claimed:
        return None
    [(run, token)] = claimed
    taken = conn.execute("update runs set state = 'launched', launched_at = now(), handle = %s where id = %s"
                         " returning *", (runs.PULLED, run["id"])).fetchone()
    return taken, token
