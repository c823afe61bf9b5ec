"""The SFTP target against a real OpenSSH sshd: host key pinning, client keys, uploads, failures."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import paramiko
import pytest

from runner.config import Config
from runner.errors import ObjectNotFound, StorageError, TransientStorageError, UsageError
from runner.targets import open_target, sftp
from tests.helpers import target_folder
from tests.servers.sshd import SSHServer, keygen, running_sshd, sftp_env
from tests.servers.util import free_port, require_tool

MIB = 1024 * 1024


def connect(env: dict[str, str], **changes: str | None) -> sftp.SFTPTarget:
    """The SFTP backend that ``env`` (with ``changes``; None removes a variable) configures,
    without the retries that wrap it in the runner."""
    merged = {**env, **changes}
    config = Config.from_env({k: v for k, v in merged.items() if v is not None})
    return sftp.from_url(urlsplit(config.target_url), config)


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def upload(target, key: str, data: bytes, part: int = MIB) -> None:
    job = target.begin(key)
    for number, start in enumerate(range(0, len(data), part), 1):
        job.send(number, data[start : start + part])
    job.complete()


def read_all(target, key: str) -> bytes:
    with target.open(key) as f:
        return b"".join(iter(lambda: f.read(100_003), b""))


def refused(excinfo, exit_code: int) -> str:
    error = excinfo.value
    assert error.exit_code == exit_code
    text = error.one_line()
    assert "\n" not in text
    return text


# --- uploads and reads --------------------------------------------------------------------------


def test_multipart_upload_reads_back_byte_identical(sftp_target_env):
    data = os.urandom(3 * MIB + 12345)
    with connect(sftp_target_env) as target:
        job = target.begin("db/2026/11/27/one.dump.gpg")
        job.send(1, data[:MIB])
        job.send(2, data[MIB : 2 * MIB])
        job.send(2, data[MIB : 2 * MIB])  # a retried part is written again at its own offset
        job.send(3, data[2 * MIB : 3 * MIB])
        job.send(4, data[3 * MIB :])
        job.complete()
        assert read_all(target, "db/2026/11/27/one.dump.gpg") == data
        info = target.stat("db/2026/11/27/one.dump.gpg")
        assert (info.key, info.size) == ("db/2026/11/27/one.dump.gpg", len(data))
        assert [o.key for o in target.list()] == ["db/2026/11/27/one.dump.gpg"]
    on_disk = target_folder(sftp_target_env) / "db/2026/11/27/one.dump.gpg"
    assert on_disk.read_bytes() == data
    assert files_under(target_folder(sftp_target_env)) == ["db/2026/11/27/one.dump.gpg"]


def test_complete_replaces_an_existing_object(sftp_target_env):
    with connect(sftp_target_env) as target:
        upload(target, "m.json", b"old" * 1000)
        upload(target, "m.json", b"new")
        assert read_all(target, "m.json") == b"new"
    assert files_under(target_folder(sftp_target_env)) == ["m.json"]


def test_list_stat_open_delete(sftp_target_env):
    with connect(sftp_target_env) as target:
        for key in ("a/2026/x.dump.gpg", "a/2026/x.manifest.json", "b/y.dump.gpg"):
            target.put(key, key.encode())
        assert sorted(o.key for o in target.list("a/")) == ["a/2026/x.dump.gpg", "a/2026/x.manifest.json"]
        assert [o.key for o in target.list("a/2026/x.m")] == ["a/2026/x.manifest.json"]
        assert len(target.list()) == 3
        target.delete("b/y.dump.gpg")
        target.delete("b/y.dump.gpg")  # deleting a missing object is fine
        with pytest.raises(ObjectNotFound):
            target.stat("b/y.dump.gpg")
        with pytest.raises(ObjectNotFound):
            target.open("b/y.dump.gpg")
        with pytest.raises(ObjectNotFound):
            target.stat("a/2026")  # a folder is not an object


def test_unfinished_upload_is_never_listed(sftp_target_env):
    with connect(sftp_target_env) as target:
        job = target.begin("db/one.dump.gpg")
        job.send(1, b"x" * 1000)
        leftovers = files_under(target_folder(sftp_target_env))
        assert len(leftovers) == 1 and leftovers[0].startswith("db/.one.dump.gpg.")
        assert leftovers[0].endswith(".part")
        assert target.list() == []
        with pytest.raises(ObjectNotFound):
            target.stat("db/one.dump.gpg")
        job.complete()
        assert [o.key for o in target.list()] == ["db/one.dump.gpg"]


def test_abort_removes_the_temporary_file(sftp_target_env):
    with connect(sftp_target_env) as target:
        job = target.begin("db/one.dump.gpg")
        job.send(1, os.urandom(2 * MIB))
        assert files_under(target_folder(sftp_target_env))
        job.abort()
        job.abort()  # safe twice
        assert files_under(target_folder(sftp_target_env)) == []
        assert target.list() == []


def test_a_part_the_server_did_not_store_whole_is_refused(sftp_target_env, monkeypatch):
    # paramiko drops the errors of pipelined writes it has not read yet (a full disk among them);
    # the size check after each part must catch the bytes they lost.
    write = paramiko.SFTPFile.write
    monkeypatch.setattr(paramiko.SFTPFile, "write", lambda self, data: write(self, data[: len(data) // 2]))
    with connect(sftp_target_env) as target:
        job = target.begin("db/one.dump.gpg")
        with pytest.raises(StorageError) as excinfo:
            job.send(1, b"x" * 100_000)
        assert not isinstance(excinfo.value, TransientStorageError)
        assert "50000 bytes after part 1, not 100000" in refused(excinfo, 6)
        job.abort()
    assert files_under(target_folder(sftp_target_env)) == []


def test_home_relative_path(sshd_server: SSHServer):
    name = f"remora-test-{uuid.uuid4().hex[:12]}"
    home = Path(pwd.getpwnam(sshd_server.user).pw_dir)
    env = sftp_env(sshd_server, f"/~/{name}/backups")
    try:
        with connect(env) as target:
            assert target.root == f"{home}/{name}/backups"
            target.put("db/x.manifest.json", b"{}")
            assert [o.key for o in target.list()] == ["db/x.manifest.json"]
        assert (home / name / "backups/db/x.manifest.json").read_bytes() == b"{}"
    finally:
        shutil.rmtree(home / name, ignore_errors=True)
    assert not (home / name).exists()


def test_a_path_through_a_file_fails_permanently(sftp_target_env):
    (target_folder(sftp_target_env) / "blocker").write_bytes(b"")
    env = {**sftp_target_env, "REMORA_TARGET_URL": sftp_target_env["REMORA_TARGET_URL"] + "/blocker"}
    with connect(env) as target, pytest.raises(StorageError) as excinfo:
        target.put("db/x", b"data")
    assert not isinstance(excinfo.value, TransientStorageError)
    assert "blocker" in refused(excinfo, 6)


# --- host key pinning ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ed25519", "rsa"])  # the server has only an ed25519 key
def test_wrong_pinned_host_key_is_refused_and_nothing_written(sftp_target_env, sshd_server, tmp_path, kind):
    _, other = keygen(tmp_path / "impostor", kind, options=("-b", "2048") if kind == "rsa" else ())
    pinned = f"[{sshd_server.host}]:{sshd_server.port} " + " ".join(other.split()[:2])
    with pytest.raises(StorageError) as excinfo:
        connect(sftp_target_env, REMORA_SFTP_KNOWN_HOSTS=pinned)
    assert not isinstance(excinfo.value, TransientStorageError)
    text = refused(excinfo, 6)
    assert f"{sshd_server.host}:{sshd_server.port}" in text
    assert "not the pinned one" in text and "ssh-keyscan" in text
    assert files_under(target_folder(sftp_target_env)) == []


def test_host_without_a_pinned_key_is_refused(sftp_target_env, sshd_server):
    real_key = sshd_server.known_hosts_line.split(" ", 1)[1]
    for other_host in (f"[{sshd_server.host}]:{free_port()}", "192.0.2.7", sshd_server.host):
        with pytest.raises(StorageError) as excinfo:
            connect(sftp_target_env, REMORA_SFTP_KNOWN_HOSTS=f"{other_host} {real_key}")
        text = refused(excinfo, 6)
        assert "not pinned" in text and "ssh-keyscan" in text
    assert files_under(target_folder(sftp_target_env)) == []


def test_hashed_known_hosts_line_and_extra_lines_are_accepted(sftp_target_env, sshd_server, tmp_path):
    _, other = keygen(tmp_path / "other")
    known = tmp_path / "known_hosts"
    known.write_text(f"# pinned\n\n192.0.2.7 {other}\n{sshd_server.known_hosts_line}\n")
    subprocess.run([str(require_tool("ssh-keygen")), "-H", "-f", str(known)], check=True, capture_output=True)
    hashed = known.read_text()
    assert f"{sshd_server.port}" not in hashed and "|1|" in hashed
    with connect(sftp_target_env, REMORA_SFTP_KNOWN_HOSTS=hashed) as target:
        assert target.list() == []


@pytest.mark.parametrize(
    "known_hosts",
    ["garbage", "[127.0.0.1]:22 ssh-ed25519 !!!notbase64!!!", "host ssh-ed25519 AAAA", "# only a comment"],
)
def test_malformed_known_hosts_is_a_usage_error(sftp_target_env, known_hosts):
    with pytest.raises(UsageError) as excinfo:
        connect(sftp_target_env, REMORA_SFTP_KNOWN_HOSTS=known_hosts)
    assert "REMORA_SFTP_KNOWN_HOSTS" in refused(excinfo, 2)


def test_missing_known_hosts_or_key_is_a_usage_error(sftp_target_env):
    for variable in ("REMORA_SFTP_KNOWN_HOSTS", "REMORA_SFTP_PRIVATE_KEY"):
        with pytest.raises(UsageError) as excinfo:
            connect(sftp_target_env, **{variable: None})
        assert variable in refused(excinfo, 2)


# --- client keys --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, options",
    [
        ("ed25519", ()),
        ("ecdsa", ()),
        ("ecdsa", ("-m", "PEM")),
        ("rsa", ("-b", "2048")),
        ("rsa", ("-b", "2048", "-m", "PEM")),
    ],
)
def test_key_kinds_and_formats_log_in(sftp_target_env, sshd_server, tmp_path, kind, options):
    private, public = keygen(tmp_path / "key", kind, options=options)
    sshd_server.authorize(public)
    with connect(sftp_target_env, REMORA_SFTP_PRIVATE_KEY=private) as target:
        target.put("k", kind.encode())
        assert read_all(target, "k") == kind.encode()


@pytest.mark.parametrize("kind, options", [("ed25519", ()), ("rsa", ("-b", "2048", "-m", "PEM"))])
def test_passphrase_protected_key(sftp_target_env, sshd_server, tmp_path, kind, options):
    passphrase = f"pass-{uuid.uuid4().hex}"
    private, public = keygen(tmp_path / "key", kind, passphrase=passphrase, options=options)
    sshd_server.authorize(public)
    with connect(sftp_target_env, REMORA_SFTP_PRIVATE_KEY=private, REMORA_SFTP_PASSPHRASE=passphrase) as target:
        assert target.list() == []

    with pytest.raises(UsageError) as excinfo:
        connect(sftp_target_env, REMORA_SFTP_PRIVATE_KEY=private)
    text = refused(excinfo, 2)
    assert "REMORA_SFTP_PASSPHRASE" in text and "encrypted" in text

    with pytest.raises(UsageError) as excinfo:
        connect(sftp_target_env, REMORA_SFTP_PRIVATE_KEY=private, REMORA_SFTP_PASSPHRASE="wrong-passphrase")
    text = refused(excinfo, 2)
    assert "cannot be decrypted" in text and "wrong-passphrase" not in text and passphrase not in text


def test_passphrase_for_a_plain_key_is_harmless(sftp_target_env):
    with connect(sftp_target_env, REMORA_SFTP_PASSPHRASE="not-needed") as target:
        assert target.list() == []


@pytest.mark.parametrize(
    "garbage",
    ["not a key at all", "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----"],
)
def test_garbage_private_key_is_a_usage_error(sftp_target_env, garbage):
    with pytest.raises(UsageError) as excinfo:
        connect(sftp_target_env, REMORA_SFTP_PRIVATE_KEY=garbage)
    text = refused(excinfo, 2)
    assert "REMORA_SFTP_PRIVATE_KEY is not a private key" in text and garbage not in text


def test_public_key_pasted_as_private_key_is_a_usage_error(sftp_target_env, tmp_path):
    _, public = keygen(tmp_path / "key")
    with pytest.raises(UsageError) as excinfo:
        connect(sftp_target_env, REMORA_SFTP_PRIVATE_KEY=public)
    assert "REMORA_SFTP_PRIVATE_KEY" in refused(excinfo, 2)


def test_key_the_server_does_not_know_is_refused_permanently(sftp_target_env, tmp_path):
    stranger, _ = keygen(tmp_path / "stranger")
    with pytest.raises(StorageError) as excinfo:
        connect(sftp_target_env, REMORA_SFTP_PRIVATE_KEY=stranger)
    assert not isinstance(excinfo.value, TransientStorageError)
    text = refused(excinfo, 6)
    assert "authorized_keys" in text and stranger.strip().splitlines()[1] not in text


# --- a server that goes away --------------------------------------------------------------------


def test_connection_refused_is_transient(sftp_target_env, sshd_server):
    port = free_port()
    key = sshd_server.known_hosts_line.split(" ", 1)[1]
    env = {
        **sftp_target_env,
        "REMORA_TARGET_URL": f"sftp://{sshd_server.user}@{sshd_server.host}:{port}/tmp",
        "REMORA_SFTP_KNOWN_HOSTS": f"[{sshd_server.host}]:{port} {key}",
    }
    with pytest.raises(TransientStorageError) as excinfo:
        connect(env)
    assert f"{sshd_server.host}:{port}" in refused(excinfo, 6)


def test_killed_server_is_transient(tmp_path):
    with running_sshd(tmp_path / "sshd") as server:
        env = sftp_env(server, server.root)
        with connect(env) as target:
            target.put("before", b"x")
            job = target.begin("during")
            job.send(1, b"y" * 1000)
            server.stop()
            with pytest.raises(TransientStorageError) as excinfo:
                job.send(2, b"z" * 1000)
            assert f"{server.host}:{server.port}" in refused(excinfo, 6)
            with pytest.raises(TransientStorageError):
                target.list()
            job.abort()  # never raises, even with the server gone


def test_dropped_connection_is_reopened_for_the_next_part(tmp_path):
    data = os.urandom(3 * MIB)
    with running_sshd(tmp_path / "sshd") as server:
        env = {**sftp_env(server, server.root), "REMORA_RETRY_BACKOFF_MAX": "0.1"}
        with open_target(Config.from_env(env)) as target:
            job = target.begin("db/one.dump.gpg")
            job.send(1, data[:MIB])
            server.drop_connections()
            job.send(2, data[MIB : 2 * MIB])  # the retries reconnect
            job.send(3, data[2 * MIB :])
            job.complete()
            assert read_all(target, "db/one.dump.gpg") == data
        assert files_under(server.root) == ["db/one.dump.gpg"]


def test_a_part_is_not_resumed_into_a_file_that_lost_confirmed_parts(tmp_path):
    with running_sshd(tmp_path / "sshd") as server, connect(sftp_env(server, server.root)) as target:
        job = target.begin("db/one.dump.gpg")
        job.send(1, b"x" * MIB)
        server.drop_connections()
        with pytest.raises(TransientStorageError):
            job.send(2, b"y" * MIB)
        [temp] = server.root.rglob("*.part")
        temp.write_bytes(b"x" * 1000)  # the server lost most of part 1
        with pytest.raises(StorageError) as excinfo:
            job.send(2, b"y" * MIB)
        assert not isinstance(excinfo.value, TransientStorageError)
        assert f"holds 1000 bytes, not the {MIB} bytes confirmed" in refused(excinfo, 6)
        job.abort()
    assert files_under(server.root) == []


def test_reading_asks_a_few_windows_ahead_however_large_the_object(sftp_target_env):
    data = os.urandom(64 * MIB)
    (target_folder(sftp_target_env) / "big").write_bytes(data)
    with connect(sftp_target_env) as target, target.open("big") as stream:
        first = stream.read(MIB)
        time.sleep(0.5)  # a slow reader
        handle = stream._handle  # paramiko's own bookkeeping: requests sent, replies held
        ahead = sum(length for _, length in handle._prefetch_extents.values())
        ahead += sum(map(len, handle._prefetch_data.values()))
        assert ahead <= (sftp._WINDOWS_AHEAD + 1) * sftp._READ_AHEAD
        assert first + stream.read() == data
