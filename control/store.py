"""The add-on's storage: the provider's S3 bucket, for which only the control plane holds credentials.

Resource R's objects live under ``PREFIX/<R's id>/``, in the runner's usual layout below that. A
run never gets the credentials: it gets a presigned URL for each part of its own upload, bound to
that part's SHA-256 (``part_url``), and customers get short-lived presigned GETs (``read_url``).
The control plane starts, completes and aborts uploads and stores small objects itself. With a
lock period (REMORA_STORAGE_LOCK_DAYS, on a bucket with Object Lock), every object is written with
COMPLIANCE retention: nobody, the control plane included, can delete it or shorten that before then.

Deleting goes version by version (a bucket with Object Lock keeps versions): a plain DeleteObject
would only hide an object behind a delete marker. Errors are the runner's storage errors
(``runner.targets.s3`` sorts boto's).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
from collections.abc import Mapping
from urllib.parse import urlsplit

from runner.errors import StorageError
from runner.targets.base import Leftover, ObjectInfo

PART_URL_SECONDS = 300  # a run asks for each part's URL just before it sends the part
READ_URL_SECONDS = 300  # a download starts at once; a read resumed after a drop asks again
LOCK_MODE = "COMPLIANCE"


@dataclasses.dataclass(frozen=True)
class Version:
    """One version of an object (or a delete marker), and until when it is locked."""

    key: str
    version_id: str
    locked_until: datetime.datetime | None


class Store:
    """The provider's bucket, folder by resource."""

    def __init__(self, *, bucket: str, prefix: str, client, lock: datetime.timedelta | None):
        self.bucket = bucket
        self.prefix = prefix
        self.client = client
        self.lock = lock

    @classmethod
    def from_config(cls, config: Mapping) -> Store | None:
        """The store REMORA_STORAGE_* configure, or None when there is none (and boto3 is not imported)."""
        if not config.get("STORAGE_URL"):
            return None
        import boto3
        from botocore.config import Config as BotoConfig

        parts = urlsplit(config["STORAGE_URL"])
        endpoint = config.get("STORAGE_ENDPOINT_URL")
        client = boto3.session.Session().client(
            "s3",
            aws_access_key_id=config["STORAGE_ACCESS_KEY_ID"],
            aws_secret_access_key=config["STORAGE_SECRET_ACCESS_KEY"],
            region_name=config.get("STORAGE_REGION") or "us-east-1",
            endpoint_url=endpoint,
            config=BotoConfig(
                signature_version="s3v4",  # presigned URLs that sign their headers (the part's checksum)
                connect_timeout=10, read_timeout=60, retries={"mode": "standard", "total_max_attempts": 3},
                request_checksum_calculation="when_required", response_checksum_validation="when_required",
                s3={"addressing_style": "path"} if endpoint else None,
            ),
        )
        return cls(bucket=parts.netloc, prefix=parts.path.strip("/"), client=client, lock=config.get("STORAGE_LOCK"))

    def folder(self, resource_id) -> str:
        """Where a resource's objects live in the bucket (with a trailing slash)."""
        return f"{self.prefix}/{resource_id}/" if self.prefix else f"{resource_id}/"

    def target(self, resource_id):
        """The resource's folder as a runner target (an S3Target): list, stat, leftovers, discard, never delete."""
        from runner.targets.s3 import S3Target

        return S3Target(bucket=self.bucket, prefix=self.folder(resource_id).rstrip("/"), client=self.client,
                        part_size=0, in_flight=1)

    def retain_until(self, taken: datetime.datetime) -> dict:
        """The lock headers for an object of a backup taken at ``taken``: at least the lock period after it."""
        if self.lock is None:
            return {}
        now = datetime.datetime.now(datetime.timezone.utc)
        until = (max(taken, now) + self.lock).replace(microsecond=0) + datetime.timedelta(seconds=1)
        return {"ObjectLockMode": LOCK_MODE, "ObjectLockRetainUntilDate": until}

    # --- a run's writes ------------------------------------------------------------------------

    def begin(self, resource_id, key: str, *, taken: datetime.datetime) -> str:
        """Start a multipart upload of ``key`` (locked once complete); its S3 upload id."""
        target = self.target(resource_id)
        with target.errors("start an upload to", key):
            created = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=target.full_key(key), ChecksumAlgorithm="SHA256",
                **self.retain_until(taken),
            )
        return created["UploadId"]

    def part_url(self, resource_id, key: str, upload_id: str, number: int, sha256: str) -> tuple[str, dict]:
        """A presigned UploadPart URL that S3 honours only with these bytes, and the headers to send."""
        params = {"Bucket": self.bucket, "Key": self.target(resource_id).full_key(key), "UploadId": upload_id,
                  "PartNumber": number, "ChecksumSHA256": sha256}
        url = self.client.generate_presigned_url("upload_part", Params=params, ExpiresIn=PART_URL_SECONDS)
        return url, {"x-amz-checksum-sha256": sha256}

    def complete(self, resource_id, key: str, upload_id: str, parts: list[tuple[int, str, int]]) -> None:
        """Complete the upload with exactly ``parts`` (number, SHA-256, size), each as S3 holds it."""
        target = self.target(resource_id)
        full_key = target.full_key(key)
        with target.errors("complete the upload of", key):
            pages = self.client.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=full_key, UploadId=upload_id)
            held = {part["PartNumber"]: part for page in pages for part in page.get("Parts", ())}
            if sorted(held) != [number for number, _, _ in parts] or any(
                    held[number]["Size"] != size for number, _, size in parts):
                raise StorageError(f"the parts stored for {key} are not the parts granted")
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=full_key, UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": number, "ETag": held[number]["ETag"],
                                            "ChecksumSHA256": sha256} for number, sha256, _ in parts]},
            )

    def abort(self, resource_id, key: str, upload_id: str) -> None:
        """Abort an upload; one gone already is fine."""
        now = datetime.datetime.now(datetime.timezone.utc)
        self.target(resource_id).discard(Leftover(key, now, handle=upload_id))

    def put(self, resource_id, key: str, data: bytes, *, taken: datetime.datetime) -> None:
        """Store a small object (a manifest) in one piece, locked like the archive."""
        target = self.target(resource_id)
        with target.errors("write", key):
            self.client.put_object(Bucket=self.bucket, Key=target.full_key(key), Body=data,
                                   ChecksumSHA256=base64.b64encode(hashlib.sha256(data).digest()).decode(),
                                   **self.retain_until(taken))

    def exists(self, resource_id, key: str) -> bool:
        """Whether any version of ``key`` is stored, or a delete marker hides one."""
        return any(version.key == key for version in self.versions(resource_id, key))

    # --- reads -----------------------------------------------------------------------------------

    def objects(self, resource_id, prefix: str = "") -> list[ObjectInfo]:
        return self.target(resource_id).list(prefix)

    def stat(self, resource_id, key: str) -> ObjectInfo:
        return self.target(resource_id).stat(key)

    def read_url(self, resource_id, key: str) -> str:
        params = {"Bucket": self.bucket, "Key": self.target(resource_id).full_key(key)}
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=READ_URL_SECONDS)

    # --- the clock's deletes -------------------------------------------------------------------

    def versions(self, resource_id, prefix: str = "") -> list[Version]:
        """Every version and delete marker under ``prefix`` in the resource's folder, each with its lock."""
        target = self.target(resource_id)
        root = self.folder(resource_id)
        found = []
        with target.errors("list the versions of", prefix):
            pages = self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=root + prefix)
            for page in pages:
                for item in (*page.get("Versions", ()), *page.get("DeleteMarkers", ())):
                    found.append(Version(item["Key"][len(root):], item["VersionId"], self._locked_until(item)))
        return found

    def _locked_until(self, item: dict) -> datetime.datetime | None:
        if "Size" not in item:  # a delete marker holds nothing and is never locked
            return None
        head = self.client.head_object(Bucket=self.bucket, Key=item["Key"], VersionId=item["VersionId"])
        until = head.get("ObjectLockRetainUntilDate")
        return until.astimezone(datetime.timezone.utc) if until is not None else None

    def delete(self, resource_id, versions: list[Version]) -> None:
        """Delete these versions for good (S3 refuses a locked one)."""
        target = self.target(resource_id)
        for version in versions:
            with target.errors("delete", version.key):
                self.client.delete_object(Bucket=self.bucket, Key=target.full_key(version.key),
                                          VersionId=version.version_id)
