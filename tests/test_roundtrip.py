"""A backup to every target comes back as the same database, through the runner and through plain tools."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from urllib.parse import urlsplit


from tests.helpers import PG_BIN, base_env, dump_sql, libpq_env, ok, remora, target_folder
from tests.servers.gpg import signing_env

def test_backup_restores_identically_through_the_runner(target_env, pg_cluster, database_env, gpg_env, database):
    env = {**target_env, **database_env, **gpg_env}
    backup_id = ok(remora("backup", env=env)).stdout.strip()

    listed = json.loads(ok(remora("list", "--json", env=env)).stdout)
    assert [m["id"] for m in listed] == [backup_id]
    assert listed[0]["credential"] == "read-only"  # database_env is the read-only role
    ok(remora("verify", backup_id, env=env))
    ok(remora("verify", "latest", "--decrypt", env=env))

    copy = pg_cluster.create_database(sample=False)
    ok(remora("restore", "latest", "--to", "RESTORE_URL", env={**env, "RESTORE_URL": pg_cluster.url(copy)}))
    assert dump_sql(pg_cluster.url(copy)) == dump_sql(pg_cluster.url(database))


def stored_archive(request, env: dict[str, str], backup_id: str, into: Path) -> Path:
    """Fetch the stored object with the storage's own tools, not the runner's."""
    url = urlsplit(env["REMORA_TARGET_URL"])
    name = f"{backup_id}.dump.gpg"
    if url.scheme == "s3":
        client = request.getfixturevalue("s3_server").client()
        [key] = [o["Key"] for o in client.list_objects_v2(Bucket=url.netloc)["Contents"] if o["Key"].endswith(name)]
        client.download_file(url.netloc, key, str(into / name))
        return into / name
    [path] = target_folder(env).rglob(name)
    return path


def test_stored_object_restores_with_plain_gpg_and_pg_restore(
    request, target_env, pg_cluster, database_env, gpg_env, gpg_key, signing_key, database, tmp_path
):
    env = {**target_env, **database_env, **gpg_env}
    backup_id = ok(remora("backup", env=env)).stdout.strip()
    archive = stored_archive(request, env, backup_id, tmp_path)

    gpg_key.gpg("--import", input=signing_key.public.encode()).check_returncode()  # the signer's public key
    copy = pg_cluster.create_database(sample=False)
    with open(tmp_path / "gpg.err", "w+") as said:
        gpg = subprocess.Popen(
            ["gpg", "--homedir", str(gpg_key.home), "--batch", "--verify-options", "show-notations",
             "--decrypt", str(archive)], stdout=subprocess.PIPE, stderr=said,
        )
        pg_restore = subprocess.run(
            [str(PG_BIN / "pg_restore"), "--no-owner", "--no-acl", "--exit-on-error", "--dbname", copy],
            stdin=gpg.stdout, env={**base_env(), **libpq_env(pg_cluster.url(copy))}, capture_output=True, text=True,
        )
        gpg.stdout.close()
        assert gpg.wait() == 0
        said.seek(0)
        words = said.read()
    assert pg_restore.returncode == 0, pg_restore.stderr
    assert dump_sql(pg_cluster.url(copy)) == dump_sql(pg_cluster.url(database))
    # what the guide tells the reader to look for: the good signature, the fingerprint, the backup it was made as
    assert 'Good signature from "Acme backup signer <signer@example.com>"' in words, words
    spaced = " ".join(signing_key.fingerprint[i:i + 4] for i in range(0, 40, 4))
    assert "Primary key fingerprint: " + spaced[:24] + " " + spaced[24:] in words, words
    assert f"id@remora-backup={backup_id}" in words, words


def test_download_writes_the_checked_ciphertext_or_the_archive(file_target_env, database_env, gpg_env, tmp_path):
    env = {**file_target_env, **database_env, **gpg_env}
    ok(remora("backup", env=env))
    [manifest] = json.loads(ok(remora("list", "--json", env=env)).stdout)

    ok(remora("download", "latest", "--output", str(tmp_path / "backup.gpg"), env=env, umask=0o022))
    assert hashlib.sha256((tmp_path / "backup.gpg").read_bytes()).hexdigest() == manifest["sha256"]

    ok(remora("download", "latest", "--output", str(tmp_path / "backup.dump"), "--decrypt", env=env,
              umask=0o022))
    listing = subprocess.run([str(PG_BIN / "pg_restore"), "--list", str(tmp_path / "backup.dump")],
                             capture_output=True, text=True)
    assert listing.returncode == 0 and "TABLE DATA sales customer" in listing.stdout
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["backup.dump", "backup.gpg"]
    assert {oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir() if p.is_file()} == {"0o600"}  # umask 022

    # never over a file, and never removing one it did not make (another download's, say)
    (tmp_path / ".backup.dump.part").write_text("another download's")
    (tmp_path / "backup.dump").write_text("a file of mine")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    again = remora("download", "latest", "--output", str(tmp_path / "backup.dump"), "--decrypt", env=env,
                   umask=0o022)
    assert again.returncode == 2 and "backup.dump exists" in again.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_every_recipient_can_decrypt(file_target_env, database_env, gpg_key, escrow_key, signing_key, pg_cluster):
    env = {**file_target_env, **database_env, **signing_env(signing_key),
           "REMORA_GPG_PUBLIC_KEYS": gpg_key.public + "\n" + escrow_key.public}
    ok(remora("backup", env=env))
    [manifest] = json.loads(ok(remora("list", "--json", env=env)).stdout)
    assert sorted(manifest["recipients"]) == sorted([gpg_key.fingerprint, escrow_key.fingerprint])
    for key in (gpg_key, escrow_key):
        secrets = {"REMORA_GPG_PRIVATE_KEY": key.private, "REMORA_GPG_PASSPHRASE": key.passphrase or ""}
        ok(remora("verify", "latest", "--decrypt", env={**env, **secrets}))


def test_parallel_restore(file_target_env, pg_cluster, database_env, gpg_env, database):
    env = {**file_target_env, **database_env, **gpg_env}
    ok(remora("backup", env=env))
    copy = pg_cluster.create_database(sample=False)
    ok(remora("restore", "latest", "--to", "TO_URL", "--jobs", "2", env={**env, "TO_URL": pg_cluster.url(copy)}))
    assert dump_sql(pg_cluster.url(copy)) == dump_sql(pg_cluster.url(database))


def test_restore_over_an_existing_database_needs_clean_and_is_all_or_nothing(
    file_target_env, pg_cluster, gpg_env, database
):
    with pg_cluster.connect(database) as conn:
        conn.execute("drop table sales.orders cascade")  # see the partitioned case below
    env = {**file_target_env, **gpg_env, "REMORA_DATABASE_URL": pg_cluster.reader_url(database)}
    ok(remora("backup", env=env))
    copy = pg_cluster.create_database(sample=False)
    to = {**env, "TO_URL": pg_cluster.url(copy)}
    ok(remora("restore", "latest", "--to", "TO_URL", env=to))
    with pg_cluster.connect(copy) as conn:
        conn.execute("delete from sales.customer where id > 10")

    again = remora("restore", "latest", "--to", "TO_URL", env=to)
    assert again.returncode == 4 and "already exists" in again.stderr and "rolled back" in again.stderr
    with pg_cluster.connect(copy) as conn:  # the failed restore changed nothing
        assert conn.execute("select count(*) from sales.customer").fetchone() == (10,)
    ok(remora("restore", "latest", "--to", "TO_URL", "--clean", env=to))
    assert dump_sql(pg_cluster.url(copy)) == dump_sql(pg_cluster.url(database))


def test_clean_over_partitioned_tables_fails_whole_and_changes_nothing(file_target_env, pg_cluster, database_env, gpg_env):
    """pg_restore --clean cannot drop a partition's inherited constraint (PostgreSQL 15)."""
    env = {**file_target_env, **database_env, **gpg_env}
    ok(remora("backup", env=env))
    copy = pg_cluster.create_database(sample=False)
    to = {**env, "TO_URL": pg_cluster.url(copy)}
    ok(remora("restore", "latest", "--to", "TO_URL", env=to))
    before = dump_sql(pg_cluster.url(copy))
    clean = remora("restore", "latest", "--to", "TO_URL", "--clean", env=to)
    assert clean.returncode == 4 and "inherited constraint" in clean.stderr
    assert dump_sql(pg_cluster.url(copy)) == before


def test_backups_of_several_databases_in_one_target(file_target_env, pg_cluster, gpg_env, database):
    other = pg_cluster.create_database()
    first = {**file_target_env, **gpg_env, "REMORA_DATABASE_URL": pg_cluster.reader_url(database)}
    second = {**first, "REMORA_DATABASE_URL": pg_cluster.reader_url(other)}
    first_id = ok(remora("backup", env=first)).stdout.strip()
    second_id = ok(remora("backup", env=second)).stdout.strip()

    # with a database URL, commands see that database's backups (its name is the default label)
    assert [m["id"] for m in json.loads(ok(remora("list", "--json", env=first)).stdout)] == [first_id]
    assert json.loads(ok(remora("list", "--json", env=second)).stdout)[0]["label"] == other
    # without one, list shows all, and 'latest' must be told which database
    anywhere = {**file_target_env, **gpg_env}
    assert len(json.loads(ok(remora("list", "--json", env=anywhere)).stdout)) == 2
    ambiguous = remora("verify", "latest", env=anywhere)
    assert ambiguous.returncode == 2 and "several databases" in ambiguous.stderr
    ok(remora("verify", "latest", "--label", other, env=anywhere))
    ok(remora("verify", second_id, env=anywhere))
    assert remora("verify", "not-an-id", env=anywhere).returncode == 2
