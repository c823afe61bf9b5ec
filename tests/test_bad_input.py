"""Bad input, case by case: one clear line naming what is at fault, its exit code, no traceback, nothing stored.

The "Bad input" table of docs/runner.md documents these cases; a test below keeps the two in step.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import Callable
from types import SimpleNamespace

import pytest

from tests.helpers import REPO, leftovers, remora
from tests.servers.postgres import READER
from tests.servers.sshd import keygen
from tests.servers.util import free_port

GARBAGE_BLOCK = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot a key at all\n-----END PGP PUBLIC KEY BLOCK-----\n"


@dataclasses.dataclass(frozen=True)
class Case:
    target: str  # the good target the case starts from: file, s3 or sftp
    tweak: Callable[[dict[str, str], SimpleNamespace], dict[str, str]]  # (good env, context) -> bad env
    exit_code: int
    message: str  # a pattern the error line must match: it names the variable or thing at fault


def without(env: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in names}


def setting(**values: str) -> Callable:
    return lambda env, ctx: {**env, **values}


def keys(name: str) -> Callable:
    return lambda env, ctx: {**env, "REMORA_GPG_PUBLIC_KEYS": ctx.keys[name].public}


def database(url: Callable) -> Callable:
    return lambda env, ctx: {**env, "REMORA_DATABASE_URL": url(ctx)}


def sftp_key(*, passphrase: str, given: str | None) -> Callable:
    def tweak(env, ctx):
        private, _public = keygen(ctx.tmp / ("key-" + secrets.token_hex(4)), passphrase=passphrase)
        return {**env, "REMORA_SFTP_PRIVATE_KEY": private, **({"REMORA_SFTP_PASSPHRASE": given} if given else {})}
    return tweak


CASES = {
    "missing database URL": Case("file", lambda env, ctx: without(env, "REMORA_DATABASE_URL"), 2,
                                 r"REMORA_DATABASE_URL not set"),
    "malformed database URL": Case("file", setting(REMORA_DATABASE_URL="postgres://u:pw@host:port/db"), 2,
                                   r"REMORA_DATABASE_URL is not a valid URL"),
    "database URL of another kind": Case("file", setting(REMORA_DATABASE_URL="mysql://u:pw@host/db"), 2,
                                         r"REMORA_DATABASE_URL must start with postgres://"),
    "database URL without a database": Case("file", setting(REMORA_DATABASE_URL="postgres://u:pw@host:5432"), 2,
                                            r"REMORA_DATABASE_URL names no database"),
    "missing target URL": Case("file", lambda env, ctx: without(env, "REMORA_TARGET_URL"), 2,
                               r"REMORA_TARGET_URL not set"),
    "unknown target scheme": Case("file", setting(REMORA_TARGET_URL="ftp://host/backups"), 2,
                                  r"REMORA_TARGET_URL scheme 'ftp' is not one of file://, s3://, sftp://"),
    "relative file URL": Case("file", setting(REMORA_TARGET_URL="file://backups"), 2,
                              r"REMORA_TARGET_URL must be an absolute path"),
    "S3 URL without a bucket": Case("s3", setting(REMORA_TARGET_URL="s3:///backups"), 2,
                                    r"REMORA_TARGET_URL names no bucket"),
    "SFTP URL without a user": Case("sftp", setting(REMORA_TARGET_URL="sftp://127.0.0.1/backups"), 2,
                                    r"REMORA_TARGET_URL needs a user and a host"),
    "SFTP URL with a password": Case("sftp", setting(REMORA_TARGET_URL="sftp://u:secret@127.0.0.1/backups"), 2,
                                     r"REMORA_TARGET_URL must not hold a password"),
    "add-on's API over plain http": Case("file", lambda env, ctx: {
        **without(env, "REMORA_TARGET_URL"), "REMORA_API_URL": "http://control.example.com/api/v1/resources/r",
        "REMORA_API_TOKEN": "api-token"}, 2, r"REMORA_API_URL must be https \(plain http only to this machine\)"),
    "add-on's storage without a run": Case("file", lambda env, ctx: {
        **without(env, "REMORA_TARGET_URL"), "REMORA_API_URL": "http://127.0.0.1:9/api/v1/resources/r",
        "REMORA_API_TOKEN": "api-token"}, 2,
        r"cannot start the upload of \S+ in the add-on's storage without a run launched by the add-on"),
    "bad label": Case("file", setting(REMORA_LABEL="../up"), 2, r"REMORA_LABEL '\.\./up' must be"),
    "bad S3 part size": Case("s3", setting(REMORA_S3_PART_SIZE_MB="1"), 2,
                             r"REMORA_S3_PART_SIZE_MB must be a whole number from 5 to 5120"),
    "bad gzip level": Case("file", setting(REMORA_GZIP_LEVEL="fast"), 2,
                           r"REMORA_GZIP_LEVEL must be a whole number from 0 to 9"),
    "missing public keys": Case("file", lambda env, ctx: without(env, "REMORA_GPG_PUBLIC_KEYS"), 2,
                                r"REMORA_GPG_PUBLIC_KEYS not set"),
    "garbage public keys": Case("file", setting(REMORA_GPG_PUBLIC_KEYS="not a key"), 2,
                                r"REMORA_GPG_PUBLIC_KEYS holds no ASCII-armored public key"),
    "garbage key block": Case("file", lambda env, ctx: {
        **env, "REMORA_GPG_PUBLIC_KEYS": env["REMORA_GPG_PUBLIC_KEYS"] + GARBAGE_BLOCK}, 2,
        r"REMORA_GPG_PUBLIC_KEYS: key block 2 is not a readable OpenPGP public key"),
    "private key as public key": Case("file", lambda env, ctx: {
        **env, "REMORA_GPG_PUBLIC_KEYS": env["REMORA_GPG_PRIVATE_KEY"]}, 2,
        r"REMORA_GPG_PUBLIC_KEYS: key block 1 is a private key"),
    "private key in public key armor": Case("file", lambda env, ctx: {
        **env, "REMORA_GPG_PUBLIC_KEYS": env["REMORA_GPG_PRIVATE_KEY"].replace("PRIVATE KEY", "PUBLIC KEY")}, 2,
        r"REMORA_GPG_PUBLIC_KEYS: key block 1 holds a private key"),
    "weak key": Case("file", keys("weak"), 2,
                     r"REMORA_GPG_PUBLIC_KEYS: key Weak <weak@example\.com> [0-9A-F]{40} uses a 1024-bit RSA key; "
                     r"keys below 2048 bits are refused"),
    "public key as signing key": Case("file", lambda env, ctx: {
        **env, "REMORA_GPG_SIGNING_KEY": env["REMORA_GPG_SIGNERS"]}, 2,
        r"REMORA_GPG_SIGNING_KEY: block 1 is a PGP PUBLIC KEY BLOCK, not a private key block"),
    "signing key with a wrong passphrase": Case("file", lambda env, ctx: {
        **env, "REMORA_GPG_SIGNING_KEY": ctx.keys["escrow"].private, "REMORA_GPG_SIGNING_PASSPHRASE": "wrong"}, 5,
        r"gpg could not sign: .*Bad passphrase \(check REMORA_GPG_SIGNING_PASSPHRASE\)"),
    "expired key": Case("file", keys("expired"), 2,
                        r"REMORA_GPG_PUBLIC_KEYS: key Expired <old@example\.com> [0-9A-F]{40} expired on 2020-01-03"),
    "revoked key": Case("file", keys("revoked"), 2,
                        r"REMORA_GPG_PUBLIC_KEYS: key Revoked <gone@example\.com> [0-9A-F]{40} is revoked"),
    "sign-only key": Case("file", keys("sign-only"), 2,
                          r"REMORA_GPG_PUBLIC_KEYS: key Signer <sign@example\.com> [0-9A-F]{40} has no encryption key"),
    "SFTP without known_hosts": Case("sftp", lambda env, ctx: without(env, "REMORA_SFTP_KNOWN_HOSTS"), 2,
                                     r"REMORA_SFTP_KNOWN_HOSTS not set"),
    "malformed known_hosts": Case("sftp", setting(REMORA_SFTP_KNOWN_HOSTS="127.0.0.1 ssh-ed25519"), 2,
                                  r"REMORA_SFTP_KNOWN_HOSTS line 1 is not 'HOST KEYTYPE KEY'"),
    "SFTP key that is not a key": Case("sftp", setting(REMORA_SFTP_PRIVATE_KEY="hello"), 2,
                                       r"REMORA_SFTP_PRIVATE_KEY is not a private key"),
    "SFTP key without its passphrase": Case("sftp", sftp_key(passphrase="pass-phrase-1", given=None), 2,
                                            r"REMORA_SFTP_PRIVATE_KEY is encrypted and REMORA_SFTP_PASSPHRASE is not set"),
    "SFTP key with a wrong passphrase": Case("sftp", sftp_key(passphrase="pass-phrase-1", given="wrong-phrase"), 2,
                                             r"REMORA_SFTP_PRIVATE_KEY cannot be decrypted with REMORA_SFTP_PASSPHRASE"),
    "S3 without credentials": Case("s3", lambda env, ctx: without(env, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), 2,
                                   r"no complete AWS credentials"),
    "database down": Case("file", database(lambda ctx: f"postgresql://u:pw@127.0.0.1:{free_port()}/db"), 3,
                          r"cannot connect with REMORA_DATABASE_URL: .*Connection refused"),
    "wrong password": Case("file", database(lambda ctx: ctx.pg.url(ctx.db, user=READER, password="wrong-pw")), 3,
                           r"cannot connect with REMORA_DATABASE_URL: .*password authentication failed for user \W+reader"),
    "no such database": Case("file", database(lambda ctx: ctx.pg.url("no_such_db")), 3,
                             r"cannot connect with REMORA_DATABASE_URL: .*database \W+no_such_db\W+ does not exist"),
    "credential that can write": Case("file", database(lambda ctx: ctx.pg.url(ctx.db)), 3,
                                      r"REMORA_DATABASE_URL \(role remora\) can change the database: .*SUPERUSER"),
    "unwritable folder": Case("file", setting(REMORA_TARGET_URL="file:///sys"), 6,
                              r"cannot write /sys/db_\w+/\d{4}/\d\d/\d\d: Operation not permitted"),
    "missing bucket": Case("s3", setting(REMORA_TARGET_URL="s3://no-such-bucket/backups"), 6,
                           r"S3 bucket 'no-such-bucket' does not exist"),
    "S3 access denied": Case("s3", setting(AWS_SECRET_ACCESS_KEY="not-the-secret-key"), 6,
                             r"S3 access denied to s3://remora-\w+/backups/.*SignatureDoesNotMatch"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input_gets_one_clear_line_and_stores_nothing(case, request, tmp_path, pg_cluster, database,
                                                          database_env, gpg_env, odd_keys, escrow_key):
    good = {**request.getfixturevalue(f"{case.target}_target_env"), **database_env, **gpg_env}
    context = SimpleNamespace(pg=pg_cluster, db=database, keys={**odd_keys, "escrow": escrow_key}, tmp=tmp_path)
    result = remora("backup", env=case.tweak(good, context), timeout=120)
    assert result.returncode == case.exit_code, result.stderr
    [line] = [line for line in result.stderr.splitlines() if "level=error" in line]
    assert re.search(case.message, line), line
    assert "Traceback" not in result.stdout + result.stderr
    assert leftovers(good, request) == []


def test_the_runner_page_documents_every_case():
    page = (REPO / "docs" / "runner.md").read_text()
    section = page.split("\n## Bad input\n", 1)[1].split("\n#", 1)[0]
    documented = re.findall(r"^\| ([^|`]+?) +\| +\d +\|", section, flags=re.MULTILINE)
    assert sorted(documented) == sorted(CASES)
    for name, case in CASES.items():
        assert re.search(rf"^\| {re.escape(name)} +\| {case.exit_code} +\|", section, flags=re.MULTILINE), name
