"""Webhook deliveries: claimed from their table, posted outside any transaction, their outcome recorded.

A pass claims due deliveries with ``FOR UPDATE SKIP LOCKED`` and pushes their next attempt into
the future in the same short transaction (so another clock leaves them be, and a clock that dies
mid-pass is retried later), then posts them in parallel, each within the webhook deadline. The
whole pass keeps to that one deadline: a webhook that drips or hangs costs the clock at most that.
A resource's deliveries go one at a time, oldest first, so "recovered" never overtakes "missing".
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Mapping

from psycopg_pool import ConnectionPool

from control import options, tokens, webhooks

log = logging.getLogger(__name__)

THREADS = 8
MAX_ATTEMPTS = 12
RETRY_AFTER = 30  # seconds after the first failure, doubling up to MAX_RETRY_AFTER
MAX_RETRY_AFTER = 3600
MIN_LEFT = 1.0  # seconds: a pass with less than this left starts no more deliveries
MAX_ERROR = 300


def deliver(pool: ConnectionPool, config: Mapping, *, policy: webhooks.Policy | None = None) -> int:
    """Post every due delivery that fits in one webhook deadline; return how many were delivered."""
    policy = policy or options.policy(config)
    end = time.monotonic() + config["WEBHOOK_TIMEOUT"]
    threads = concurrent.futures.ThreadPoolExecutor(THREADS, thread_name_prefix="webhook")
    delivered = 0
    try:
        while (left := end - time.monotonic()) > MIN_LEFT and (batch := _claim(pool, limit=THREADS)):
            posts = {threads.submit(_post, config, policy, delivery, deadline=left): delivery for delivery in batch}
            done, _ = concurrent.futures.wait(posts, timeout=left)
            for post, delivery in posts.items():
                error = post.result() if post in done else webhooks.no_answer(left)
                _record(pool, delivery, error)
                delivered += error is None
    finally:
        threads.shutdown(wait=False, cancel_futures=True)  # a name lookup that hangs is left behind
    return delivered


def _claim(pool: ConnectionPool, *, limit: int) -> list[dict]:
    with pool.connection() as conn:
        return conn.execute(
            "with due as (select d.id from webhook_deliveries d where d.next_attempt_at <= now()"
            " and not exists (select 1 from webhook_deliveries e where e.resource_id = d.resource_id"
            " and e.next_attempt_at is not null and e.id < d.id)"
            " order by d.next_attempt_at limit %s for update skip locked)"
            " update webhook_deliveries d set attempts = d.attempts + 1, last_attempt_at = now(),"
            " next_attempt_at = now() + make_interval(secs => least(%s * power(2, d.attempts), %s))"
            " from due, resources r where d.id = due.id and r.id = d.resource_id"
            " returning d.id, d.resource_id, d.body, d.attempts, r.alert_webhook_sealed",
            (limit, RETRY_AFTER, MAX_RETRY_AFTER),
        ).fetchall()


def _post(config: Mapping, policy: webhooks.Policy, delivery: dict, *, deadline: float) -> str | None:
    """Post one delivery; None if it was delivered, else why not."""
    try:
        if delivery["alert_webhook_sealed"] is None:
            return "the resource has no alert webhook any more"
        url = tokens.unseal(config, delivery["alert_webhook_sealed"])
        webhooks.post(url, delivery["body"], policy=policy, deadline=deadline)
    except (webhooks.WebhookError, tokens.Unreadable) as e:
        log.warning("alert webhook of resource %s not told: %s", delivery["resource_id"], e)
        return str(e)[:MAX_ERROR]
    except Exception as e:  # noqa: BLE001 - one webhook's surprise must not stop the others
        log.exception("alert webhook of resource %s failed", delivery["resource_id"])
        return f"internal error ({type(e).__name__})"
    return None


def _record(pool: ConnectionPool, delivery: dict, error: str | None) -> None:
    with pool.connection() as conn:
        if error is None:
            conn.execute("update webhook_deliveries set next_attempt_at = null, delivered_at = now(), last_error = null"
                         " where id = %s", (delivery["id"],))
            return
        given_up = delivery["attempts"] >= MAX_ATTEMPTS or delivery["alert_webhook_sealed"] is None
        conn.execute("update webhook_deliveries set last_error = %s,"
                     " next_attempt_at = case when %s then null else next_attempt_at end where id = %s",
                     (error, given_up, delivery["id"]))


def latest(conn, resource_id) -> dict | None:
    """The resource's latest delivery, for its owner to see whether the webhook hears."""
    return conn.execute("select * from webhook_deliveries where resource_id = %s order by id desc limit 1",
                        (resource_id,)).fetchone()
