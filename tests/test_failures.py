"""Failures end in one clear line, the right exit code, nothing that looks complete, and no stray process."""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
from pathlib import Path

import pytest

from tests.helpers import ok, remora, start_remora, target_folder
from tests.procs import all_cmdlines, children_of, kill_encrypting_gpg, with_marker
from tests.servers.gpg import signing_env
from tests.servers.sshd import keygen


@pytest.fixture
def big_env(pg_cluster, big_database, gpg_env, file_target_env):
    return {"REMORA_DATABASE_URL": pg_cluster.reader_url(big_database), **gpg_env, **file_target_env}


def marked(env: dict[str, str], tmp_path: Path) -> tuple[dict[str, str], str]:
    """``env`` with a TMPDIR of its own: every child inherits it, so it marks them all."""
    folder = tmp_path / ("marker-" + secrets.token_hex(4))
    folder.mkdir()
    return {**env, "TMPDIR": str(folder)}, f"TMPDIR={folder}"


def watch_marked(runner: subprocess.Popen, marker: str) -> set[int]:
    """Every marked process seen while ``runner`` runs: the marker must reach the children,
    or the check that none is left afterwards would prove nothing."""
    seen: set[int] = set()
    while runner.poll() is None:
        seen.update(with_marker(marker))
    return seen - {runner.pid}


def test_no_process_outlives_a_failed_backup(big_env, tmp_path):
    env, marker = marked(big_env, tmp_path)
    runner = start_remora("backup", env=env)
    threading.Thread(target=kill_encrypting_gpg, args=(runner,)).start()
    seen = watch_marked(runner, marker)
    assert runner.returncode == 5 and len(seen) >= 2  # at least pg_dump and gpg
    assert with_marker(marker) == []


def test_no_process_outlives_a_successful_verify_decrypt(database_env, gpg_env, file_target_env, tmp_path):
    env, marker = marked({**database_env, **gpg_env, **file_target_env}, tmp_path)
    ok(remora("backup", env=env))
    runner = start_remora("verify", "latest", "--decrypt", env=env)
    seen = watch_marked(runner, marker)
    runner.communicate()
    assert runner.returncode == 0 and len(seen) >= 3  # at least gpg, its agent and pg_restore
    assert with_marker(marker) == []


def test_a_tampered_object_fails_verify_and_restore_with_7(pg_cluster, database_env, gpg_env, file_target_env):
    env = {**database_env, **gpg_env, **file_target_env}
    backup_id = ok(remora("backup", env=env)).stdout.strip()
    [archive] = target_folder(env).rglob("*.dump.gpg")
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x01
    archive.write_bytes(bytes(data))

    result = remora("verify", backup_id, env=env)
    assert result.returncode == 7 and "does not match its manifest" in result.stderr
    empty = pg_cluster.create_database(sample=False)
    result = remora("restore", backup_id, "--to", "TO_URL", env={**env, "TO_URL": pg_cluster.url(empty)})
    assert result.returncode == 7
    with pg_cluster.connect(empty) as conn:  # pg_restore never ran
        assert conn.execute("select count(*) from pg_namespace where nspname = 'sales'").fetchone() == (0,)


def test_an_archive_without_manifest_is_not_a_backup(database_env, gpg_env, file_target_env):
    env = {**database_env, **gpg_env, **file_target_env}
    backup_id = ok(remora("backup", env=env)).stdout.strip()
    next(target_folder(env).rglob("*.manifest.json")).unlink()
    assert json.loads(ok(remora("list", "--json", env=env)).stdout) == []
    assert remora("verify", backup_id, env=env).returncode == 2
    assert remora("verify", "latest", env=env).returncode == 2


def test_decrypting_needs_the_right_key_and_passphrase(database_env, gpg_env, escrow_key, signing_key,
                                                       file_target_env):
    env = {**database_env, **file_target_env, **signing_env(signing_key), "REMORA_GPG_PUBLIC_KEYS": escrow_key.public}
    ok(remora("backup", env=env))
    missing = remora("verify", "latest", "--decrypt", env=env)
    assert missing.returncode == 2 and "REMORA_GPG_PRIVATE_KEY not set" in missing.stderr
    wrong_key = remora("verify", "latest", "--decrypt", env={**env, "REMORA_GPG_PRIVATE_KEY": gpg_env["REMORA_GPG_PRIVATE_KEY"]})
    assert wrong_key.returncode == 5 and "REMORA_GPG_PRIVATE_KEY" in wrong_key.stderr
    bad_passphrase = remora("verify", "latest", "--decrypt", env={
        **env, "REMORA_GPG_PRIVATE_KEY": escrow_key.private, "REMORA_GPG_PASSPHRASE": "not-the-passphrase"})
    assert bad_passphrase.returncode == 5
    assert "not-the-passphrase" not in bad_passphrase.stderr


def test_a_wrong_pinned_sftp_host_key_exits_6_and_writes_nothing(database_env, gpg_env, sftp_target_env, sshd_server, tmp_path):
    _, impostor = keygen(tmp_path / "impostor")
    pinned = f"[{sshd_server.host}]:{sshd_server.port} " + " ".join(impostor.split()[:2])
    env = {**database_env, **gpg_env, **sftp_target_env, "REMORA_SFTP_KNOWN_HOSTS": pinned}
    result = remora("backup", env=env)
    assert result.returncode == 6
    [line] = [line for line in result.stderr.splitlines() if "level=error" in line]
    assert "not the pinned one" in line and "ssh-keyscan" in line
    assert list(target_folder(sftp_target_env).rglob("*")) == []


def test_children_inherit_no_config_var(big_env):
    env = {**big_env, "AWS_SECRET_ACCESS_KEY": "planted-aws-" + secrets.token_hex(8)}
    runner = start_remora("backup", env=env)
    environs = {}
    while runner.poll() is None and len(environs) < 2:
        for pid, argv in children_of(runner.pid):
            stage = "gpg" if "--encrypt" in argv else "pg_dump" if "--format=custom" in argv else None
            if stage:  # not the short-lived gpg --import or pg_dump --version
                environs.setdefault(stage, Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
    runner.communicate(timeout=120)
    assert runner.returncode == 0 and set(environs) == {"pg_dump", "gpg"}
    for name, variables in environs.items():
        assert not [v for v in variables if v.startswith((b"REMORA_", b"AWS_"))], name
    assert f"PGPASSWORD={big_env['REMORA_DATABASE_URL'].split(':')[2].split('@')[0]}".encode() in environs["pg_dump"]
    assert not [v for v in environs["gpg"] if v.startswith(b"PG")]
