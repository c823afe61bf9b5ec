"""The s3:// target against a real S3 server (SeaweedFS): multipart parts, checksums, failures."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tracemalloc

import pytest
from botocore.exceptions import ClientError

from runner.config import Config
from runner.errors import ObjectNotFound, StorageError, TransientStorageError
from runner.targets import open_target
from runner.targets.parts import MAX_PART_SIZE, MAX_PARTS, part_size
from runner.transfer import upload_stream
from tests.servers.seaweed import PREFIX, free_ports

MIB = 1024 * 1024
TIB = 1024 * 1024 * MIB


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def composite_sha256(parts: list[bytes]) -> str:
    """S3's checksum of a multipart object: the SHA-256 of the parts' SHA-256s, then '-N'."""
    digests = b"".join(hashlib.sha256(p).digest() for p in parts)
    return f"{sha256_b64(digests)}-{len(parts)}"


def target_for(env: dict[str, str]):
    """The S3 backend itself, without the retries that wrap it in the runner."""
    return open_target(Config.from_env(env)).backend


def open_uploads(s3_server, bucket: str) -> list[dict]:
    return s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def record_headers(target, operation: str) -> list[dict]:
    """Collect the headers of every ``operation`` request the target's client sends."""
    seen: list[dict] = []
    target.client.meta.events.register(
        f"before-send.s3.{operation}",
        lambda request, **_: seen.append({k.lower(): _text(v) for k, v in request.headers.items()}),
    )
    return seen


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def test_multipart_upload_sends_our_sha256_per_part_and_reads_back(s3_server, s3_bucket, s3_target_env):
    data = os.urandom(12 * MIB)
    key = "db/2026/11/27/x.dump.gpg"
    client = s3_server.client()
    with target_for(s3_target_env) as target:
        sent_headers = record_headers(target, "UploadPart")
        upload = target.begin(key)
        size, _ = upload_stream(io.BytesIO(data), upload, in_flight=target.max_in_flight)
        (pending,) = open_uploads(s3_server, s3_bucket)
        listed = client.list_parts(Bucket=s3_bucket, Key=f"{PREFIX}/{key}", UploadId=pending["UploadId"])
        upload.complete()
        with target.open(key) as stream:
            assert stream.read() == data

    assert size == len(data)
    assert [p["Size"] for p in listed["Parts"]] == [5 * MIB, 5 * MIB, 2 * MIB]
    chunks = [data[i : i + 5 * MIB] for i in range(0, len(data), 5 * MIB)]
    assert sorted(h["x-amz-checksum-sha256"] for h in sent_headers) == sorted(map(sha256_b64, chunks))
    assert not any("x-amz-checksum-crc32" in h for h in sent_headers)
    head = client.head_object(Bucket=s3_bucket, Key=f"{PREFIX}/{key}", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == composite_sha256(chunks)
    assert head["ETag"].strip('"').endswith("-3")
    assert open_uploads(s3_server, s3_bucket) == []


def test_server_rejects_a_part_whose_checksum_is_wrong(s3_server, s3_bucket):
    client = s3_server.client()
    upload_id = client.create_multipart_upload(
        Bucket=s3_bucket, Key="k", ChecksumAlgorithm="SHA256"
    )["UploadId"]
    with pytest.raises(ClientError) as caught:
        client.upload_part(Bucket=s3_bucket, Key="k", UploadId=upload_id, PartNumber=1,
                           Body=b"the bytes sent", ChecksumSHA256=sha256_b64(b"other bytes"))
    assert caught.value.response["Error"]["Code"] == "BadDigest"
    assert client.list_parts(Bucket=s3_bucket, Key="k", UploadId=upload_id).get("Parts", []) == []


def test_a_part_damaged_on_the_way_is_refused_as_transient(s3_server, s3_bucket, s3_target_env):
    def damage(request, **_):
        body = request.data  # botocore has wrapped bytes in a BytesIO by now
        sent = body.getvalue() if hasattr(body, "getvalue") else bytes(body)
        request.data = bytes([sent[0] ^ 1]) + sent[1:]

    with target_for(s3_target_env) as target:
        upload = target.begin("damaged")
        target.client.meta.events.register("before-sign.s3.UploadPart", damage)
        with pytest.raises(TransientStorageError, match="BadDigest"):
            upload.send(1, b"some bytes")
        upload.abort()


def test_a_part_sent_again_replaces_the_first_copy(s3_target_env):
    first = os.urandom(5 * MIB)
    with target_for(s3_target_env) as target:
        upload = target.begin("retried")
        upload.send(1, first)
        upload.send(2, b"lost on the way")
        upload.send(2, b"the tail")
        upload.complete()
        with target.open("retried") as stream:
            assert stream.read() == first + b"the tail"


def test_sending_a_part_does_not_copy_it(s3_target_env):
    part = os.urandom(16 * MIB)
    with target_for(s3_target_env) as target:
        upload = target.begin("big-part")
        upload.send(1, b"warm up the connection pool")
        tracemalloc.start()
        try:
            upload.send(1, part)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            upload.abort()
    assert peak < len(part) / 4


def test_abort_leaves_no_object_and_no_open_upload(s3_server, s3_bucket, s3_target_env):
    with target_for(s3_target_env) as target:
        upload = target.begin("db/aborted")
        upload.send(1, os.urandom(5 * MIB))
        upload.send(2, b"tail")
        assert len(open_uploads(s3_server, s3_bucket)) == 1
        upload.abort()
        upload.abort()  # a second abort is harmless
        assert open_uploads(s3_server, s3_bucket) == []
        assert target.list() == []
        with pytest.raises(ObjectNotFound):
            target.stat("db/aborted")


def test_an_abort_after_complete_asks_s3_nothing(s3_target_env):
    with target_for(s3_target_env) as target:
        upload = target.begin("db/kept")
        upload.send(1, b"kept")
        upload.complete()
        calls = []
        target.client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
        upload.abort()  # as a caller's cleanup does when an error comes after the upload completed
        target.close()  # which aborts the uploads still open: none
    assert calls == []


def test_closing_the_target_aborts_forgotten_uploads(s3_server, s3_bucket, s3_target_env):
    with target_for(s3_target_env) as target:
        target.begin("forgotten").send(1, b"bytes")
    assert open_uploads(s3_server, s3_bucket) == []


def test_put_list_stat_open_delete(s3_server, s3_bucket, s3_target_env):
    s3_server.client().put_object(Bucket=s3_bucket, Key="elsewhere/x", Body=b"not ours")
    with target_for(s3_target_env) as target:
        target.put("db/2026/a.manifest.json", b"{}")
        target.put("other/b", b"12345")
        assert sorted(i.key for i in target.list()) == ["db/2026/a.manifest.json", "other/b"]
        (info,) = target.list("db/")
        assert (info.key, info.size, info.modified.utcoffset().total_seconds()) == (
            "db/2026/a.manifest.json", 2, 0)
        assert target.stat("other/b").size == 5
        with target.open("other/b") as stream:
            assert stream.read(3) == b"123" and stream.read() == b"45"
        target.delete("other/b")
        target.delete("other/b")  # already gone: fine
        with pytest.raises(ObjectNotFound):
            target.stat("other/b")
        with pytest.raises(ObjectNotFound):
            target.open("other/b")


def test_wrong_secret_is_a_permanent_storage_error(s3_server, s3_target_env):
    wrong = "wrong-" + s3_server.secret_key[:20]
    with target_for({**s3_target_env, "AWS_SECRET_ACCESS_KEY": wrong}) as target:
        with pytest.raises(StorageError) as caught:
            target.begin("x")
    error = caught.value
    assert not isinstance(error, TransientStorageError)
    assert error.exit_code == 6
    line = error.one_line()
    assert "access denied" in line and "SignatureDoesNotMatch" in line
    assert wrong not in line and s3_server.secret_key not in line
    assert isinstance(error.__cause__, ClientError)


def test_missing_bucket_is_named(s3_target_env):
    env = {**s3_target_env, "REMORA_TARGET_URL": "s3://remora-no-such-bucket/backups"}
    named = "S3 bucket 'remora-no-such-bucket' does not exist"
    with target_for(env) as target:
        for action in (target.list, lambda: target.begin("x"), lambda: target.put("x", b"x")):
            with pytest.raises(StorageError, match=named) as caught:
                action()
            assert not isinstance(caught.value, TransientStorageError)


def test_refused_connection_is_transient(s3_target_env):
    (closed_port,) = free_ports(1)
    env = {**s3_target_env, "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{closed_port}"}
    with target_for(env) as target:
        with pytest.raises(TransientStorageError, match="cannot reach S3"):
            target.list()


@pytest.mark.parametrize("base_mib", [5, 16, 100, 5120])
def test_part_size_growth_stays_within_s3_limits(base_mib):
    sizes = [part_size(base_mib * MIB, n) for n in range(1, MAX_PARTS + 1)]
    assert sizes[0] == sizes[999] == base_mib * MIB
    assert sizes[1000] == min(2 * base_mib * MIB, MAX_PART_SIZE)
    assert sizes == sorted(sizes) and all(5 * MIB <= s <= MAX_PART_SIZE for s in sizes)
    # 10,000 parts hold ~4.9 TiB even at the smallest part size; S3's largest object is 5 TiB
    assert sum(sizes) > 4.8 * TIB
    if base_mib >= 16:
        assert sum(sizes) >= 5 * TIB
