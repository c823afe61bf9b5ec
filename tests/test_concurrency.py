"""Runs at the same time: two backups of one database both complete, and a prune never touches an upload in flight."""

from __future__ import annotations

import json
import signal
import time

from runner.config import Config
from runner.targets import open_target
from tests.helpers import craft_backup, ok, remora, start_remora, upload_in_flight


def wait_until_dumps_wait_for_the_lock(pg_cluster, dbname: str, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with pg_cluster.connect() as conn:
        while conn.execute(
            "select count(*) from pg_stat_activity"
            " where datname = %s and application_name = 'pg_dump' and wait_event_type = 'Lock'",
            (dbname,),
        ).fetchone()[0] < count:
            assert time.monotonic() < deadline, f"{count} pg_dumps never waited for the lock"
            time.sleep(0.05)


def test_two_backups_of_one_database_at_once_get_distinct_ids_and_both_restore(
    target_env, pg_cluster, database, gpg_env
):
    env = {**target_env, **gpg_env, "REMORA_DATABASE_URL": pg_cluster.reader_url(database)}
    # A table locked away holds both pg_dumps with their uploads begun, so the two runs surely overlap.
    with pg_cluster.connect(database) as conn, conn.transaction():
        conn.execute("lock table sales.customer in access exclusive mode")
        runners = [start_remora("backup", env=env) for _ in range(2)]
        wait_until_dumps_wait_for_the_lock(pg_cluster, database, 2)
        with open_target(Config.from_env(env)) as target:
            assert len(target.leftovers()) == 2
    results = [runner.communicate(timeout=120) for runner in runners]
    assert [runner.returncode for runner in runners] == [0, 0], results
    ids = sorted(out.strip() for out, _err in results)
    assert ids[0] != ids[1]
    assert [m["id"] for m in json.loads(ok(remora("list", "--json", env=env)).stdout)] == ids
    for backup_id in ids:
        ok(remora("verify", backup_id, "--decrypt", env=env))


def test_a_prune_during_a_backup_leaves_the_upload_in_flight_alone(target_env, pg_cluster, big_database, gpg_env):
    env = {**target_env, **gpg_env, "REMORA_DATABASE_URL": pg_cluster.reader_url(big_database)}
    with open_target(Config.from_env(env)) as target:
        old = [craft_backup(target, big_database, when) for when in ("2020-01-01T10:00", "2020-01-02T10:00")]
        runner = start_remora("backup", env=env)
        try:
            in_flight = upload_in_flight(runner, target)
            runner.send_signal(signal.SIGSTOP)  # mid-upload: the runner holds still while prune runs
            pruned = ok(remora("prune", "--keep", "daily=1", env=env))
            assert [lo.handle for lo in target.leftovers()] == [lo.handle for lo in in_flight]
        finally:
            runner.send_signal(signal.SIGCONT)
        out, err = runner.communicate(timeout=120)
    assert runner.returncode == 0, err
    assert pruned.stdout.splitlines() == [
        f"delete  {big_database} {old[0]}  not kept by daily=1",
        f"keep    {big_database} {old[1]}  newest, daily 2020-01-02",
    ]
    ok(remora("verify", out.strip(), env=env))
