"""Large dumps: many parts, bounded memory, and failures mid-stream that leave nothing behind."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit


from tests.helpers import leftovers, ok, remora, start_remora


def terminate_dump_backend(pg_cluster, dbname: str) -> bool:
    """Kill pg_dump's server process while it copies table data: a dump that fails mid-stream."""
    with pg_cluster.connect() as conn:
        for _ in range(3000):
            row = conn.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity"
                " where datname = %s and application_name = 'pg_dump' and query like 'COPY%%'",
                (dbname,),
            ).fetchone()
            if row:
                return True
            time.sleep(0.005)
    return False


def test_a_dump_that_fails_midstream_leaves_nothing_and_exits_4(request, target_env, pg_cluster, big_database, gpg_env):
    env = {**target_env, **gpg_env, "REMORA_DATABASE_URL": pg_cluster.reader_url(big_database)}
    runner = start_remora("backup", env=env)
    assert terminate_dump_backend(pg_cluster, big_database)
    _out, err = runner.communicate(timeout=120)
    assert runner.returncode == 4, err
    errors = [line for line in err.splitlines() if "level=error" in line]
    assert len(errors) == 1 and "pg_dump failed" in errors[0] and "terminating connection" in errors[0]
    assert leftovers(env, request) == []


def test_a_large_s3_backup_is_multipart_with_checksums_in_bounded_memory(
    s3_target_env, s3_server, pg_cluster, big_database, database, gpg_env
):
    env = {**s3_target_env, **gpg_env}
    small = ok(remora("backup", env={**env, "REMORA_DATABASE_URL": pg_cluster.reader_url(database)}))
    large = ok(remora("backup", env={**env, "REMORA_DATABASE_URL": pg_cluster.reader_url(big_database)}))

    bucket = urlsplit(env["REMORA_TARGET_URL"]).netloc
    client = s3_server.client()
    [archive] = [o for o in client.list_objects_v2(Bucket=bucket)["Contents"]
                 if big_database in o["Key"] and o["Key"].endswith(".dump.gpg")]
    head = client.head_object(Bucket=bucket, Key=archive["Key"], ChecksumMode="ENABLED")
    part_size = int(env["REMORA_S3_PART_SIZE_MB"]) * 2**20
    parts = int(head["ChecksumSHA256"].rsplit("-", 1)[1])  # a composite checksum: one SHA-256 a part
    assert parts == -(-archive["Size"] // part_size) and parts >= 10

    # the dump is several times what the parts in flight hold, yet the peak barely moves
    in_flight_bytes = (int(env["REMORA_S3_CONCURRENCY"]) + 1) * part_size
    assert archive["Size"] > 4 * in_flight_bytes
    small_peak, large_peak = peak_rss_mib(small.stderr), peak_rss_mib(large.stderr)
    assert large_peak - small_peak < in_flight_bytes / 2**20 + 10, (small_peak, large_peak)
    assert large_peak < 150, (small_peak, large_peak)


def peak_rss_mib(log: str) -> float:
    return float(re.search(r"peak_rss_mib=([\d.]+)", log).group(1))
