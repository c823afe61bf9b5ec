"""The add-on's storage (managed plans): the add-on's own bucket, where nothing the customer's side
holds can delete or change a backup.

The runner holds no storage credential. A run writes through the control plane that launched it,
with its run token (REMORA_CONTROL_URL, REMORA_RUN_ID, REMORA_RUN_TOKEN), which grants that run
alone the keys of its one new backup: the control plane starts the multipart upload, answers each
part with a presigned URL bound to the part's SHA-256 (S3 refuses any other bytes), completes the
upload and stores the manifest. The customer reads with the add-on's config vars (REMORA_API_URL,
REMORA_API_TOKEN), through short-lived presigned GETs. Nothing here deletes: the control plane's
retention is the only deleter.

Errors: no answer, a 5xx or 429 from the control plane or from S3, a part S3 found damaged on the
way and a presigned URL that expired before it was used are transient; every other refusal (a run
token that expired, a key the run may not write) is permanent.
"""

from __future__ import annotations

import datetime
import io
import json
import re
import threading
from typing import BinaryIO
from urllib.parse import quote, urlsplit

import structlog
import urllib3

from runner import bearer
from runner.config import ADD_ON_STORAGE, Config
from runner.errors import ObjectNotFound, StorageError, TransientStorageError, UsageError
from runner.targets.base import MIB, Leftover, ObjectInfo, OpenUploads, Target, Upload
from runner.targets.parts import check_number, check_whole, checksum, part_size

log = structlog.get_logger()

MAX_ANSWER = 32 * MIB  # the longest answer read from the control plane (a listing of years of backups)
_S3_TRANSIENT = {"BadDigest", "XAmzContentSHA256Mismatch", "RequestTimeout", "SlowDown", "InternalError"}
_DELETES = "backups in the add-on's storage are removed only by the add-on's retention"


def from_config(config: Config) -> ManagedTarget:
    """The add-on's storage, with whichever of the run's and the customer's credentials are set."""
    run = api = None
    if config.control_url and config.run_id and config.run_token:
        if not bearer.may_carry(config.control_url):
            raise UsageError("REMORA_CONTROL_URL must be an https URL (plain http only to this machine)")
        base = f"{config.control_url.rstrip('/')}/api/v1/runs/{quote(config.run_id, safe='')}/storage"
        run = (base, config.run_token.reveal())
    if config.api_url and config.api_token:
        api = (f"{config.api_url.rstrip('/')}/storage", config.api_token.reveal())
    if run is None and api is None:
        raise UsageError(
            f"no credentials for {ADD_ON_STORAGE}",
            hint="set REMORA_API_URL and REMORA_API_TOKEN from the helper app's config vars, or REMORA_TARGET_URL",
        )
    timeout = urllib3.Timeout(connect=config.storage_timeout, read=config.storage_timeout)
    http = urllib3.PoolManager(maxsize=config.s3_in_flight + 2, timeout=timeout, retries=False)
    return ManagedTarget(http, run=run, api=api, part_size=config.s3_part_size, in_flight=config.s3_in_flight)


class ManagedTarget(Target):
    def __init__(self, http: urllib3.PoolManager, *, run: tuple[str, str] | None, api: tuple[str, str] | None,
                 part_size: int, in_flight: int):
        self.http = http
        self._run = run
        self._api = api
        self.base_part_size = part_size
        self.max_in_flight = in_flight
        self.open_uploads = OpenUploads()

    def call(self, who: str, method: str, path: str, *, action: str, body: bytes | None = None,
             document: dict | None = None, missing_ok: bool = False) -> dict:
        """One request to the control plane, as the run (``who="run"``) or as the customer ("api"),
        with ``body`` or a JSON ``document``; its JSON answer."""
        credentials = self._run if who == "run" else self._api
        if credentials is None:
            needs = "REMORA_API_URL and REMORA_API_TOKEN" if who == "api" else "a run launched by the add-on"
            raise UsageError(f"cannot {action} in {ADD_ON_STORAGE} without {needs}",
                             hint="backups are made by the add-on's runs; copy the helper app's REMORA_API_* to read")
        base, token = credentials
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
        if document is not None:
            body, headers["Content-Type"] = json.dumps(document).encode(), "application/json"
        status, answer = self._request(method, base + path, body=body, headers=headers, action=action)
        if status == 404 and missing_ok:
            raise ObjectNotFound(f"no object {path.removeprefix('/objects/')} in {ADD_ON_STORAGE}")
        if status >= 300:
            raise _refusal(status, answer, f"the add-on could not {action}", control_plane=True)
        found = bearer.json_answer(answer, most=MAX_ANSWER) if answer else {}
        if not isinstance(found, dict):
            raise StorageError(f"the add-on answered {action} with something that is not a JSON object")
        return found

    def _request(self, method: str, url: str, *, action: str, **kwargs) -> tuple[int, bytes]:
        """(status, body) of one HTTP request, the body read up to a bound; no answer at all is transient."""
        try:
            answer = self.http.request(method, url, redirect=False, preload_content=False, **kwargs)
            try:
                body = answer.read(MAX_ANSWER + 1)
            finally:
                answer.release_conn()
        except urllib3.exceptions.HTTPError as e:
            raise TransientStorageError(f"cannot reach {urlsplit(url).netloc} to {action}: {type(e).__name__}",
                                        hint="check the network; try again later") from e
        if len(body) > MAX_ANSWER:
            raise StorageError(f"the answer to {action} is over {MAX_ANSWER // MIB} MiB")
        return answer.status, body

    def s3_put(self, url: str, data: bytes, headers: dict[str, str], *, action: str) -> None:
        """PUT ``data`` to a presigned URL the control plane granted."""
        status, answer = self._request("PUT", url, body=data, headers=headers, action=action)
        if status >= 300:
            raise _refusal(status, answer, f"S3 refused to {action}", control_plane=False)

    def begin(self, key: str) -> Upload:
        return _ManagedUpload(self, key)

    def put(self, key: str, data: bytes) -> None:
        self.call("run", "PUT", f"/objects/{_path(key)}", body=data, action=f"store {key}")

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        listed = self.call("api", "GET", f"/objects?prefix={quote(prefix, safe='')}", action="list backups")
        try:
            return [_info(item) for item in listed["objects"]]
        except (KeyError, TypeError, ValueError) as e:
            raise StorageError(f"the add-on's listing is not what it should be: {type(e).__name__}") from e

    def stat(self, key: str) -> ObjectInfo:
        return self._describe(key)[0]

    def _describe(self, key: str) -> tuple[ObjectInfo, dict]:
        found = self.call("api", "GET", f"/objects/{_path(key)}", action=f"read {key}", missing_ok=True)
        try:
            return _info(found), found
        except (KeyError, TypeError, ValueError) as e:
            raise StorageError(f"the add-on's answer about {key} is not what it should be") from e

    def open(self, key: str, offset: int = 0) -> BinaryIO:
        url = self._describe(key)[1].get("url")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise StorageError(f"the add-on gave no download link for {key}")
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            answer = self.http.request("GET", url, headers=headers, redirect=False, preload_content=False)
        except urllib3.exceptions.HTTPError as e:
            raise TransientStorageError(f"cannot reach the storage to read {key}: {type(e).__name__}") from e
        if answer.status not in (200, 206):
            body = answer.read(4096)
            answer.release_conn()
            raise _refusal(answer.status, body, f"S3 refused to read {key}", control_plane=False)
        return io.BufferedReader(_BodyReader(answer, key), buffer_size=MIB)

    def delete(self, key: str) -> None:
        raise StorageError(f"cannot delete {key}: {_DELETES}", hint="set the retention policy in the add-on")

    def leftovers(self, prefix: str = "") -> list[Leftover]:
        return []  # the add-on aborts unfinished uploads itself

    def discard(self, leftover: Leftover) -> None:
        raise StorageError(f"cannot discard {leftover.key}: {_DELETES}")

    def close(self) -> None:
        """Abort uploads left neither completed nor aborted, then release connections."""
        self.open_uploads.abort_all()
        self.http.clear()


class _ManagedUpload(Upload):
    """A multipart upload the control plane started; each part goes to S3 through its own presigned URL."""

    def __init__(self, target: ManagedTarget, key: str):
        self._target = target
        self._key = key
        self._sizes: dict[int, int] = {}
        self._lock = threading.Lock()
        started = target.call("run", "POST", "/uploads", document={"key": key}, action=f"start the upload of {key}")
        self._handle = started.get("upload")
        if not isinstance(self._handle, str) or not re.fullmatch(r"[0-9a-f-]{36}", self._handle):
            raise StorageError(f"the add-on started the upload of {key} but named it oddly")
        target.open_uploads.add(self)

    def part_size(self, number: int) -> int:
        return part_size(self._target.base_part_size, number)

    def send(self, number: int, data: bytes) -> None:
        check_number(number, self._key)
        what = f"part {number} of {self._key}"
        grant = self._target.call("run", "POST", f"/uploads/{self._handle}/parts/{number}", action=f"grant {what}",
                                  document={"sha256": checksum(data), "size": len(data)})
        url, headers = grant.get("url"), grant.get("headers")
        if not (isinstance(url, str) and isinstance(headers, dict)
                and all(isinstance(v, str) for v in headers.values())):
            raise StorageError(f"the add-on's grant for {what} is not what it should be")
        self._target.s3_put(url, data, headers, action=f"upload {what}")
        with self._lock:
            self._sizes[number] = len(data)

    def complete(self) -> None:
        with self._lock:
            numbers, total = sorted(self._sizes), sum(self._sizes.values())
        check_whole(numbers, self._key)
        self._target.call("run", "POST", f"/uploads/{self._handle}/complete", action=f"complete {self._key}",
                          document={"parts": len(numbers), "bytes": total})
        self._target.open_uploads.end(self)

    def abort(self) -> None:
        if not self._target.open_uploads.end(self):
            return  # completed or aborted already
        try:
            self._target.call("run", "DELETE", f"/uploads/{self._handle}", action=f"abort the upload of {self._key}")
        except Exception as e:  # noqa: BLE001 - abort runs while another error is on its way out; the add-on clears it later
            log.warning("abort failed; the add-on will remove the upload", upload=self._key, error=str(e))


class _BodyReader(io.RawIOBase):
    """A download's body whose read errors are transient storage errors (the read resumes)."""

    def __init__(self, answer, key: str):
        self._answer = answer
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            return self._answer.readinto(buffer)
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise TransientStorageError(f"reading {self._key} broke off: {type(e).__name__}") from e

    def close(self) -> None:
        if not self.closed:
            self._answer.release_conn()
        super().close()


def _refusal(status: int, body: bytes, doing: str, *, control_plane: bool) -> StorageError:
    """Sort an error answer into transient or permanent, with what the server said."""
    said = _said(body, control_plane=control_plane)
    message = f"{doing}: {said} (HTTP {status})"
    expired = not control_plane and status == 403 and "expired" in said.lower()
    if status >= 500 or status == 429 or expired or (not control_plane and said.split(":")[0] in _S3_TRANSIENT):
        return TransientStorageError(message, hint="try again later")
    if control_plane and status in (401, 403):
        return StorageError(message, hint="a run's token ends with the run; the API token is the helper app's")
    return StorageError(message)


def _said(body: bytes, *, control_plane: bool) -> str:
    """The error a server gave, as one printable line: the control plane's JSON, or S3's Code and Message."""
    text = body[:4096].decode("utf-8", "replace")
    if control_plane:
        found = bearer.json_answer(text, most=len(text))
        text = str(found.get("error", text)) if isinstance(found, dict) else text
    else:
        code = re.search(r"<Code>([^<]*)</Code>", text)
        message = re.search(r"<Message>([^<]*)</Message>", text)
        text = f"{code[1]}: {message[1] if message else ''}" if code else text
    return re.sub(r"[^\x20-\x7e]+", " ", text).strip()[:300] or "no message"


def _info(item: dict) -> ObjectInfo:
    size = item["size"]
    if not isinstance(item["key"], str) or not isinstance(size, int) or size < 0:
        raise ValueError("bad object")
    modified = datetime.datetime.fromisoformat(item["modified"].replace("Z", "+00:00"))
    return ObjectInfo(key=item["key"], size=size, modified=modified.astimezone(datetime.timezone.utc))


def _path(key: str) -> str:
    return quote(key, safe="/")
