"""The add-on's storage in tests: a control plane serving its API on a free port, over the managed bucket.

Fixtures:
    managed_plane  (function) the running control plane, with helpers for resources, runs and their variables
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from werkzeug.serving import make_server

from control import create_app, runs
from control.store import Store
from runner.config import Config
from runner.targets import Target, open_target
from tests.controlplane import SECRET_KEY, SSO_SALT, make_resource
from tests.servers.util import free_port, serving

SMALL_PARTS = {"REMORA_S3_PART_SIZE_MB": "5", "REMORA_S3_CONCURRENCY": "2"}


@dataclasses.dataclass
class ManagedPlane:
    url: str
    app: object  # the Flask app

    @property
    def pool(self):
        return self.app.extensions["remora.pool"]

    @property
    def store(self) -> Store:
        return self.app.extensions["remora.store"]

    def resource(self, *, plan: str = "managed", **given) -> tuple[dict, str]:
        """A resource on ``plan`` with these options, and its API token."""
        return make_resource(self.app, plan=plan, **given)

    def run(self, resource: dict) -> tuple[dict, str]:
        """A run of ``resource`` as a worker claims it to launch it (nothing is launched), and its token."""
        with self.pool.connection() as conn:
            assert runs.enqueue(conn, resource["id"], trigger="api", time_to_live=3600), "a run is active already"
            [(run, token)] = runs.claim(conn, limit=1, resource_id=resource["id"])
        return run, token

    def end(self, run: dict, state: str = "succeeded") -> None:
        """End a run as its last event would."""
        with self.pool.connection() as conn:
            conn.execute("update runs set state = %s, finished_at = now() where id = %s", (state, run["id"]))

    def run_env(self, run: dict, token: str) -> dict[str, str]:
        """What a launched run holds from the control plane."""
        return {"REMORA_CONTROL_URL": self.url, "REMORA_RUN_ID": str(run["id"]), "REMORA_RUN_TOKEN": token}

    def api_env(self, resource: dict, api_token: str) -> dict[str, str]:
        """The add-on's config vars on the helper app."""
        return {"REMORA_API_URL": f"{self.url}/api/v1/resources/{resource['id']}", "REMORA_API_TOKEN": api_token}

    def target(self, env: dict[str, str]) -> Target:
        """The runner's view of the add-on's storage with ``env``'s credentials."""
        return open_target(Config.from_env({**SMALL_PARTS, "REMORA_RETRY_BACKOFF_MAX": "0.1", **env}))


@contextlib.contextmanager
def serving_control_plane(database_url: str, launcher, storage: dict) -> Iterator[ManagedPlane]:
    """The control plane with the add-on's storage, its API served on a free port from a thread."""
    port = free_port()
    app = create_app({"SECRET_KEY": SECRET_KEY, "DATABASE_URL": database_url, "LAUNCHER": launcher,
                      "CONTROL_URL": f"http://127.0.0.1:{port}", "HEROKU_SSO_SALT": SSO_SALT, **storage})
    try:
        with serving(make_server("127.0.0.1", port, app, threaded=True)):
            yield ManagedPlane(f"http://127.0.0.1:{port}", app)
    finally:
        app.extensions["remora.pool"].close()


@pytest.fixture
def managed_plane(control_db, launcher, storage_config) -> Iterator[ManagedPlane]:
    with serving_control_plane(control_db, launcher, storage_config) as plane:
        yield plane


def bucket_state(client, storage_url: str) -> dict:
    """Everything under the add-on's prefix, byte for byte: each version's size, SHA-256 and lock; open uploads."""
    parts = urlsplit(storage_url)
    bucket, prefix = parts.netloc, parts.path.strip("/") + "/"
    listed = client.list_object_versions(Bucket=bucket, Prefix=prefix)
    state = {}
    for item in (*listed.get("Versions", ()), *listed.get("DeleteMarkers", ())):
        held = {"Bucket": bucket, "Key": item["Key"], "VersionId": item["VersionId"]}
        if "Size" in item:
            body = client.get_object(**held)["Body"].read()
            head = client.head_object(**held)
            state[(item["Key"], item["VersionId"])] = (
                len(body), hashlib.sha256(body).hexdigest(), head.get("ObjectLockMode"),
                head.get("ObjectLockRetainUntilDate"))
        else:
            state[(item["Key"], item["VersionId"])] = "delete marker"
    uploads = client.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])
    return {"versions": state, "uploads": sorted((u["Key"], u["UploadId"]) for u in uploads)}
