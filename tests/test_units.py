"""The pure parts, tested without running anything: argv builders, config, ids, manifest, redaction."""

from __future__ import annotations

import dataclasses
import datetime
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import structlog

from runner import catalog, crypto, log, postgres, signing, transfer
from runner.config import Config, Secret
from runner.errors import IntegrityError, UsageError
from runner.log import Redactor
from runner.manifest import Manifest
from runner.processes import ProcessGroup, child_env

HOME = Path("/tmp/home")


def test_encrypt_argv_turns_compression_off_and_names_every_recipient():
    argv = crypto.encrypt_argv(HOME, ["AAAA", "BBBB"])
    assert argv[0] == "gpg" and argv[-1] == "--encrypt"
    assert argv[argv.index("--compress-algo") + 1] == "none"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--recipient"] == ["AAAA", "BBBB"]
    assert {"--batch", "--no-tty"} <= set(argv)


def test_decrypt_argv_takes_the_passphrase_from_a_descriptor_only():
    argv = crypto.decrypt_argv(HOME, passphrase_fd=7)
    assert argv[argv.index("--passphrase-fd") + 1] == "7"
    assert "--passphrase" not in argv
    assert "--passphrase-fd" not in crypto.decrypt_argv(HOME)


def test_dump_argv_has_no_connection_settings():
    argv = postgres.dump_argv(Path("/bin/pg_dump"), compression="zstd")
    assert argv == ["/bin/pg_dump", "--format=custom", "--compress=zstd", "--no-password"]


def test_restore_argv_single_transaction_or_parallel_from_a_file():
    one = postgres.restore_argv(Path("pg_restore"), dbname="db", clean=True, jobs=1)
    assert "--single-transaction" in one and "--clean" in one and "--if-exists" in one
    many = postgres.restore_argv(Path("pg_restore"), dbname="db", clean=False, jobs=4, archive=Path("/a"))
    assert "--jobs=4" in many and many[-1] == "/a" and "--single-transaction" not in many


def test_children_get_the_libpq_variables_and_no_config_var():
    params = postgres.connection_params(Secret("postgres://u:p%40ss@h:5433/db?sslmode=require"), variable="X")
    runner_env = {"PATH": "/bin", "PGSERVICE": "other", "REMORA_GPG_PRIVATE_KEY": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    env = postgres.libpq_env(params, child_env(runner_env))
    assert env == {"PATH": "/bin", "PGHOST": "h", "PGPORT": "5433", "PGUSER": "u", "PGPASSWORD": "p@ss",
                   "PGDATABASE": "db", "PGSSLMODE": "require"}


def test_find_tool_prefers_the_servers_major_then_the_oldest_newer_and_refuses_older(tmp_path):
    for major in (14, 15, 17, 18):
        tool = tmp_path / str(major) / "pg_dump"
        tool.parent.mkdir()
        tool.write_text(f"#!/bin/sh\necho 'pg_dump (PostgreSQL) {major}.1'\n")
        tool.chmod(0o755)
    path = os.pathsep.join(str(tmp_path / m) for m in ("18", "14", "17", "15"))
    postgres.TOOL_DIRS.clear()  # only the fake tools
    assert postgres.find_tool("pg_dump", 15, path=path) == (tmp_path / "15" / "pg_dump", 15)
    assert postgres.find_tool("pg_dump", 16, path=path) == (tmp_path / "17" / "pg_dump", 17)
    with pytest.raises(UsageError, match=r"needs pg_dump 19 or newer .* found: pg_dump 14 \(.*\), pg_dump 15"):
        postgres.find_tool("pg_dump", 19, path=path)
    postgres.TOOL_DIRS.append(tmp_path / "18")  # Debian's folders are searched too
    assert postgres.find_tool("pg_dump", 18, path=str(tmp_path / "14")) == (tmp_path / "18" / "pg_dump", 18)


@pytest.fixture(autouse=True)
def _restore_tool_dirs():
    saved = list(postgres.TOOL_DIRS)
    yield
    postgres.TOOL_DIRS[:] = saved


def test_config_reports_every_problem_at_once_and_hides_secrets():
    with pytest.raises(UsageError) as raised:
        Config.from_env({
            "REMORA_DATABASE_URL": "mysql://u:hunter22@h/db",
            "REMORA_TARGET_URL": "ftp://x/y",
            "REMORA_S3_PART_SIZE_MB": "2",
        })
    message = raised.value.message
    assert "REMORA_DATABASE_URL" in message and "REMORA_TARGET_URL" in message and "REMORA_S3_PART_SIZE_MB" in message
    assert "hunter22" not in message
    config = Config.from_env({"REMORA_DATABASE_URL": "postgres://u:hunter22@h/db"})
    assert "hunter22" not in repr(config)
    assert "hunter22" in config.secrets()


@pytest.mark.parametrize("url, problem", [
    ("s3:///prefix", "names no bucket"),
    ("sftp://host/path", "needs a user and a host"),
    ("file://relative/path", "absolute path"),
    ("sftp://u:pw@host/path", "must not hold a password"),
    ("gs://bucket", "is not one of"),
])
def test_config_rejects_malformed_target_urls(url, problem):
    with pytest.raises(UsageError, match=problem):
        Config.from_env({"REMORA_TARGET_URL": url})


@pytest.mark.parametrize("dbname, label", [("d8f2k1", "d8f2k1"), ("my%20db", "my_db"), ("..", "database"), ("._x", "x")])
def test_the_default_label_is_the_database_name_made_safe_for_paths(dbname, label):
    assert Config.from_env({"REMORA_DATABASE_URL": f"postgres://u:p@h/{dbname}"}).storage_label == label
    assert Config.from_env({"REMORA_DATABASE_URL": "postgres://u:p@h/x", "REMORA_LABEL": "mine"}).storage_label == "mine"


def test_require_names_the_missing_variables():
    with pytest.raises(UsageError, match="MY_DB, REMORA_GPG_PUBLIC_KEYS not set"):
        Config.from_env({}, database_url_env="MY_DB").require("database_url", "gpg_public_keys")


def test_ids_sort_by_time_and_map_to_dated_keys():
    first = catalog.new_id(datetime.datetime(2026, 11, 27, 21, 48, tzinfo=datetime.timezone.utc))
    later = catalog.new_id(datetime.datetime(2026, 11, 27, 21, 49, tzinfo=datetime.timezone.utc))
    assert first < later and first.startswith("20261127T214800Z-")
    assert catalog.archive_key("db", first) == f"db/2026/11/27/{first}.dump.gpg"
    assert catalog.manifest_key("db", first) == f"db/2026/11/27/{first}.manifest.json"
    with pytest.raises(UsageError):
        catalog.archive_key("db", "../../etc/passwd")


def test_manifest_round_trips_and_refuses_unknown_formats():
    manifest = Manifest(
        id="20261127T214800Z-3f9a2c", label="db", database="db", server_version="15.8", pg_dump_version=15,
        archive_format="custom", compression="1", recipients=["F" * 40], dump_bytes=10, encrypted_bytes=20,
        sha256="0" * 64, started_at="2026-11-27T21:48:00Z", finished_at="2026-11-27T21:48:01Z",
        runner_version="0.1.0",
    )
    assert Manifest.from_bytes(manifest.to_bytes(), key="k") == manifest
    with pytest.raises(IntegrityError, match="format 99"):
        Manifest.from_bytes(manifest.to_bytes().replace(b'"format": 2', b'"format": 99'), key="k")
    with pytest.raises(IntegrityError):
        Manifest.from_bytes(b"{not json", key="k")


def test_redactor_hides_secrets_and_url_passwords():
    redactor = Redactor()
    redactor.add(["s3cr3t-value"])
    event = redactor(None, "info", {"event": "x s3cr3t-value y", "url": "postgres://me:pa55@host/db", "n": 3})
    assert event == {"event": "x *** y", "url": "postgres://me:***@host/db", "n": 3}


def test_process_group_kills_a_child_that_ignores_sigterm_on_failure():
    ignore_term = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    started = time.monotonic()
    with pytest.raises(RuntimeError):
        with ProcessGroup() as group:
            child = group.start("stubborn", [sys.executable, "-c", ignore_term], env={}, stdout=subprocess.PIPE)
            child.popen.stdout.readline()
            raise RuntimeError("a stage failed")
    assert child.popen.returncode == -9
    assert time.monotonic() - started < 10


def test_process_group_keeps_only_the_tail_of_stderr():
    with ProcessGroup() as group:
        child = group.start("chatty", [sys.executable, "-c", "import sys\nfor i in range(100000): print(i, file=sys.stderr)"], env={})
        assert child.wait() == 0
    text = child.stderr_text()
    assert text.endswith("99999") and len(text) <= 1001


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("stream, expected", [
    (io.StringIO(), re.compile(r"^level=info event=uploading bytes=3145728 mib_s=[\d.]+ elapsed_s=[\d.]+ timestamp=\S+$")),
    (_Terminal(), re.compile(r"^\S+Z \[info\s*\] uploading\s+bytes=3145728 elapsed_s=[\d.]+ mib_s=[\d.]+$")),
], ids=["dyno", "terminal"])
def test_progress_is_logfmt_on_a_dyno_and_human_on_a_terminal(monkeypatch, stream, expected):
    monkeypatch.setattr(transfer, "PROGRESS_EVERY", 0.0)
    log.configure(stream=stream)
    try:
        transfer.Progress("uploading").update(3 * 2**20)
    finally:
        log.configure()
    assert expected.match(stream.getvalue().strip()), stream.getvalue()


# gpg's status lines (--status-file) as gpg 2.2 wrote them for a signed and encrypted backup
SIGNED = """[GNUPG:] NEWSIG
[GNUPG:] GOODSIG 10A31B6071268126 Signer <s@x>
[GNUPG:] NOTATION_NAME id@remora-backup
[GNUPG:] NOTATION_FLAGS 0 1
[GNUPG:] NOTATION_DATA 20261127T214800Z-3f9a2c
[GNUPG:] VALIDSIG {sub} 2026-11-30 1796029722 0 4 0 22 10 00 {primary}
[GNUPG:] DECRYPTION_OKAY
[GNUPG:] GOODMDC
"""
PRIMARY, SUBKEY = "C" * 40, "D" * 40


def test_a_signature_is_read_from_gpgs_status_lines_and_judged_by_its_primary_key():
    status = signing.parse_status(SIGNED.format(sub=SUBKEY, primary=PRIMARY))
    [signature] = status.signatures
    assert (signature.verdict, signature.primary, status.decrypted, status.intact) == ("GOODSIG", PRIMARY, True, True)
    assert signature.notations == {"id@remora-backup": "20261127T214800Z-3f9a2c"}
    good = {"what": "it", "signer": PRIMARY, "notations": {"id@remora-backup": "20261127T214800Z-3f9a2c"}}
    signing.require(status, pinned={PRIMARY}, **good)
    for pinned, signer, problem in (({SUBKEY}, PRIMARY, "not by"), ({PRIMARY}, SUBKEY, "not by")):
        with pytest.raises(IntegrityError, match=problem):  # a key in the keyring but not pinned; another signer
            signing.require(status, **{**good, "pinned": pinned, "signer": signer})
    with pytest.raises(IntegrityError, match="was signed as id@remora-backup='20261127T214800Z-3f9a2c'"):
        signing.require(status, pinned={PRIMARY}, **{**good, "notations": {"id@remora-backup": "another"}})
    twice = signing.parse_status(SIGNED.format(sub=SUBKEY, primary=PRIMARY) * 2)
    with pytest.raises(IntegrityError, match="carries 2 signatures"):
        signing.require(twice, pinned={PRIMARY}, **good)
    for line, problem in (("BADSIG 10A31B6071268126 Signer", "bad signature"),
                          ("ERRSIG 10A31B6071268126 22 10 00 1796029722 9 " + PRIMARY, "not in REMORA_GPG_SIGNERS"),
                          ("REVKEYSIG 10A31B6071268126 Signer", "revoked key")):
        with pytest.raises(IntegrityError, match=problem):
            signing.require(signing.parse_status(f"[GNUPG:] NEWSIG\n[GNUPG:] {line}\n"), pinned={PRIMARY}, **good)
    with pytest.raises(IntegrityError, match="is not signed"):
        signing.require(signing.parse_status("[GNUPG:] DECRYPTION_OKAY\n"), pinned={PRIMARY}, **good)


def test_manifests_carry_their_signature_outside_what_it_signs():
    manifest = Manifest(
        id="20261127T214800Z-3f9a2c", label="db", database="db", server_version="15.8", pg_dump_version=15,
        archive_format="custom", compression="1", recipients=["F" * 40], dump_bytes=10, encrypted_bytes=20,
        sha256="0" * 64, started_at="2026-11-27T21:48:00Z", finished_at="2026-11-27T21:48:01Z",
        runner_version="0.1.0", signer=PRIMARY)
    armored = "-----BEGIN PGP SIGNATURE-----\n\nabc=\n-----END PGP SIGNATURE-----\n"
    signed = dataclasses.replace(manifest, signature=armored)
    assert signed.signed_bytes() == manifest.signed_bytes() and b"signature" not in manifest.signed_bytes()
    assert b'"signer": "' + PRIMARY.encode() in manifest.signed_bytes() and b'"sha256"' in manifest.signed_bytes()
    key = catalog.manifest_key("db", manifest.id)
    assert Manifest.from_bytes(signed.to_bytes(), key=key, label="db", backup_id=manifest.id) == signed
    with pytest.raises(IntegrityError, match="signer and signature must come together"):
        Manifest.from_bytes(manifest.to_bytes(), key=key)


@pytest.mark.parametrize("stream", [io.StringIO(), _Terminal()], ids=["dyno", "terminal"])
def test_logs_escape_control_characters_from_anywhere(stream):
    log.configure(stream=stream)
    try:
        structlog.get_logger().warning("database \x1b]0;owned\x07 restored", database="shop\x1b[2J\u202e")
    finally:
        log.configure()
    said = stream.getvalue()
    assert "\x1b" not in said and "\u202e" not in said and "\x07" not in said
    assert "]0;owned" in said and "\\x1b" in said and "\\u202e" in said, said


def test_signing_argv_signs_in_the_encrypting_pass_with_the_passphrase_on_a_descriptor():
    argv = crypto.encrypt_argv(HOME, ["AAAA"], signer="SIGNER", passphrase_fd=9, notations={"id@remora-backup": "X"})
    assert argv[-3:] == ["-", "--sign", "--encrypt"] and argv[argv.index("--compress-algo") + 1] == "none"
    assert argv[argv.index("--local-user") + 1] == "SIGNER" and argv[argv.index("--passphrase-fd") + 1] == "9"
    assert argv[argv.index("--set-notation") + 1] == "id@remora-backup=X" and "--passphrase" not in argv
    assert argv[argv.index("--digest-algo") + 1] == "SHA256"
    assert "--sign" not in crypto.encrypt_argv(HOME, ["AAAA"])
    assert "--skip-verify" in crypto.decrypt_argv(HOME)  # a backup let through unsigned: nothing to check
    assert "--status-file" in crypto.decrypt_argv(HOME, status_file=HOME / "s")
