"""The add-on's storage (managed plans): a run writes its own new backup only, the customer reads, the clock deletes.

Against the control plane's API served on a free port, real PostgreSQL, gpg, and SeaweedFS with
authentication on and Object Lock (tests/servers/seaweed.py).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import time
import uuid

import pytest
import requests

from control import expiry, settings, storage_api
from control.launchers.local import LocalLauncher
from control.store import Store
from runner import catalog
from runner.errors import StorageError
from runner.manifest import Manifest
from tests.controlplane import sso_form
from tests.helpers import craft_backup, ok, remora
from tests.managed import bucket_state
from tests.test_prune import CRAFTED, POLICY

UTC = datetime.timezone.utc


def store_backup(plane, resource: dict, *, data: bytes = b"ciphertext", label: str = "shop") -> str:
    """A backup stored the way a run stores one, through the API (in this process); its manifest key."""
    run, token = plane.run(resource)
    backup_id = catalog.new_id(datetime.datetime.now(UTC))
    with plane.target(plane.run_env(run, token)) as target:
        upload = target.begin(catalog.archive_key(label, backup_id))
        upload.send(1, data)
        upload.complete()
        target.put(catalog.manifest_key(label, backup_id), manifest_of(backup_id, data, label=label).to_bytes())
    plane.end(run)
    return catalog.manifest_key(label, backup_id)


def manifest_of(backup_id: str, data: bytes, *, label: str = "shop") -> Manifest:
    """A manifest for an archive holding ``data``."""
    stamp = f"{datetime.datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"
    return Manifest(id=backup_id, label=label, database=label, server_version="15.0", pg_dump_version=15,
                    archive_format="custom", compression="1", recipients=[], dump_bytes=0, encrypted_bytes=len(data),
                    sha256=hashlib.sha256(data).hexdigest(), started_at=stamp, finished_at=stamp, runner_version="test")


def test_a_backup_replaced_in_the_bucket_is_not_the_one_the_add_on_recorded(managed_plane, gpg_env, s3_server,
                                                                           storage_config):
    """Whoever holds the bucket's own credentials can hide a locked version behind a new one: the control plane's
    record of what the run stored, taken when it stored the manifest, tells them apart (runner/witness.py)."""
    resource, api_token = managed_plane.resource()
    manifest_key = store_backup(managed_plane, resource)
    backup_id = catalog.parse_key(manifest_key).id
    customer = {**gpg_env, **managed_plane.api_env(resource, api_token)}
    said = ok(remora("verify", backup_id, "--allow-unsigned", env=customer)).stderr  # made here, unsigned
    assert 'event="the control plane recorded this backup"' in said, said

    bucket, prefix = storage_config["STORAGE_URL"].removeprefix("s3://").split("/", 1)
    folder = f"{prefix}/{resource['id']}/"
    admin = s3_server.client()
    manifest = json.loads(admin.get_object(Bucket=bucket, Key=folder + manifest_key)["Body"].read())
    forged = b"forged ciphertext"
    admin.put_object(Bucket=bucket, Key=folder + manifest_key.replace(".manifest.json", ".dump.gpg"), Body=forged)
    manifest.update(sha256=hashlib.sha256(forged).hexdigest(), encrypted_bytes=len(forged))
    admin.put_object(Bucket=bucket, Key=folder + manifest_key, Body=json.dumps(manifest).encode())

    result = remora("verify", backup_id, "--allow-unsigned", env=customer)
    assert result.returncode == 7, result.stderr
    assert f"the control plane recorded backup {backup_id} with SHA-256" in result.stderr


def test_everything_a_run_holds_changes_no_backup_and_reads_no_other_resource(managed_plane, database_env, gpg_env,
                                                                             s3_server, storage_config):
    own, api_token = managed_plane.resource()
    other, _ = managed_plane.resource()
    existing = store_backup(managed_plane, own)
    others = store_backup(managed_plane, other)
    run, token = managed_plane.run(own)  # a run still going: its token is live
    env = {**database_env, **gpg_env, **managed_plane.run_env(run, token), **managed_plane.api_env(own, api_token)}
    assert not any(name.startswith(("AWS_", "REMORA_STORAGE_")) or "SECRET" in name for name in env)
    before = bucket_state(s3_server.client(), storage_config["STORAGE_URL"])

    as_run = {"Authorization": f"Bearer {token}"}
    as_customer = {"Authorization": f"Bearer {api_token}"}
    writes = f"{managed_plane.url}/api/v1/runs/{run['id']}/storage"
    reads = f"{managed_plane.url}/api/v1/resources/{own['id']}/storage"
    archive = existing.replace(".manifest.json", ".dump.gpg")

    def status(method: str, url: str, headers: dict, **kwargs) -> int:
        return requests.request(method, url, headers=headers, timeout=10, **kwargs).status_code

    # overwrite or replace an existing backup, or reach past the resource's folder
    manifest_bytes = requests.get(requests.get(f"{reads}/objects/{existing}", headers=as_customer).json()["url"]).content
    assert status("PUT", f"{writes}/objects/{existing}", as_run, data=manifest_bytes) == 409  # another run's id
    assert status("POST", f"{writes}/uploads", as_run, json={"key": archive}) == 409
    for key in (f"../{other['id']}/{others}", f"/{others}", others.replace("shop", "..")):
        assert status("POST", f"{writes}/uploads", as_run, json={"key": key}) == 400, key
    # delete or change retention: the API has no such thing, and the runner's target refuses to
    for method in ("DELETE", "PATCH"):
        assert status(method, f"{writes}/objects/{existing}", as_run) == 405
        assert status(method, f"{reads}/objects/{existing}", as_customer) == 405
    with managed_plane.target(env) as target, pytest.raises(StorageError, match="removed only by the add-on"):
        target.delete(existing)
    assert "pruned by the add-on" in remora("prune", "--keep", "daily=1", env=env).stderr

    # the run's own new upload: its part URL writes that part of that upload, with those bytes, and nothing else
    fresh = catalog.archive_key("shop", catalog.new_id(datetime.datetime.now(UTC)))
    upload = requests.post(f"{writes}/uploads", headers=as_run, json={"key": fresh}).json()["upload"]
    part = os.urandom(1024)
    grant = requests.post(f"{writes}/uploads/{upload}/parts/1", headers=as_run, json={
        "size": len(part), "sha256": base64.b64encode(hashlib.sha256(part).digest()).decode()}).json()
    url, headers = grant["url"], grant["headers"]
    folder = f"{own['id']}/"
    assert requests.put(url.replace(folder + fresh, folder + archive), data=part, headers=headers).status_code == 403
    assert requests.put(url, headers={**headers, "x-amz-copy-source": f"/{others}"}).status_code == 403
    assert requests.put(url + "&retention", data=part, headers=headers).status_code == 400  # InvalidRequest
    assert requests.put(url, data=b"x" * len(part), headers=headers).status_code == 400  # BadDigest
    assert requests.delete(url, headers=headers).status_code == 403
    assert status("POST", f"{writes}/uploads/{upload}/complete", as_run, json={"parts": 1, "bytes": 1}) == 409
    second = catalog.archive_key("shop", catalog.new_id(datetime.datetime.now(UTC)))
    assert status("POST", f"{writes}/uploads", as_run, json={"key": second}) == 409  # one backup a run

    # read another resource's objects, or use one credential for the other
    elsewhere = f"{managed_plane.url}/api/v1/resources/{other['id']}/storage"
    assert status("GET", f"{elsewhere}/objects", as_customer) == 404
    assert status("GET", f"{elsewhere}/objects/{others}", as_customer) == 404
    assert status("GET", f"{reads}/objects?prefix=../{other['id']}/", as_customer) == 400
    assert status("GET", f"{reads}/objects", as_run) == 401
    assert status("POST", f"{writes}/uploads", as_customer, json={"key": second}) == 401
    read_url = requests.get(f"{reads}/objects/{existing}", headers=as_customer).json()["url"]
    assert requests.get(read_url.replace(folder + existing, f"{other['id']}/{others}")).status_code == 403
    assert requests.delete(read_url).status_code == 403 and requests.put(read_url, data=b"{}").status_code == 403

    assert status("DELETE", f"{writes}/uploads/{upload}", as_run) == 204
    assert bucket_state(s3_server.client(), storage_config["STORAGE_URL"]) == before


def test_the_clock_deletes_what_the_policy_drops_and_after_the_grace_never_what_is_locked(managed_plane, s3_server):
    plane, store = managed_plane, managed_plane.store
    kept_by_policy, _ = plane.resource(retention=POLICY)
    gone, _ = plane.resource()
    briefly = Store(bucket=store.bucket, prefix=store.prefix, client=store.client, lock=datetime.timedelta(seconds=3))

    target = store.target(kept_by_policy["id"])
    now = f"{datetime.datetime.now(UTC):%Y-%m-%dT%H:%M}"
    ids = {name: craft_backup(target, "shop", when) for name, (when, _) in {**CRAFTED, "newest": (now, "")}.items()}
    # no policy keeps this one; the lock on its archive does, and so the whole backup stays
    locked_id = craft_backup(target, "shop", "2019-05-01T10:00")
    locked = catalog.archive_key("shop", locked_id)
    briefly.put(kept_by_policy["id"], locked, b"stand-in ciphertext", taken=catalog.id_time(locked_id))
    craft_backup(store.target(gone["id"]), "shop", "2020-01-01T10:00")
    briefly.put(gone["id"], locked, b"stand-in ciphertext", taken=catalog.id_time(locked_id))
    with plane.pool.connection() as conn:
        conn.execute("insert into runs (id, resource_id, trigger, state, time_to_live, storage_label, storage_id)"
                     " values (gen_random_uuid(), %s, 'api', 'succeeded', 60, 'shop', %s)", (gone["id"], locked_id))
        conn.execute("update resources set deprovisioned_at = now() - interval '2 days' where id = %s", (gone["id"],))

    def listed(resource) -> set[str]:
        return {info.key for info in store.target(resource["id"]).list()}

    def expiry_pass(grace_days: int) -> None:
        with plane.pool.connection() as conn:
            conn.execute("update resources set storage_checked_at = null")
        expiry.run(plane.pool, store, grace=datetime.timedelta(days=grace_days))

    expiry_pass(grace_days=3)
    policy_keeps = {ids["newest"]} | {ids[name] for name, (_, reason) in CRAFTED.items() if reason}
    expected = {catalog.archive_key("shop", i) for i in policy_keeps} | {
        catalog.manifest_key("shop", i) for i in policy_keeps}
    whole = {locked, catalog.manifest_key("shop", locked_id)}
    assert listed(kept_by_policy) == expected | whole
    assert len(listed(gone)) == 3, "kept through the grace period"

    [held] = [v for v in store.versions(kept_by_policy["id"], locked) if v.locked_until is not None]
    with pytest.raises(StorageError, match="access denied"):  # not even with the control plane's credentials
        store.delete(kept_by_policy["id"], [held])
    expiry_pass(grace_days=1)
    assert listed(kept_by_policy) == expected | whole
    assert listed(gone) == {locked}, "deleted after the grace period, but what is locked"

    time.sleep(max(0.0, max(v.locked_until for v in store.versions(gone["id"])).timestamp() - time.time() + 0.5))
    expiry_pass(grace_days=1)
    assert listed(kept_by_policy) == expected
    assert store.versions(gone["id"]) == []
    with plane.pool.connection() as conn:
        assert conn.execute("select storage_purged_at from resources where id = %s",
                            (gone["id"],)).fetchone()["storage_purged_at"] is not None


def test_the_dashboard_lists_stored_backups_with_a_download_link(managed_plane):
    resource, _ = managed_plane.resource()
    manifest_key = store_backup(managed_plane, resource, data=b"x" * 3000)
    browser = managed_plane.app.test_client()
    assert browser.post("/heroku/sso", data=sso_form(str(resource["id"]))).status_code == 303
    page = browser.get("/dashboard").text
    backup_id = catalog.parse_key(manifest_key).id
    assert backup_id in page and "3,000 bytes" in page
    stored = sum(info.size for info in managed_plane.store.objects(resource["id"]))
    assert f"{stored:,} bytes stored" in page and stored > 3000

    link = f"/dashboard/backups/{catalog.archive_key('shop', backup_id)}"
    assert link in page
    answer = browser.get(link)
    assert answer.status_code == 303 and "X-Amz-Expires=300" in answer.location
    assert requests.get(answer.location, timeout=10).content == b"x" * 3000
    assert browser.get(f"/dashboard/backups/{manifest_key.replace('shop', 'other')}").status_code == 404
    assert managed_plane.app.test_client().get(link).status_code == 401  # no session


def test_the_api_refuses_what_a_run_may_not_write(managed_plane, app):
    client, plane = managed_plane.app.test_client(), managed_plane
    resource, _ = plane.resource()
    run, token = plane.run(resource)
    auth = {"Authorization": f"Bearer {token}"}
    writes = f"/api/v1/runs/{run['id']}/storage"
    backup_id = catalog.new_id(datetime.datetime.now(UTC))
    archive, manifest = catalog.archive_key("shop", backup_id), catalog.manifest_key("shop", backup_id)

    def start(key, **kwargs):
        return client.post(f"{writes}/uploads", headers=auth, **({"json": {"key": key}} | kwargs))

    old = catalog.archive_key("shop", catalog.new_id(datetime.datetime(2020, 1, 1, tzinfo=UTC)))
    assert start(old).status_code == 400 and "this run's time" in start(old).json["error"]
    assert start("shop/x.dump.gpg").status_code == 400
    assert start(manifest).status_code == 400  # a manifest is stored whole, not in parts
    assert start(archive, json=None, data=b"[1]").status_code == 400
    assert start(archive, json=None, data=b"{" * 70_000).status_code == 413
    assert client.put(f"{writes}/objects/{manifest}", headers=auth, data=b"{}").status_code == 400
    upload = start(archive).json["upload"]
    assert start(archive.replace(backup_id, catalog.new_id(datetime.datetime.now(UTC)))).status_code == 409
    strays = [start(archive).status_code for _ in range(storage_api.MAX_UPLOADS)]  # starts said again
    assert strays == [201] * (storage_api.MAX_UPLOADS - 1) + [409]

    grant = f"{writes}/uploads/{upload}/parts"
    data = b"0123456789"
    good = {"size": len(data), "sha256": base64.b64encode(hashlib.sha256(data).digest()).decode()}
    for number, body in ((0, good), (10_001, good), (1, {**good, "size": -1}), (1, {**good, "sha256": "AAAA"}),
                         (1, {**good, "size": 6 * 1024**3})):
        assert client.post(f"{grant}/{number}", headers=auth, json=body).status_code == 400, (number, body)
    assert client.post(f"{writes}/uploads/{uuid.uuid4()}/parts/1", headers=auth, json=good).status_code == 404
    part = client.post(f"{grant}/1", headers=auth, json=good).json
    assert client.put(f"{writes}/objects/{manifest}", headers=auth,  # the archive is not complete yet
                      data=manifest_of(backup_id, data).to_bytes()).status_code == 409
    assert requests.put(part["url"], data=data, headers=part["headers"], timeout=10).status_code == 200
    assert client.post(f"{writes}/uploads/{upload}/complete", headers=auth,
                       json={"parts": 1, "bytes": len(data)}).status_code == 200

    def commit(body: bytes):
        return client.put(f"{writes}/objects/{manifest}", headers=auth, data=body).status_code

    assert commit(manifest_of(backup_id, data + b"!").to_bytes()) == 409  # not the archive's size
    assert commit(manifest_of(backup_id, data, label="crm").to_bytes()) == 400  # another backup's
    assert commit(manifest_of(backup_id, data).to_bytes()) == 201
    assert commit(manifest_of(backup_id, data).to_bytes()) == 200  # said again: done already
    assert start(archive.replace(backup_id, catalog.new_id(datetime.datetime.now(UTC)))).status_code == 409
    plane.end(run, "failed")
    assert client.post(f"{grant}/2", headers=auth, json=good).status_code == 403  # its run has ended

    with plane.pool.connection() as conn:  # as if the control plane's database had lost the claim
        conn.execute("update runs set storage_label = null, storage_id = null where id = %s", (run["id"],))
    later, later_token = plane.run(resource)
    again = client.post(f"/api/v1/runs/{later['id']}/storage/uploads", json={"key": archive},
                        headers={"Authorization": f"Bearer {later_token}"})
    assert again.status_code == 409 and "stored already" in again.json["error"]

    byo, _ = plane.resource(plan="byo")
    byo_run, byo_token = plane.run(byo)
    refused = client.post(f"/api/v1/runs/{byo_run['id']}/storage/uploads", json={"key": archive},
                          headers={"Authorization": f"Bearer {byo_token}"})
    assert refused.status_code == 409 and "set REMORA_TARGET_URL" in refused.json["error"]

    unconfigured, _ = plane.resource()  # the same database, served below without the storage
    other_run, other_token = plane.run(unconfigured)
    answer = app.test_client().post(f"/api/v1/runs/{other_run['id']}/storage/uploads", json={"key": archive},
                                    headers={"Authorization": f"Bearer {other_token}"})
    assert answer.status_code == 409 and "no storage configured" in answer.json["error"]


def test_storage_settings_are_all_of_a_piece_and_never_reach_a_run():
    env = {"REMORA_STORAGE_URL": "s3://bucket/prefix", "REMORA_STORAGE_LOCK_DAYS": "0",
           "REMORA_STORAGE_GRACE_DAYS": "x"}
    with pytest.raises(settings.ConfigError) as caught:
        settings.check(settings.from_env(env))
    assert "REMORA_STORAGE_GRACE_DAYS must be a whole number of days" in str(caught.value)
    with pytest.raises(settings.ConfigError) as caught:
        settings.check({**settings.from_env({**env, "REMORA_STORAGE_GRACE_DAYS": "7"}), "SECRET_KEY": "k" * 32,
                        "DATABASE_URL": "postgres://x/y"})
    message = str(caught.value)
    for problem in ("REMORA_STORAGE_ACCESS_KEY_ID is not set", "REMORA_STORAGE_SECRET_ACCESS_KEY is not set",
                    "REMORA_STORAGE_LOCK_DAYS must be 1 or more"):
        assert problem in message
    config = settings.from_env({"REMORA_STORAGE_GRACE_DAYS": "7", "REMORA_STORAGE_LOCK_DAYS": "30"})
    assert (config["STORAGE_GRACE"], config["STORAGE_LOCK"]) == (datetime.timedelta(days=7), datetime.timedelta(days=30))
    assert "bucket/prefix" in str(pytest.raises(settings.ConfigError, settings.check, {
        "SECRET_KEY": "k" * 32, "DATABASE_URL": "x", "STORAGE_URL": "https://bucket/prefix",
        "STORAGE_ACCESS_KEY_ID": "a", "STORAGE_SECRET_ACCESS_KEY": "b"}).value)
    launched = LocalLauncher({name: "value" for name in (*settings.STORAGE_VARIABLES, "REMORA_STORAGE_TIMEOUT")})
    assert set(launched._env) == {"REMORA_STORAGE_TIMEOUT"}  # the runner's own setting stays
