"""Only what the signing key made is restored: forged, foreign, replayed and edited backups are refused (exit 7).

Each forgery is stored as the newest backup of a target that also holds a real one, as someone
who can write to the target (an S3 key, the SFTP account) but holds no signing key would store
it. ``restore latest``, ``verify latest`` and ``download latest --decrypt`` must all refuse it
before pg_restore starts: a pg_restore on PATH notes every run (tests.helpers.pg_restore_spy).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from runner import catalog
from runner.manifest import Manifest
from tests.controlplane import make_resource, work
from tests.helpers import PG_BIN, base_env, libpq_env, ok, pg_restore_spy, remora, target_folder
from tests.servers.gpg import GpgKey, make_key, signing_env, stop_agent
from tests.servers.util import free_port, serving


@dataclasses.dataclass(frozen=True)
class Real:
    """A target folder holding one real, signed backup, and what the runner was given to make it."""

    folder: Path
    env: dict[str, str]
    manifest: Manifest


@pytest.fixture(scope="module")
def real(tmp_path_factory, pg_cluster, gpg_key, signing_key) -> Real:
    folder = tmp_path_factory.mktemp("real") / "backups"
    folder.mkdir()
    source = pg_cluster.create_database()
    env = {"REMORA_DATABASE_URL": pg_cluster.reader_url(source), "REMORA_TARGET_URL": f"file://{folder}",
           "REMORA_GPG_PUBLIC_KEYS": gpg_key.public, "REMORA_GPG_PRIVATE_KEY": gpg_key.private,
           **signing_env(signing_key)}
    backup_id = ok(remora("backup", env=env)).stdout.strip()
    [manifest] = folder.rglob(f"{backup_id}.manifest.json")
    return Real(folder, env, Manifest.from_bytes(manifest.read_bytes(), key="real"))


@pytest.fixture(scope="module")
def attacker(tmp_path_factory, gpg_key) -> GpgKey:
    """A key of the attacker's own: it can sign, and the customer's public key is in its keyring."""
    key = make_key(tmp_path_factory.mktemp("attacker") / "home", "Acme backup signer <signer@example.com>",
                   algo="ed25519", usage="sign")
    key.gpg("--import", input=gpg_key.public.encode()).check_returncode()
    yield key
    stop_agent(key.home)


@pytest.fixture
def target(real, tmp_path, pg_cluster) -> dict[str, str]:
    """A copy of the real backup's target, an empty database to restore into, and a pg_restore that tells."""
    folder = tmp_path / "backups"
    shutil.copytree(real.folder, folder)
    path, ran = pg_restore_spy(tmp_path / "spy")
    copy = pg_cluster.create_database(sample=False)
    return {**real.env, "REMORA_TARGET_URL": f"file://{folder}", "PATH": path, "RAN": str(ran),
            "TO_URL": pg_cluster.url(copy)}


def newer_id(manifest: Manifest) -> str:
    started = datetime.datetime.strptime(manifest.id[:16], "%Y%m%dT%H%M%SZ")
    return catalog.new_id((started + datetime.timedelta(hours=1)).replace(tzinfo=datetime.timezone.utc))


def store(env: dict[str, str], manifest: Manifest, archive: bytes | None = None, *, manifest_bytes=None) -> None:
    """Put ``manifest`` (or ``manifest_bytes`` for it) and ``archive`` where that backup's files belong."""
    folder = target_folder(env)
    for key, data in ((catalog.archive_key(manifest.label, manifest.id), archive),
                      (catalog.manifest_key(manifest.label, manifest.id), manifest_bytes or manifest.to_bytes())):
        if data is not None:
            (folder / key).parent.mkdir(parents=True, exist_ok=True)
            (folder / key).write_bytes(data)


def encrypted_dump(cluster, gpg_key: GpgKey, attacker: GpgKey, *, sign: dict[str, str] | None) -> bytes:
    """``pg_dump -Fc`` of another database through plain ``gpg -e`` to the customer's key (``sign``: notations)."""
    other = cluster.create_database()
    dump = subprocess.run([str(PG_BIN / "pg_dump"), "-Fc", "--dbname", other],
                          env={**base_env(), **libpq_env(cluster.url(other))}, capture_output=True, check=True).stdout
    signing = ["--sign", *[f"--set-notation={k}={v}" for k, v in sign.items()]] if sign is not None else []
    result = attacker.gpg("--trust-model", "always", "--compress-algo", "none", "-r", gpg_key.fingerprint,
                          *signing, "--output", "-", "--encrypt", input=dump)
    result.check_returncode()
    return result.stdout


def forged(manifest: Manifest, backup_id: str, archive: bytes, **changes) -> Manifest:
    return dataclasses.replace(manifest, id=backup_id, sha256=hashlib.sha256(archive).hexdigest(),
                               encrypted_bytes=len(archive), database="other", **changes)


def forgery_unsigned(real, attacker, pg_cluster, gpg_key):
    """pg_dump and gpg -e to the real recipient, with a matching manifest, unsigned."""
    backup_id = newer_id(real.manifest)
    archive = encrypted_dump(pg_cluster, gpg_key, attacker, sign=None)
    return forged(real.manifest, backup_id, archive, signer=None, signature=None), archive, "is not signed"


def forgery_other_key(real, attacker, pg_cluster, gpg_key):
    """The same, signed by another key (bearing the same user id), archive and manifest."""
    backup_id = newer_id(real.manifest)
    archive = encrypted_dump(pg_cluster, gpg_key, attacker, sign={"id@remora-backup": backup_id,
                                                                 "label@remora-backup": real.manifest.label})
    manifest = forged(real.manifest, backup_id, archive, signer=attacker.fingerprint)
    signature = attacker.gpg("--armor", "--output", "-", "--detach-sign", input=manifest.signed_bytes()).stdout
    return (dataclasses.replace(manifest, signature=signature.decode()), archive,
            f"is signed by a key that is not in REMORA_GPG_SIGNERS ({attacker.fingerprint})")


def forgery_replay(real, attacker, pg_cluster, gpg_key):
    """The real archive and signed manifest, copied whole under a newer id."""
    archive = next(target_folder(real.env).rglob("*.dump.gpg")).read_bytes()
    moved = dataclasses.replace(real.manifest, id=newer_id(real.manifest))
    return moved, archive, f"is not the id of its key, {moved.id}"


FORGERIES = {"forged": forgery_unsigned, "another key": forgery_other_key, "replay": forgery_replay}


@pytest.mark.parametrize("make", FORGERIES.values(), ids=FORGERIES.keys())
def test_a_forgery_stored_as_the_newest_backup_is_refused_before_pg_restore(make, real, attacker, target,
                                                                           pg_cluster, gpg_key, tmp_path):
    manifest, archive, why = make(real, attacker, pg_cluster, gpg_key)
    if make is forgery_replay:  # the signed manifest, byte for byte, under the new id's key
        store(target, manifest, archive, manifest_bytes=real.manifest.to_bytes())
    else:
        store(target, manifest, archive)
    listed = ok(remora("list", "--json", env=target))
    # list shows what the manifests say; a manifest under another backup's key is skipped, by key
    newest = real.manifest.id if make is forgery_replay else manifest.id
    assert json.loads(listed.stdout)[-1]["id"] == newest
    assert ("skipped: manifest" in listed.stderr) == (make is forgery_replay)
    output = tmp_path / "out.dump"
    for args in (["restore", "latest", "--to", "TO_URL"], ["verify", "latest", "--decrypt"],
                 ["download", "latest", "--output", str(output), "--decrypt"]):
        result = remora(*args, env=target)
        assert result.returncode == 7, (args, result.stderr)
        [line] = result.stderr.splitlines()
        assert why in line and "Traceback" not in result.stderr, (args, line)
    assert not Path(target["RAN"]).exists(), "pg_restore ran"
    assert not output.exists() and not list(tmp_path.glob(".out.dump.*"))
    ok(remora("restore", real.manifest.id, "--to", "TO_URL", env=target))  # the real one still restores
    assert Path(target["RAN"]).exists()


def test_a_manifest_edited_after_signing_is_refused(real, target):
    edited = dataclasses.replace(real.manifest, database="planted", server_version="15.99")
    store(target, edited)  # over the real manifest, its signature kept
    for args in (["restore", "latest", "--to", "TO_URL"], ["verify", "latest"]):
        result = remora(*args, env=target)
        assert result.returncode == 7 and "has a bad signature: it was changed after it was signed" in result.stderr
    assert not Path(target["RAN"]).exists()


def test_an_archive_signed_as_another_backup_is_refused(real, target, signing_key, gpg_key, attacker, pg_cluster,
                                                         tmp_path):
    """Made with the signing key itself, so the manifest passes: the archive's own signature still refuses it.

    gpg judges it at the end of the message: before a decrypted file is used or kept, and, for a
    restore streamed into pg_restore, once pg_restore has read it (then the message says so).
    """
    backup_id = newer_id(real.manifest)
    signer = dataclasses.replace(attacker, home=signing_key.home)
    signing_key.gpg("--import", input=gpg_key.public.encode()).check_returncode()
    archive = encrypted_dump(pg_cluster, gpg_key, signer, sign={"id@remora-backup": real.manifest.id,
                                                              "label@remora-backup": real.manifest.label})
    manifest = forged(real.manifest, backup_id, archive)
    signature = signing_key.gpg("--armor", "--output", "-", "--detach-sign", input=manifest.signed_bytes()).stdout
    store(target, dataclasses.replace(manifest, signature=signature.decode()), archive)
    ok(remora("verify", "latest", env=target))  # without the private key: the signed manifest, the SHA-256
    why = f"the archive of backup {backup_id} was signed as id@remora-backup='{real.manifest.id}'"
    output = tmp_path / "out.dump"
    for args in (["restore", "latest", "--to", "TO_URL", "--jobs", "2"], ["verify", "latest", "--decrypt"],
                 ["download", "latest", "--output", str(output), "--decrypt"]):
        result = remora(*args, env=target)
        assert result.returncode == 7 and why in result.stderr, (args, result.stderr)
    # verify's pg_restore read it into /dev/null; no pg_restore touched a database
    assert "--dbname" not in Path(target["RAN"]).read_text()
    assert not output.exists() and not list(tmp_path.glob(".out.dump.*"))
    streamed = remora("restore", "latest", "--to", "TO_URL", env=target)
    assert streamed.returncode == 7 and why in streamed.stderr and "drop that database" in streamed.stderr


def test_unsigned_backups_need_allow_unsigned_and_their_id(target, real, pg_cluster):
    env = {k: v for k, v in target.items() if k not in ("REMORA_GPG_SIGNING_KEY",)}
    made = remora("backup", env=env)
    assert made.returncode == 0 and "REMORA_GPG_SIGNING_KEY is not set: this backup is not signed" in made.stderr
    backup_id = made.stdout.strip()
    refused = remora("restore", backup_id, "--to", "TO_URL", env=env)
    assert refused.returncode == 7 and "is not signed" in refused.stderr
    latest = remora("restore", "latest", "--to", "TO_URL", "--allow-unsigned", env=env)
    assert latest.returncode == 2 and "--allow-unsigned needs a backup id, not latest" in latest.stderr
    assert not Path(target["RAN"]).exists()
    allowed = ok(remora("restore", backup_id, "--to", "TO_URL", "--allow-unsigned", env=env))
    assert f"backup {backup_id} is not signed: going on because of --allow-unsigned" in allowed.stderr
    # --allow-unsigned excuses no signature, never a bad one
    edited = dataclasses.replace(real.manifest, database="planted")
    store(target, edited)
    bad = remora("verify", real.manifest.id, "--allow-unsigned", env=env)
    assert bad.returncode == 7 and "bad signature" in bad.stderr


def test_restore_says_what_it_restores_before_it_does(real, target):
    result = ok(remora("restore", "latest", "--to", "TO_URL", env=target))
    [line] = [line for line in result.stderr.splitlines() if 'event=restoring' in line]
    m = real.manifest
    for field in (f"id={m.id}", f"label={m.label}", f"database={m.database}", f"server_version={m.server_version}",
                  f"taken_at={m.finished_at}", f"signer={m.signer}", "into=db_", "into_server_version=15."):
        assert field in line, (field, line)
    assert result.stderr.index("event=restoring") < result.stderr.index("restore complete")


def report_run(client, app, resource: dict, token: str, launcher, *, backup_id: str, sha256: str) -> str:
    """A run of ``resource`` through the API, launched, reporting the backup as the runner does; its id."""
    answer = client.post(f"/api/v1/resources/{resource['id']}/backups", headers={"Authorization": f"Bearer {token}"})
    run = answer.json["run"]
    work(app, launcher)
    done = client.post(f"/api/v1/runs/{run['id']}/events",
                       headers={"Authorization": f"Bearer {launcher.specs[-1].run_token}"},
                       json={"type": "succeeded", "backup_id": backup_id, "dump_bytes": 1, "encrypted_bytes": 1,
                             "sha256": sha256})
    assert done.json["run"]["state"] == "succeeded"
    return run["id"]


def test_the_control_planes_record_is_a_second_witness(real, target, app, client, launcher):
    recorded, token = make_resource(app)
    never, never_token = make_resource(app)
    run_id = report_run(client, app, recorded, token, launcher, backup_id=real.manifest.id, sha256=real.manifest.sha256)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api/v1/resources"
    with serving(make_server("127.0.0.1", port, app, threaded=True)):
        env = {**target, "REMORA_API_URL": f"{api}/{recorded['id']}", "REMORA_API_TOKEN": token}
        said = ok(remora("verify", "latest", env=env)).stderr
        assert 'event="the control plane recorded this backup"' in said and f"run={run_id}" in said, said
        unknown = ok(remora("verify", "latest", env={**env, "REMORA_API_URL": f"{api}/{never['id']}",
                                                     "REMORA_API_TOKEN": never_token})).stderr
        assert f"the control plane has no record of backup {real.manifest.id}" in unknown
        report_run(client, app, recorded, token, launcher, backup_id=real.manifest.id, sha256="ab" * 32)
        contradicted = remora("restore", "latest", "--to", "TO_URL", env=env)
    assert contradicted.returncode == 7
    assert f"the control plane recorded backup {real.manifest.id} with SHA-256 abababab" in contradicted.stderr
    assert not Path(target["RAN"]).exists()
    for result in (said, unknown, contradicted.stderr):
        assert token not in result and never_token not in result
