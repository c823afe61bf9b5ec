"""No secret in any argv, output, manifest, error message or repr: every secret variable is planted and looked for."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import threading
import time
from collections.abc import Iterator

import pytest

from runner.config import Config
from tests.helpers import remora
from tests.procs import all_cmdlines
from tests.servers.gpg import make_key, stop_agent
from tests.servers.postgres import READER
from tests.servers.sshd import keygen
from tests.servers.util import free_port


def planted(name: str) -> str:
    return f"planted-{name}-{secrets.token_hex(6)}"


def middle_line(armored: str) -> str:
    """A line from the middle of a key's armored body: if the key leaks, this does."""
    body = [line for line in armored.splitlines() if len(line) >= 60]
    return body[len(body) // 2]


@contextlib.contextmanager
def argv_watch(needles: list[str]) -> Iterator[dict[str, list[bytes]]]:
    """Scan every process's argv while the block runs: what held a needle, and which tools were seen."""
    found: dict[str, list[bytes]] = {"leaks": [], "pg_dump": [], "pg_restore": []}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for argv in all_cmdlines():
                found["leaks"] += [argv for needle in needles if needle.encode() in argv]
                found["pg_dump"] += [argv] if b"--format=custom" in argv else []
                found["pg_restore"] += [argv] if b"--single-transaction" in argv else []
            time.sleep(0.02)  # leave a core to the runner: its children live ten times longer than this

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield found
    finally:
        done.set()
        watcher.join()


@dataclasses.dataclass
class Planted:
    env: dict[str, str]  # every secret variable holds a planted value that works
    wrong: dict[str, str]  # planted values that do not work, for the failing runs
    needles: list[str]  # what must never show: every value above, and a line of each private key


@pytest.fixture
def planted_env(request, pg_cluster, database, sshd_server, s3_server, tmp_path) -> Planted:
    db_password, gpg_passphrase, sftp_passphrase = planted("db"), planted("gpg"), planted("sftp")
    signing_passphrase = planted("signing")
    pg_cluster.reader_url(database)
    role = "s_" + secrets.token_hex(4)
    with pg_cluster.connect(database) as conn:
        conn.execute(f"create role {role} login password '{db_password}' in role {READER}")
    gpg_key = make_key(tmp_path / "gpg", "Keeper <keeper@example.com>", passphrase=gpg_passphrase)
    request.addfinalizer(lambda: stop_agent(gpg_key.home))
    # a passphrase on the signing key for one target only: each of the runs' unlocks costs about a second here
    protected = request.node.callspec.params["target"] == "sftp"
    signer = make_key(tmp_path / "signer", "Signer <signer@example.com>", algo="ed25519", usage="sign",
                      passphrase=signing_passphrase if protected else None)
    request.addfinalizer(lambda: stop_agent(signer.home))
    sftp_private, sftp_public = keygen(tmp_path / "ssh", passphrase=sftp_passphrase)
    sshd_server.authorize(sftp_public)
    env = {
        "REMORA_DATABASE_URL": pg_cluster.url(database, user=role, password=db_password),
        "REMORA_GPG_PUBLIC_KEYS": gpg_key.public,
        "REMORA_GPG_PRIVATE_KEY": gpg_key.private,
        "REMORA_GPG_PASSPHRASE": gpg_passphrase,
        "REMORA_SFTP_PRIVATE_KEY": sftp_private,
        "REMORA_SFTP_PASSPHRASE": sftp_passphrase,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_SESSION_TOKEN": planted("aws-token"),
        "REMORA_RUN_TOKEN": planted("run-token"),
        "REMORA_GPG_SIGNING_KEY": signer.private,
        "REMORA_GPG_SIGNING_PASSPHRASE": signing_passphrase,
        "REMORA_GPG_SIGNERS": signer.public,
        # nothing answers there: restore says it could not ask, and must not say with what
        "REMORA_API_URL": f"http://127.0.0.1:{free_port()}/api/v1/resources/r",
        "REMORA_API_TOKEN": planted("api-token"),
    }
    wrong_db_password = planted("wrong-db")
    wrong = {
        "REMORA_DATABASE_URL": pg_cluster.url(database, user=role, password=wrong_db_password),
        "REMORA_GPG_PASSPHRASE": planted("wrong-gpg"),
        "AWS_SECRET_ACCESS_KEY": planted("wrong-aws"),
        "REMORA_SFTP_PASSPHRASE": planted("wrong-sftp"),
    }
    needles = [db_password, gpg_passphrase, sftp_passphrase, s3_server.secret_key, env["AWS_SESSION_TOKEN"],
               env["REMORA_RUN_TOKEN"], middle_line(gpg_key.private), middle_line(sftp_private), wrong_db_password,
               wrong["REMORA_GPG_PASSPHRASE"], wrong["AWS_SECRET_ACCESS_KEY"], wrong["REMORA_SFTP_PASSPHRASE"],
               signing_passphrase, middle_line(signer.private), env["REMORA_API_TOKEN"]]
    return Planted(env=env, wrong=wrong, needles=needles)


@pytest.mark.parametrize("target", ["s3", "sftp"])
def test_no_planted_secret_appears_anywhere(request, target, planted_env, pg_cluster):
    env = {**request.getfixturevalue(f"{target}_target_env"), **planted_env.env}
    wrong = planted_env.wrong
    if target == "s3":  # SeaweedFS refuses a session token it did not issue: only failing runs carry one
        bad_target = {"AWS_SECRET_ACCESS_KEY": wrong["AWS_SECRET_ACCESS_KEY"]}
        env.pop("AWS_SESSION_TOKEN")
    else:
        bad_target = {"REMORA_SFTP_PASSPHRASE": wrong["REMORA_SFTP_PASSPHRASE"]}
    to = {**env, "TO_URL": pg_cluster.url(pg_cluster.create_database(sample=False))}
    with argv_watch(planted_env.needles) as seen:
        runs = [
            (0, remora("check", env=env)),
            (0, remora("backup", env=env)),
            (0, remora("list", "--json", env=env)),  # the manifest, whole
            (0, remora("restore", "latest", "--to", "TO_URL", env=to)),
            (5, remora("restore", "latest", "--to", "TO_URL",
                       env={**to, "REMORA_GPG_PASSPHRASE": wrong["REMORA_GPG_PASSPHRASE"]})),
            (3, remora("backup", env={**env, "REMORA_DATABASE_URL": wrong["REMORA_DATABASE_URL"]})),
            (6 if target == "s3" else 2, remora("backup", env={**planted_env.env, **env, **bad_target})),
            (2, remora("run-due", env={**env, "REMORA_API_URL": f"http://127.0.0.1:{free_port()}/api/v1/resources/"
                                                                 "6f1c1a4e-0b7c-4d2a-9a55-3c3d2b1e0f00"})),
        ]
    assert seen["leaks"] == [] and seen["pg_dump"] and seen["pg_restore"]  # it looked, in time, and saw none
    assert '"credential": "read-only"' in runs[2][1].stdout
    assert "could not ask the control plane" in runs[3][1].stderr  # the API token was used, and not shown
    for code, result in runs:
        assert result.returncode == code, result.args[3:] + [result.stderr]
        assert not [n for n in planted_env.needles if n in result.stdout + result.stderr], result.args[3:]
    assert not [n for n in planted_env.needles if n in repr(Config.from_env({**planted_env.env, **wrong}))]
