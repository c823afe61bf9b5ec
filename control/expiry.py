"""What the clock removes from the add-on's storage, where it is the only deleter.

- Of each live resource that stores there: the backups its retention policy no longer keeps, by
  the very plan ``remora-backup prune`` makes (``runner.prune.decide``), and unfinished uploads a
  day old. A version still locked is never deleted: it waits for a later pass.
- The unfinished uploads of runs that have ended, at once.
- Everything of a resource deprovisioned more than the grace period ago, as its locks run out.

Each resource is claimed with ``SKIP LOCKED`` and looked at once an hour at most, so any number of
clocks share the work; a resource that fails is logged with its id and never stops the others.
"""

from __future__ import annotations

import datetime
import logging

from psycopg_pool import ConnectionPool

from control import resources, uploads
from control.store import Store
from runner import prune, retention

log = logging.getLogger(__name__)

INTERVAL = datetime.timedelta(hours=1)
BATCH = 50  # resources a pass looks at
ENDED_BATCH = 200  # uploads of ended runs a pass aborts


def run(pool: ConnectionPool, store: Store | None, grace: datetime.timedelta) -> int:
    """One pass; return how many backups, leftovers and uploads were removed."""
    if store is None:
        return 0
    removed = _abort_ended(pool, store)
    for resource in _claim(pool, grace=grace):
        try:
            if resource["deprovisioned_at"] is None:
                removed += apply_policy(store, resource)
            else:
                removed += _purge(pool, store, resource)
        except Exception:  # noqa: BLE001 - one resource's storage must not stop the others'
            log.exception("cleaning the add-on's storage of resource %s failed; trying again later", resource["id"])
    return removed


def _claim(pool: ConnectionPool, *, grace: datetime.timedelta) -> list[dict]:
    """Resources due a look: live ones that store here, and deprovisioned ones past their grace."""
    with pool.connection() as conn:
        return conn.execute(
            "update resources set storage_checked_at = now() where id in (select s.id from resources s"
            " where (s.storage_checked_at is null or s.storage_checked_at < now() - %s)"
            " and s.storage_purged_at is null and (s.deprovisioned_at is null or s.deprovisioned_at < now() - %s)"
            " and ((s.deprovisioned_at is null and s.plan <> %s)"
            "      or exists (select 1 from runs r where r.resource_id = s.id and r.storage_id is not null))"
            " order by s.storage_checked_at nulls first limit %s for update skip locked) returning *",
            (INTERVAL, grace, resources.BYO, BATCH),
        ).fetchall()


def apply_policy(store: Store, resource: dict) -> int:
    """Delete what the resource's policy does not keep, unless locked, and old leftovers; how many went."""
    policy = retention.parse(resource["retention"], source="retention")
    target = store.target(resource["id"])
    now = datetime.datetime.now(datetime.timezone.utc)
    steps = prune.decide({info.key: info for info in target.list()}, target.leftovers(), policy, now=now,
                         leftover_age=prune.DEFAULT_LEFTOVER_AGE)
    removed = 0
    for step in steps:
        if step.leftover is not None:
            target.discard(step.leftover)
            removed += 1
        elif step.verb == "delete" and _delete_unlocked(store, resource["id"], step.keys):
            removed += 1
    return removed


def _delete_unlocked(store: Store, resource_id, keys: tuple[str, ...]) -> bool:
    """Delete every version of ``keys`` (the manifest first), or none if any is still locked."""
    versions = [version for key in keys for version in store.versions(resource_id, key) if version.key == key]
    now = datetime.datetime.now(datetime.timezone.utc)
    locked = [v.locked_until for v in versions if v.locked_until is not None and v.locked_until > now]
    if locked:
        log.info("kept %s of resource %s: locked until %s", keys[0], resource_id, max(locked).isoformat())
        return False
    store.delete(resource_id, versions)
    return True


def _purge(pool: ConnectionPool, store: Store, resource: dict) -> int:
    """Delete all a deprovisioned resource stored, as far as locks allow; note when nothing is left."""
    target = store.target(resource["id"])
    leftovers = target.leftovers()
    for leftover in leftovers:
        target.discard(leftover)
    now = datetime.datetime.now(datetime.timezone.utc)
    versions = store.versions(resource["id"])
    free = [v for v in versions if v.locked_until is None or v.locked_until <= now]
    store.delete(resource["id"], free)
    if len(free) == len(versions):
        with pool.connection() as conn:
            conn.execute("update resources set storage_purged_at = now() where id = %s", (resource["id"],))
    return len(leftovers) + len(free)


def _abort_ended(pool: ConnectionPool, store: Store) -> int:
    """Abort the uploads that runs which have ended left open (they failed, or a start was retried)."""
    with pool.connection() as conn:
        open_uploads = uploads.open_of_ended_runs(conn, limit=ENDED_BATCH)
    aborted = 0
    for upload in open_uploads:
        try:
            store.abort(upload["resource_id"], upload["key"], upload["upload_id"])
        except Exception:  # noqa: BLE001 - tried again at the next pass
            log.exception("aborting upload %s of resource %s failed", upload["id"], upload["resource_id"])
            continue
        with pool.connection() as conn:
            uploads.end(conn, upload["id"], completed=False)
        aborted += 1
    return aborted
