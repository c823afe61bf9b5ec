"""Large dumps: many parts, in bounded memory. (Failures mid-stream are in the fault suite.)"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from tests.helpers import ok, remora


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
