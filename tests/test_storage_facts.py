"""What the add-on's storage relies on from S3, checked on the real server (SeaweedFS, authentication on).

- A presigned UploadPart URL whose signed headers hold ``x-amz-checksum-sha256`` stores those bytes
  and no others, for that upload and part only, and only until it expires.
- COMPLIANCE retention set by a request's Object Lock headers (the control plane's own requests, or a
  presigned PutObject whose signature covers them) holds against every identity, the bucket's admin
  included: no version deleted, no retention shortened or weakened, until the date has passed.
- An identity limited to one bucket can do nothing in another.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import secrets
import time

import pytest
import requests
from botocore.exceptions import ClientError

from tests.servers.seaweed import MANAGED_BUCKET

UTC = datetime.timezone.utc


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def s3_code(answer: requests.Response) -> str:
    return answer.text.split("<Code>", 1)[-1].split("</Code>", 1)[0] if "<Code>" in answer.text else answer.text


def refused(call) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]["Code"]


def test_a_presigned_part_url_stores_only_the_bytes_its_checksum_names(s3_server):
    provider = s3_server.provider_client()
    key = f"facts-{secrets.token_hex(4)}/a.dump.gpg"
    upload = provider.create_multipart_upload(Bucket=MANAGED_BUCKET, Key=key, ChecksumAlgorithm="SHA256")["UploadId"]
    part = os.urandom(64 * 1024)
    url = provider.generate_presigned_url("upload_part", ExpiresIn=60, Params={
        "Bucket": MANAGED_BUCKET, "Key": key, "UploadId": upload, "PartNumber": 1, "ChecksumSHA256": sha256_b64(part)})
    assert "X-Amz-SignedHeaders=host%3Bx-amz-checksum-sha256" in url
    header = {"x-amz-checksum-sha256": sha256_b64(part)}
    other = b"other bytes"

    assert s3_code(requests.put(url, data=part)) == "SignatureDoesNotMatch"  # the header left out
    assert s3_code(requests.put(url, data=other, headers=header)) == "BadDigest"
    assert s3_code(requests.put(url, data=other, headers={"x-amz-checksum-sha256": sha256_b64(other)})) \
        == "SignatureDoesNotMatch"
    copy = {**header, "x-amz-copy-source": f"{MANAGED_BUCKET}/{key}"}  # UploadPartCopy of another object
    assert s3_code(requests.put(url, headers=copy)) == "SignatureDoesNotMatch"
    assert s3_code(requests.put(url.replace("partNumber=1", "partNumber=2"), data=part, headers=header)) \
        == "SignatureDoesNotMatch"
    assert s3_code(requests.put(url.replace(key, key + "x"), data=part, headers=header)) == "SignatureDoesNotMatch"
    for method in ("GET", "DELETE", "POST"):
        assert requests.request(method, url, headers=header).status_code == 403, method
    assert provider.list_parts(Bucket=MANAGED_BUCKET, Key=key, UploadId=upload).get("Parts", []) == []

    assert requests.put(url, data=part, headers=header).status_code == 200
    [stored] = provider.list_parts(Bucket=MANAGED_BUCKET, Key=key, UploadId=upload)["Parts"]
    assert stored["Size"] == len(part)

    expiring = provider.generate_presigned_url("upload_part", ExpiresIn=1, Params={
        "Bucket": MANAGED_BUCKET, "Key": key, "UploadId": upload, "PartNumber": 2, "ChecksumSHA256": sha256_b64(part)})
    time.sleep(1.1)
    answer = requests.put(expiring, data=part, headers=header)
    assert answer.status_code == 403 and "expired" in answer.text
    provider.abort_multipart_upload(Bucket=MANAGED_BUCKET, Key=key, UploadId=upload)


def test_compliance_retention_holds_against_everyone_until_its_date(s3_server):
    admin, provider = s3_server.client(), s3_server.provider_client()
    folder = f"facts-{secrets.token_hex(4)}"
    until = (datetime.datetime.now(UTC) + datetime.timedelta(days=1)).replace(microsecond=0)
    lock = {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until}
    # and one that is locked for moments, to see its date end the lock
    brief, brief_until = f"{folder}/brief", (datetime.datetime.now(UTC) + datetime.timedelta(seconds=3))
    brief_id = provider.put_object(Bucket=MANAGED_BUCKET, Key=brief, Body=b"x", ObjectLockMode="COMPLIANCE",
                                   ObjectLockRetainUntilDate=brief_until)["VersionId"]
    assert refused(lambda: admin.delete_object(Bucket=MANAGED_BUCKET, Key=brief, VersionId=brief_id)) == "AccessDenied"

    # set by the control plane's own request, on the upload's start
    archive = f"{folder}/a.dump.gpg"
    upload = provider.create_multipart_upload(Bucket=MANAGED_BUCKET, Key=archive, ChecksumAlgorithm="SHA256", **lock)
    etag = provider.upload_part(Bucket=MANAGED_BUCKET, Key=archive, UploadId=upload["UploadId"], PartNumber=1,
                                Body=b"ciphertext", ChecksumSHA256=sha256_b64(b"ciphertext"))["ETag"]
    provider.complete_multipart_upload(Bucket=MANAGED_BUCKET, Key=archive, UploadId=upload["UploadId"],
                                       MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag,
                                                                   "ChecksumSHA256": sha256_b64(b"ciphertext")}]})
    # set by a presigned PutObject that signs the lock headers: without them it is refused
    manifest, body = f"{folder}/a.manifest.json", b'{"id": "a"}'
    url = provider.generate_presigned_url("put_object", ExpiresIn=60, Params={
        "Bucket": MANAGED_BUCKET, "Key": manifest, "ChecksumSHA256": sha256_b64(body), **lock})
    headers = {"x-amz-checksum-sha256": sha256_b64(body), "x-amz-object-lock-mode": "COMPLIANCE",
               "x-amz-object-lock-retain-until-date": until.strftime("%Y-%m-%dT%H:%M:%SZ")}
    unlocked = {k: v for k, v in headers.items() if "lock" not in k}
    assert s3_code(requests.put(url, data=body, headers=unlocked)) == "SignatureDoesNotMatch"
    assert requests.put(url, data=body, headers=headers).status_code == 200

    for key in (archive, manifest):
        [version] = admin.list_object_versions(Bucket=MANAGED_BUCKET, Prefix=key)["Versions"]
        held = {"Bucket": MANAGED_BUCKET, "Key": key, "VersionId": version["VersionId"]}
        assert admin.get_object_retention(**held)["Retention"]["Mode"] == "COMPLIANCE"
        for who in (admin, provider):
            assert refused(lambda: who.delete_object(**held)) == "AccessDenied"
            assert refused(lambda: who.delete_object(**held, BypassGovernanceRetention=True)) == "AccessDenied"
            shorter = {"Mode": "COMPLIANCE", "RetainUntilDate": until - datetime.timedelta(hours=12)}
            assert refused(lambda: who.put_object_retention(**held, Retention=shorter)) == "AccessDenied"
            weaker = {"Mode": "GOVERNANCE", "RetainUntilDate": until}
            assert refused(lambda: who.put_object_retention(**held, Retention=weaker,
                                                            BypassGovernanceRetention=True)) == "AccessDenied"
            batch = who.delete_objects(Bucket=MANAGED_BUCKET,
                                       Delete={"Objects": [{"Key": key, "VersionId": version["VersionId"]}]})
            assert [e["Code"] for e in batch["Errors"]] == ["AccessDenied"]
        # a plain delete only hides it behind a marker, and an overwrite is a new version: it stays whole
        admin.delete_object(Bucket=MANAGED_BUCKET, Key=key)
        admin.put_object(Bucket=MANAGED_BUCKET, Key=key, Body=b"forged")
        assert admin.get_object(**held)["Body"].read() in (b"ciphertext", body)

    time.sleep(max(0.0, (brief_until - datetime.datetime.now(UTC)).total_seconds() + 1.1))
    provider.delete_object(Bucket=MANAGED_BUCKET, Key=brief, VersionId=brief_id)  # its date has passed
    assert "Versions" not in admin.list_object_versions(Bucket=MANAGED_BUCKET, Prefix=brief)


def test_the_provider_identity_can_do_nothing_outside_its_bucket(s3_server, s3_bucket):
    admin, provider = s3_server.client(), s3_server.provider_client()
    admin.put_object(Bucket=s3_bucket, Key="backups/x", Body=b"another tenant's")
    assert [b["Name"] for b in provider.list_buckets()["Buckets"]] == [MANAGED_BUCKET]
    for call in (lambda: provider.get_object(Bucket=s3_bucket, Key="backups/x"),
                 lambda: provider.list_objects_v2(Bucket=s3_bucket),
                 lambda: provider.put_object(Bucket=s3_bucket, Key="backups/y", Body=b"y"),
                 lambda: provider.delete_object(Bucket=s3_bucket, Key="backups/x"),
                 lambda: provider.create_multipart_upload(Bucket=s3_bucket, Key="backups/z"),
                 lambda: provider.create_bucket(Bucket="remora-" + secrets.token_hex(6))):
        assert refused(call) == "AccessDenied"
    assert [o["Key"] for o in admin.list_objects_v2(Bucket=s3_bucket)["Contents"]] == ["backups/x"]
