"""The add-on's storage over HTTP: a run writes its one backup (run token), the customer reads (API token).

A run's first write claims its backup (label and id): every later write must be to that backup's
archive or manifest, and two runs of a resource never claim the same id. The archive goes up as a
multipart upload that the control plane starts and completes, each part through a presigned URL
bound to the part's SHA-256; the manifest is stored last, by the control plane, once it has
checked it against the archive, and from then on the run writes nothing more. Nothing here deletes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import re
import uuid

import psycopg
from flask import Blueprint, abort, current_app, jsonify, request

from control import api, db, inputs, resources, runs, uploads
from control.store import Store
from runner import catalog
from runner.errors import ObjectNotFound, RemoraError, StorageError
from runner.manifest import Manifest
from runner.targets.parts import MAX_PART_SIZE, MAX_PARTS

bp = Blueprint("storage", __name__, url_prefix="/api/v1")
MAX_UPLOADS = 10  # uploads a run may start: one, and a few starts tried again after a lost answer
SKEW = datetime.timedelta(minutes=5)  # how far a run's clock may be off from ours
_BYO = "this resource's plan (byo) stores backups in your own target: set REMORA_TARGET_URL on the helper app"


def store() -> Store:
    found = current_app.extensions.get("remora.store")
    if found is None:  # the operator's to fix: asking again will not help
        abort(409, "this add-on has no storage configured: use the byo plan, with REMORA_TARGET_URL")
    return found


def writing_run(run_id) -> tuple[dict, dict]:
    """The run whose token came with the request, and its resource: a live run of a managed resource."""
    run = api.authorized_run(run_id)
    with db.pool().connection() as conn:
        resource = resources.get(conn, run["resource_id"])
    if resource is None or not runs.accepts_events(run, grace=current_app.config["LOST_GRACE"]):
        abort(403, f"run has ended ({run['state']}) or outlived its time to live")
    if not resources.managed(resource):
        abort(409, _BYO)
    return run, resource


def _manifest_bytes() -> bytes:
    """The request's body, of a length it gave (a manifest is about 1 KiB; the app refuses 64 KiB or more)."""
    if request.content_length is None:
        abort(411, "the manifest must come with its length")
    return request.get_data()


def _claim(run: dict, key, *, suffix: str, what: str) -> catalog.BackupFile:
    """The backup ``key`` (``what``: a backup's archive or manifest, by ``suffix``) belongs to, claimed for
    ``run`` by its first write; 409 if it is another's."""
    file = catalog.parse_key(key) if isinstance(key, str) else None
    if file is None or file.suffix != suffix:
        abort(400, f"the key is not that of {what}")
    now = datetime.datetime.now(datetime.timezone.utc)
    if not run["created_at"] - SKEW <= catalog.id_time(file.id) <= now + SKEW:
        abort(400, f"backup id {file.id} does not carry this run's time")
    try:
        with db.pool().connection() as conn:
            claimed = conn.execute(
                "update runs set storage_label = %s, storage_id = %s where id = %s and committed_at is null"
                " and (storage_id is null or (storage_label = %s and storage_id = %s))",
                (file.label, file.id, run["id"], file.label, file.id)).rowcount
    except psycopg.errors.UniqueViolation:
        abort(409, f"backup id {file.id} belongs to another run")
    if not claimed:
        abort(409, "this run writes one backup, and nothing once its manifest is stored")
    return file


@contextlib.contextmanager
def storage_failures(*, missing: int = 503):
    """Answer a storage failure with 503 (the runner tries again), or ``missing`` for an object not found."""
    try:
        yield
    except ObjectNotFound:
        abort(missing, "no such object")
    except StorageError as e:
        current_app.logger.warning("the add-on's storage failed: %s", e.one_line())
        abort(503, "the add-on's storage failed; try again later")


@bp.post("/runs/<uuid:run_id>/storage/uploads")
def begin(run_id):
    run, resource = writing_run(run_id)
    key = inputs.json_object().get("key")
    file = _claim(run, key, suffix=catalog.ARCHIVE_SUFFIX, what="a backup's archive (a manifest is stored whole)")
    with db.pool().connection() as conn:
        started = uploads.count(conn, run["id"])
    if started >= MAX_UPLOADS:
        abort(409, f"this run has started {MAX_UPLOADS} uploads already")
    with storage_failures():
        if store().exists(resource["id"], key):
            abort(409, f"{key} is stored already")
        upload_id = store().begin(resource["id"], key, taken=catalog.id_time(file.id))
    with db.pool().connection() as conn:
        kept = uploads.start(conn, run["id"], key, upload_id)
    return jsonify(upload=str(kept)), 201


def _open_upload(run: dict, upload: uuid.UUID) -> dict:
    with db.pool().connection() as conn:
        found = uploads.get(conn, run["id"], upload)
    if found is None or found["aborted_at"] is not None:
        abort(404, "no such upload")
    return found


@bp.post("/runs/<uuid:run_id>/storage/uploads/<uuid:upload>/parts/<int:number>")
def grant_part(run_id, upload, number):
    run, resource = writing_run(run_id)
    body = inputs.json_object()
    size, sha256 = body.get("size"), body.get("sha256")
    if not (1 <= number <= MAX_PARTS and inputs.is_count(size, most=MAX_PART_SIZE)):
        abort(400, f"parts are numbered 1 to {MAX_PARTS} and hold at most {MAX_PART_SIZE} bytes")
    if not _is_sha256(sha256):
        abort(400, "sha256 must be a SHA-256 in base64")
    found = _open_upload(run, upload)
    if found["completed_at"] is not None:
        abort(409, "the upload is complete")
    with db.pool().connection() as conn:
        uploads.grant_part(conn, upload, number, sha256, size)
    url, headers = store().part_url(resource["id"], found["key"], found["upload_id"], number, sha256)
    return jsonify(url=url, headers=headers)


@bp.post("/runs/<uuid:run_id>/storage/uploads/<uuid:upload>/complete")
def complete(run_id, upload):
    run, resource = writing_run(run_id)
    body = inputs.json_object()
    found = _open_upload(run, upload)
    if found["completed_at"] is None:
        with db.pool().connection() as conn:
            granted = uploads.granted(conn, upload)
        if [p[0] for p in granted] != list(range(1, len(granted) + 1)) or (
                body.get("parts"), body.get("bytes")) != (len(granted), sum(p[2] for p in granted)):
            abort(409, "the parts granted are not the parts and bytes the run says it sent")
        with storage_failures():
            store().complete(resource["id"], found["key"], found["upload_id"], granted)
        _end_upload(found, completed=True)
    _abort_others(resource, run, keep=found["id"])
    return jsonify(key=found["key"])


@bp.delete("/runs/<uuid:run_id>/storage/uploads/<uuid:upload>")
def abort_upload(run_id, upload):
    run, resource = writing_run(run_id)
    found = _open_upload(run, upload)
    if found["completed_at"] is None:
        with storage_failures():
            store().abort(resource["id"], found["key"], found["upload_id"])
        _end_upload(found, completed=False)
    return "", 204


def _end_upload(upload: dict, *, completed: bool) -> None:
    with db.pool().connection() as conn:
        uploads.end(conn, upload["id"], completed=completed)


def _abort_others(resource: dict, run: dict, *, keep) -> None:
    """Abort the run's other open uploads: a start that was retried after its answer was lost."""
    with db.pool().connection() as conn:
        strays = uploads.open_besides(conn, run["id"], keep)
    for stray in strays:
        try:
            store().abort(resource["id"], stray["key"], stray["upload_id"])
        except StorageError as e:  # the backup is whole all the same; the clock aborts it once the run ends
            current_app.logger.warning("aborting a stray upload of run %s failed: %s", run["id"], e.one_line())
            continue
        _end_upload(stray, completed=False)


@bp.put("/runs/<uuid:run_id>/storage/objects/<path:key>")
def commit(run_id, key):
    """Store the run's manifest, checked against its archive: the backup is complete from here on."""
    run, resource = writing_run(run_id)
    data = _manifest_bytes()
    if run["committed_at"] is not None and key == _manifest_key(run):
        return jsonify(key=key)  # the run tries again after an answer it never got
    file = _claim(run, key, suffix=catalog.MANIFEST_SUFFIX, what="a backup's manifest (an archive goes up in parts)")
    try:  # it must name the backup of its key
        manifest = Manifest.from_bytes(data, key=key, label=file.label, backup_id=file.id)
    except RemoraError as e:
        abort(400, e.message)
    archive = catalog.archive_key(file.label, file.id)
    with storage_failures(missing=409):
        size = store().stat(resource["id"], archive).size
        if size != manifest.encrypted_bytes:
            abort(409, f"the archive holds {size} bytes, the manifest says {manifest.encrypted_bytes}")
        store().put(resource["id"], key, data, taken=catalog.id_time(file.id))
    with db.pool().connection() as conn:
        conn.execute("update runs set committed_at = now(), backup_id = %s, sha256 = %s, encrypted_bytes = %s,"
                     " dump_bytes = %s where id = %s",
                     (manifest.id, manifest.sha256, manifest.encrypted_bytes, manifest.dump_bytes, run["id"]))
    return jsonify(key=key), 201


def _manifest_key(run: dict) -> str | None:
    return catalog.manifest_key(run["storage_label"], run["storage_id"]) if run["storage_id"] else None


# --- the customer's reads ----------------------------------------------------------------------


def reading_resource(resource_id) -> dict:
    resource = api.authorized_resource(resource_id)
    if not resources.managed(resource):
        abort(409, _BYO)
    return resource


@bp.get("/resources/<uuid:resource_id>/storage/objects")
def list_objects(resource_id):
    resource = reading_resource(resource_id)
    prefix = request.args.get("prefix", "")
    if not _is_prefix(prefix):
        abort(400, "prefix must be a label, or a path below one")
    with storage_failures():
        found = store().objects(resource["id"], prefix)
    objects = [info for info in found if catalog.parse_key(info.key) is not None]
    return jsonify(objects=[_public(info) for info in objects], bytes=sum(info.size for info in objects))


@bp.get("/resources/<uuid:resource_id>/storage/objects/<path:key>")
def show_object(resource_id, key):
    resource = reading_resource(resource_id)
    file = catalog.parse_key(key)
    if file is None:
        abort(404, "no such object")
    with storage_failures(missing=404):
        info = store().stat(resource["id"], key)
    return jsonify(**_public(info), url=store().read_url(resource["id"], key))


def _public(info) -> dict:
    return {"key": info.key, "size": info.size, "modified": runs.iso(info.modified)}


def _is_prefix(text: str) -> bool:
    """Names that start with a letter or digit, between slashes (the last may be empty): nothing past a folder."""
    if len(text) > 200:
        return False
    *folders, last = text.split("/")
    return all(_NAME.fullmatch(name) for name in folders) and (last == "" or _NAME.fullmatch(last) is not None)


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _is_sha256(value) -> bool:
    try:
        return isinstance(value, str) and len(base64.b64decode(value, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False
