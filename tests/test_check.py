"""``remora-backup check``: one line a check, the first failure's exit code, and nothing left in the target."""

from __future__ import annotations

import re
import secrets

import pytest

from tests.helpers import leftovers, remora
from tests.servers.postgres import READER
from tests.servers.util import free_port

CHECKS = ["config", "database", "credential", "pg_dump", "keys", "signing", "target"]
UNSIGNED = {"signing": "warn"}  # no REMORA_GPG_SIGNING_KEY: backups would not be signed


def report(stdout: str, checks: list[str] = CHECKS) -> dict[str, str]:
    """{check: status} from the report, which must have one aligned line per check, in order."""
    lines = [re.fullmatch(r"(.{11}) (ok|FAIL|skip|next|warn) +(\S.*)", line) for line in stdout.splitlines()]
    assert all(lines) and [m.group(1).rstrip() for m in lines] == checks, stdout
    return {m.group(1).rstrip(): m.group(2) for m in lines}


def test_check_passes_and_leaves_nothing_in_any_target(request, target_env, database_env, gpg_env):
    env = {**target_env, **database_env, **gpg_env}
    result = remora("check", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(report(result.stdout).values()) == {"ok"}
    assert "credential  ok    read-only" in result.stdout and "1 recipient(s): Customer DBA" in result.stdout
    assert re.search(r"target +ok +.*: wrote, read and deleted db_\w+/\.remora-probe-[0-9a-f]{8}", result.stdout)
    assert leftovers(env, request) == []


FAILURES = {  # what goes wrong -> (the env it takes, the exit code, {check: status} that differ from ok)
    "config": (lambda fixture: {"REMORA_DATABASE_URL": "mysql://u:p@h/db"}, 2,
               {"config": "FAIL", **{c: "skip" for c in CHECKS[1:]}}),
    "database": (lambda fixture: {"REMORA_DATABASE_URL": f"postgresql://u:p@127.0.0.1:{free_port()}/db"}, 3,
                 {"database": "FAIL", "credential": "skip", "pg_dump": "skip"}),
    "credential": (lambda fixture: {"REMORA_DATABASE_URL": fixture("pg_cluster").url(fixture("database"))}, 3,
                   {"credential": "FAIL"}),
    "keys": (lambda fixture: {"REMORA_GPG_PUBLIC_KEYS": fixture("odd_keys")["revoked"].public}, 2, {"keys": "FAIL"}),
    "target": (lambda fixture: {"REMORA_TARGET_URL": "file:///sys"}, 6, {"target": "FAIL"}),
    "the first failure decides": (
        lambda fixture: {"REMORA_GPG_PUBLIC_KEYS": "garbage", "REMORA_TARGET_URL": "file:///sys"}, 2,
        {"keys": "FAIL", "target": "FAIL"}),
}


@pytest.mark.parametrize("tweak, exit_code, statuses", FAILURES.values(), ids=FAILURES.keys())
def test_check_reports_each_failure(request, tweak, exit_code, statuses, file_target_env, database_env, gpg_env):
    env = {**file_target_env, **database_env, **gpg_env}
    result = remora("check", env={**env, **tweak(request.getfixturevalue)})
    assert result.returncode == exit_code
    assert report(result.stdout) == {**dict.fromkeys(CHECKS, "ok"), **statuses}
    [error] = [line for line in result.stderr.splitlines() if "level=error" in line]
    assert "check failed:" in error and f"exit_code={exit_code}" in error and "Traceback" not in result.stderr
    assert leftovers(env, request) == []


# --postdeploy: app.json's postdeploy script, which runs before the customer can attach the credential

ATTACH = "heroku addons:attach APP::DATABASE --credential backup_reader --as REMORA_DATABASE -a HELPER_APP"
PENDING = {"database": "next", "credential": "skip", "pg_dump": "skip"}


def test_postdeploy_without_a_database_says_how_to_attach_it_and_passes(request, target_env, gpg_key):
    env = {**target_env, "REMORA_GPG_PUBLIC_KEYS": gpg_key.public, "DYNO": "run.1"}
    result = remora("check", "--postdeploy", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert report(result.stdout) == {**dict.fromkeys(CHECKS, "ok"), **PENDING, **UNSIGNED}
    [database] = [line for line in result.stdout.splitlines() if line.startswith("database")]
    assert "REMORA_DATABASE_URL not set yet" in database and ATTACH in database
    grants = "run what `heroku run bin/remora-backup grants -a HELPER_APP` prints with `heroku pg:psql -a APP`"
    assert grants in database
    assert re.search(r"credential +skip +waits for the database", result.stdout)
    assert re.search(r"target +ok +.*: wrote, read and deleted remora/\.remora-probe-[0-9a-f]{8}", result.stdout)
    assert leftovers(env, request) == []
    [summary] = [line for line in result.stderr.splitlines() if "check " in line]
    assert 'level=info event="check passed" pending=database' in summary, result.stderr


@pytest.mark.parametrize("variable, dyno, says", [
    ("BACKUP_DB_URL", "run.1", "--credential backup_reader --as BACKUP_DB -a HELPER_APP"),
    # no attachment makes a name without _URL
    ("BACKUPDB", "run.1", "set it to the URL of the role backups should use"),
    ("BACKUP_DB_URL", "", "set it to the URL of the role backups should use, run what `remora-backup grants` prints"),
], ids=["attachment", "not an attachment's", "off a dyno"])
def test_postdeploy_names_the_variable_given(variable, dyno, says, file_target_env, gpg_key):
    env = {**file_target_env, "REMORA_GPG_PUBLIC_KEYS": gpg_key.public, "DYNO": dyno}
    result = remora("check", "--postdeploy", "--database-url-env", variable, env=env)
    assert result.returncode == 0 and f"{variable} not set yet" in result.stdout and says in result.stdout
    assert ("heroku" in result.stdout) == bool(dyno)


POSTDEPLOY_FAILURES = {  # with no database URL unless it says so: (env, exit code, {check: status} besides ok)
    "keys": ({"REMORA_GPG_PUBLIC_KEYS": "garbage"}, 2, {**PENDING, **UNSIGNED, "keys": "FAIL"}),
    "target": ({"REMORA_TARGET_URL": "file:///sys"}, 6, {**PENDING, **UNSIGNED, "target": "FAIL"}),
    "config": ({"REMORA_GZIP_LEVEL": "eleven"}, 2, {"config": "FAIL", **{c: "skip" for c in CHECKS[1:]}}),
    "database set but unreachable": (
        {"REMORA_DATABASE_URL": f"postgresql://u:p@127.0.0.1:{free_port()}/db"}, 3,
        {"database": "FAIL", "credential": "skip", "pg_dump": "skip", **UNSIGNED}),
}


@pytest.mark.parametrize("tweak, exit_code, statuses", POSTDEPLOY_FAILURES.values(), ids=POSTDEPLOY_FAILURES.keys())
def test_postdeploy_still_fails_on_everything_else(request, tweak, exit_code, statuses, file_target_env, gpg_key):
    env = {**file_target_env, "REMORA_GPG_PUBLIC_KEYS": gpg_key.public}
    result = remora("check", "--postdeploy", env={**env, **tweak})
    assert result.returncode == exit_code, result.stdout + result.stderr
    assert report(result.stdout) == {**dict.fromkeys(CHECKS, "ok"), **statuses}
    [error] = [line for line in result.stderr.splitlines() if "level=error" in line]
    assert "check failed:" in error and f"exit_code={exit_code}" in error
    assert ("pending=database" in error) == (statuses["database"] == "next")
    assert leftovers(env, request) == []


def test_postdeploy_refuses_a_set_database_url_whose_credential_can_write(file_target_env, gpg_key, pg_cluster,
                                                                          database):
    env = {**file_target_env, "REMORA_GPG_PUBLIC_KEYS": gpg_key.public,
           "REMORA_DATABASE_URL": pg_cluster.url(database)}
    result = remora("check", "--postdeploy", env=env)
    assert result.returncode == 3
    assert report(result.stdout) == {**dict.fromkeys(CHECKS, "ok"), "credential": "FAIL", **UNSIGNED}


def test_without_postdeploy_a_missing_database_url_fails_as_before(file_target_env, gpg_key):
    result = remora("check", env={**file_target_env, "REMORA_GPG_PUBLIC_KEYS": gpg_key.public})
    assert result.returncode == 2
    assert report(result.stdout) == {**dict.fromkeys(CHECKS, "ok"), "database": "FAIL",
                                     "credential": "skip", "pg_dump": "skip", **UNSIGNED}
    assert "REMORA_DATABASE_URL not set (set it as a config var)" in result.stdout


def test_an_owner_whose_next_tables_the_credential_could_not_read_is_warned_about(file_target_env, pg_cluster,
                                                                                  database, gpg_env):
    env = {**file_target_env, "REMORA_DATABASE_URL": pg_cluster.reader_url(database), **gpg_env}
    with pg_cluster.connect(database) as conn:
        conn.execute(f"alter default privileges revoke select on tables from {READER}")
    result = remora("check", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = CHECKS[:3] + ["defaults"] + CHECKS[3:]
    assert report(result.stdout, checks) == {**dict.fromkeys(checks, "ok"), "defaults": "warn"}
    assert ("role remora owns tables and gives reader no default SELECT on new ones: what they create next"
            " (a migration) will stop the backups; as a superuser or as each role, run"
            " ALTER DEFAULT PRIVILEGES FOR ROLE remora GRANT SELECT ON TABLES TO reader") in result.stdout


# a private key on the helper app, where anyone who can run a dyno there can read it

WITH_WARNING = CHECKS[:6] + ["private key"] + CHECKS[6:]


@pytest.mark.parametrize("flags", [[], ["--postdeploy"]], ids=["check", "postdeploy"])
def test_a_private_key_on_a_dyno_is_warned_about_and_never_shown(flags, file_target_env, database_env, gpg_key):
    passphrase = f"planted-passphrase-{secrets.token_hex(6)}"
    env = {**file_target_env, **database_env, "REMORA_GPG_PUBLIC_KEYS": gpg_key.public,
           "REMORA_GPG_PRIVATE_KEY": gpg_key.private, "REMORA_GPG_PASSPHRASE": passphrase, "DYNO": "run.1234"}
    result = remora("check", *flags, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert report(result.stdout, WITH_WARNING) == {**dict.fromkeys(WITH_WARNING, "ok"), "private key": "warn",
                                                   **UNSIGNED}
    assert ("heroku config:unset REMORA_GPG_PRIVATE_KEY REMORA_GPG_PASSPHRASE -a HELPER_APP"
            in result.stdout), result.stdout
    assert "can decrypt every backup" in result.stdout
    output = result.stdout + result.stderr
    armor = [line for line in gpg_key.private.splitlines() if len(line) >= 16 and "PGP" not in line]
    assert armor and not [line for line in armor if line in output] and "PRIVATE KEY" not in output
    assert "planted-passphrase" not in output  # not even a part of it


def test_a_private_key_off_a_dyno_is_not_warned_about(file_target_env, database_env, gpg_env):
    result = remora("check", env={**file_target_env, **database_env, **gpg_env})
    assert result.returncode == 0 and "REMORA_GPG_PRIVATE_KEY" in gpg_env
    assert report(result.stdout) == dict.fromkeys(CHECKS, "ok")


def test_check_help_describes_postdeploy():
    result = remora("check", "--help", env={})
    said = " ".join(result.stdout.split())  # argparse wraps the help to the terminal's width
    assert result.returncode == 0 and "--postdeploy" in said and "app.json's postdeploy script" in said
