"""s3://bucket/prefix — Amazon S3, or any S3-compatible store named by AWS_ENDPOINT_URL_S3.

Archives go up as multipart uploads. Every part carries a SHA-256 we compute from the bytes in
memory, and the server refuses a part whose bytes do not match it, so a transfer corrupted on
the way is rejected (and retried) instead of stored. Nothing is visible under a key until
``complete()``; an aborted upload leaves nothing behind.

botocore does not retry (``runner.targets.retrying`` does, once for every target), and waits
``REMORA_STORAGE_TIMEOUT`` for a connection or an answer.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import threading
from typing import BinaryIO
from urllib.parse import SplitResult, unquote

import boto3
import structlog
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError as BotoConnectionError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    SSLError,
)

from runner.config import Config
from runner.errors import (
    ObjectNotFound,
    RemoraError,
    StorageError,
    TransientStorageError,
    UsageError,
)
from runner.targets.base import MIB, Leftover, ObjectInfo, OpenUploads, Target, Upload
from runner.targets.parts import check_number, check_whole, checksum, part_size

log = structlog.get_logger()

_TRANSIENT_CODES = {
    "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "RequestTimeoutException",
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestLimitExceeded", "TooManyRequestsException", "PriorRequestNotComplete",
    "BandwidthLimitExceeded", "RequestThrottledException",
    # our checksum is of the bytes in memory: a mismatch means they were damaged on the way
    "BadDigest", "XAmzContentSHA256Mismatch", "InvalidDigest",
}
_DENIED_CODES = {
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
    "TokenRefreshRequired", "AllAccessDisabled", "AccountProblem", "403", "Forbidden",
}
_MISSING_CODES = {"NoSuchKey", "NotFound", "404"}
_DENIED_HINT = "check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket's policy"


def from_url(parts: SplitResult, config: Config) -> S3Target:
    return S3Target(
        bucket=parts.netloc,
        prefix=unquote(parts.path).strip("/"),
        client=_client(config),
        part_size=config.s3_part_size,
        in_flight=config.s3_in_flight,
    )


def _client(config: Config):
    """A boto3 client from the config's explicit settings; unset ones fall back to boto3's chain."""
    secret = config.aws_secret_access_key
    token = config.aws_session_token
    botocore_config = BotoConfig(
        connect_timeout=config.storage_timeout,
        read_timeout=config.storage_timeout,
        # retries live in runner.targets.retrying; botocore's own would multiply them, and hide
        # from the log that a permanent error was tried once
        retries={"mode": "standard", "total_max_attempts": 1},
        # we send our own SHA-256 per part; botocore's default would add a CRC32 of its own
        request_checksum_calculation="when_required",
        # a multipart object has a composite checksum that can't be checked against the
        # whole body; the manifest's SHA-256 is what verifies a download
        response_checksum_validation="when_required",
        max_pool_connections=max(10, config.s3_in_flight + 2),
        tcp_keepalive=True,
        # S3-compatible stores mostly serve buckets by path, not as DNS names
        s3={"addressing_style": "path"} if config.aws_endpoint_url else None,
    )
    try:
        return boto3.session.Session().client(
            "s3",
            aws_access_key_id=config.aws_access_key_id,
            aws_secret_access_key=secret.reveal() if secret else None,
            aws_session_token=token.reveal() if token else None,
            region_name=config.aws_region,
            endpoint_url=config.aws_endpoint_url,
            config=botocore_config,
        )
    except (BotoCoreError, ValueError) as e:
        raise UsageError(f"cannot set up the S3 client: {e}", hint="check the AWS_* variables") from e


class S3Target(Target):
    def __init__(self, *, bucket: str, prefix: str, client, part_size: int, in_flight: int):
        self.bucket = bucket
        self.prefix = prefix
        self.client = client
        self.base_part_size = part_size
        self.max_in_flight = in_flight
        self.open_uploads = OpenUploads()
        self.unsure_starts: set[str] = set()  # keys whose upload S3 may have started unanswered

    def full_key(self, key: str) -> str:
        """The object's key in the bucket: the target's key under the URL's prefix."""
        return f"{self.prefix}/{key}" if self.prefix else key

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self.full_key(key)}"

    @contextlib.contextmanager
    def errors(self, action: str, key: str = ""):
        """Turn boto's exceptions raised inside into the runner's storage errors."""
        try:
            yield
        except ClientError as e:
            raise _client_failure(e, self, action, key) from e
        except BotoCoreError as e:
            raise _transport_failure(e, self, action, key) from e

    def begin(self, key: str) -> Upload:
        return _S3Upload(self, key)

    def put(self, key: str, data: bytes) -> None:
        with self.errors("write", key):
            self.client.put_object(
                Bucket=self.bucket, Key=self.full_key(key), Body=data, ChecksumSHA256=checksum(data)
            )

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        root = self.full_key("")
        found = []
        with self.errors("list", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=root + prefix
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    if not item["Key"].endswith("/"):  # folder markers made by consoles
                        found.append(_info(item["Key"][len(root):], item["Size"], item["LastModified"]))
        return found

    def stat(self, key: str) -> ObjectInfo:
        with self.errors("read", key):
            head = self.client.head_object(Bucket=self.bucket, Key=self.full_key(key))
        return _info(key, head["ContentLength"], head["LastModified"])

    def open(self, key: str, offset: int = 0) -> BinaryIO:
        ranged = {"Range": f"bytes={offset}-"} if offset else {}
        with self.errors("read", key):
            body = self.client.get_object(Bucket=self.bucket, Key=self.full_key(key), **ranged)["Body"]
        return io.BufferedReader(_BodyReader(self, key, body), buffer_size=MIB)

    def delete(self, key: str) -> None:
        with contextlib.suppress(ObjectNotFound), self.errors("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=self.full_key(key))

    def close(self) -> None:
        """Abort uploads left neither completed nor aborted, then release connections."""
        self.open_uploads.abort_all()
        self.client.close()

    def leftovers(self, prefix: str = "") -> list[Leftover]:
        root = self.full_key("")
        found = []
        with self.errors("list the open uploads of", prefix):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=root + prefix
            )
            for page in pages:
                for item in page.get("Uploads", ()):
                    modified = self._last_sign_of_life(item)
                    if modified is not None:  # else it completed or was aborted meanwhile
                        found.append(Leftover(item["Key"][len(root):], modified, handle=item["UploadId"]))
        return found

    def _last_sign_of_life(self, upload: dict) -> datetime.datetime | None:
        """When the upload last stored a part, or began: a long upload that still sends parts is alive."""
        parts = self.client.get_paginator("list_parts").paginate(
            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
        )
        try:
            times = [part["LastModified"] for page in parts for part in page.get("Parts", ())]
        except ClientError as e:
            if _no_such_upload(e):
                return None
            raise
        return max([upload["Initiated"], *times]).astimezone(datetime.timezone.utc)

    def discard(self, leftover: Leftover) -> None:
        with self.errors("abort the upload of", leftover.key):
            try:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.full_key(leftover.key), UploadId=leftover.handle
                )
            except ClientError as e:
                if not _no_such_upload(e):  # else it is gone already: fine
                    raise


class _S3Upload(Upload):
    """A multipart upload. Parts may be sent from several threads at once, and sent again."""

    def __init__(self, target: S3Target, key: str):
        self._target = target
        self._key = key
        self._parts: dict[int, dict] = {}
        self._lock = threading.Lock()
        try:
            with target.errors("start an upload to", key):
                created = target.client.create_multipart_upload(
                    Bucket=target.bucket, Key=target.full_key(key), ChecksumAlgorithm="SHA256"
                )
        except TransientStorageError:
            target.unsure_starts.add(key)  # S3 may have started it and lost the answer
            raise
        # from here on the upload holds storage until aborted, so register it at once
        self._upload_id = created["UploadId"]
        target.open_uploads.add(self)

    def part_size(self, number: int) -> int:
        return part_size(self._target.base_part_size, number)

    def send(self, number: int, data: bytes) -> None:
        check_number(number, self._target.url(self._key))
        sha256 = checksum(data)
        with self._target.errors(f"upload part {number} of", self._key):
            sent = self._target.client.upload_part(
                Bucket=self._target.bucket,
                Key=self._target.full_key(self._key),
                UploadId=self._upload_id,
                PartNumber=number,
                Body=data,
                ChecksumSHA256=sha256,
            )
        with self._lock:
            self._parts[number] = {
                "PartNumber": number, "ETag": sent["ETag"], "ChecksumSHA256": sha256
            }

    def complete(self) -> None:
        with self._lock:
            parts = [self._parts[n] for n in sorted(self._parts)]
        check_whole([p["PartNumber"] for p in parts], self._target.url(self._key))
        with self._target.errors("complete the upload of", self._key):
            self._target.client.complete_multipart_upload(
                Bucket=self._target.bucket,
                Key=self._target.full_key(self._key),
                UploadId=self._upload_id,
                MultipartUpload={"Parts": parts},
            )
        self._target.open_uploads.end(self)
        if self._key in self._target.unsure_starts:
            self._abort_strays()

    def abort(self) -> None:
        if not self._target.open_uploads.end(self):
            return  # completed or aborted already
        try:
            with self._target.errors("abort the upload of", self._key):
                self._target.client.abort_multipart_upload(
                    Bucket=self._target.bucket,
                    Key=self._target.full_key(self._key),
                    UploadId=self._upload_id,
                )
        except Exception as e:  # noqa: BLE001 - abort runs while another error is on its way out
            log.warning("abort failed", upload=self._target.url(self._key), error=str(e))
        self._abort_strays()

    def _abort_strays(self) -> None:
        """Abort every other upload to this key: one S3 started but whose answer was lost (the
        start was retried), or one that a part in flight brought back after the abort. Keys
        hold a unique backup id, so every upload to this key is this backup's."""
        full_key = self._target.full_key(self._key)
        try:
            with self._target.errors("list the uploads of", self._key):
                listed = self._target.client.list_multipart_uploads(Bucket=self._target.bucket, Prefix=full_key)
                for stray in listed.get("Uploads", ()):
                    if stray["Key"] == full_key:
                        self._target.client.abort_multipart_upload(
                            Bucket=self._target.bucket, Key=full_key, UploadId=stray["UploadId"]
                        )
        except Exception as e:  # noqa: BLE001 - a stray upload is never listed as a backup
            log.warning("could not look for stray uploads", upload=self._target.url(self._key), error=str(e))


class _BodyReader(io.RawIOBase):
    """A download's body whose read errors are storage errors."""

    def __init__(self, target: S3Target, key: str, body):
        self._target = target
        self._key = key
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        with self._target.errors("read", self._key):
            chunk = self._body.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def readall(self) -> bytes:
        with self._target.errors("read", self._key):
            return self._body.read()

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def _info(key: str, size: int, modified: datetime.datetime) -> ObjectInfo:
    return ObjectInfo(key=key, size=size, modified=modified.astimezone(datetime.timezone.utc))


def _no_such_upload(e: ClientError) -> bool:
    return e.response.get("Error", {}).get("Code") == "NoSuchUpload"


def _client_failure(e: ClientError, target: S3Target, action: str, key: str) -> StorageError:
    """Classify an error answer from S3 by its code, then by its HTTP status."""
    error = e.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    said = f"{code}: {error.get('Message') or 'no message'}" if code else str(status)
    url = target.url(key)
    if code == "NoSuchBucket":
        return StorageError(
            f"S3 bucket '{target.bucket}' does not exist ({said})",
            hint="create it or fix REMORA_TARGET_URL",
        )
    if code in _MISSING_CODES:
        return ObjectNotFound(f"no object {url}")
    if code in _DENIED_CODES or status == 403:
        return StorageError(f"S3 access denied to {url}: {said}", hint=_DENIED_HINT)
    if code in _TRANSIENT_CODES or status >= 500 or status == 429:
        return TransientStorageError(
            f"S3 could not {action} {url}: {said} (HTTP {status})", hint="try again later"
        )
    return StorageError(f"S3 refused to {action} {url}: {said} (HTTP {status})")


def _transport_failure(e: BotoCoreError, target: S3Target, action: str, key: str) -> RemoraError:
    """Classify a failure to get an answer from S3 at all."""
    url = target.url(key)
    endpoint = target.client.meta.endpoint_url
    if isinstance(e, (NoCredentialsError, PartialCredentialsError)):
        return UsageError(
            f"no complete AWS credentials to {action} {url}: {e}",
            hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        )
    if isinstance(e, SSLError):
        return StorageError(f"TLS with {endpoint} failed: {e}", hint="check AWS_ENDPOINT_URL_S3")
    if isinstance(e, (BotoConnectionError, HTTPClientError, IncompleteReadError)):
        return TransientStorageError(
            f"cannot reach S3 at {endpoint} to {action} {url}: {e}",
            hint="check the network and AWS_ENDPOINT_URL_S3",
        )
    return StorageError(f"S3 client failed to {action} {url}: {e}")
