"""pg_dump must be at least as new as the server: tested against a real PostgreSQL 18."""

from __future__ import annotations

import json
import os

from tests.helpers import dump_sql, ok, pg_restore_spy, remora, target_folder
from tests.servers.postgres import embedded_bin


def test_a_postgresql_18_server_needs_pg_dump_18_and_gets_it_from_path(pg18_cluster, pg_cluster, gpg_env,
                                                                       file_target_env, tmp_path):
    source = pg18_cluster.create_database()
    env = {"REMORA_DATABASE_URL": pg18_cluster.reader_url(source), **gpg_env, **file_target_env}

    # this machine's PATH and /usr/lib/postgresql hold only PostgreSQL 15's tools
    refused = remora("backup", env=env)
    assert refused.returncode == 2, refused.stderr
    assert "needs pg_dump 18 or newer for PostgreSQL 18; found: pg_dump 15 (" in refused.stderr
    assert list(target_folder(env).rglob("*")) == []
    checked = remora("check", env=env)
    assert checked.returncode == 2 and "pg_dump     FAIL  needs pg_dump 18" in checked.stdout

    with_18 = {**env, "PATH": f"{embedded_bin()}{os.pathsep}{os.environ['PATH']}"}
    ok(remora("backup", env=with_18))
    [manifest] = json.loads(ok(remora("list", "--json", env=with_18)).stdout)
    assert manifest["server_version"].startswith("18.") and manifest["pg_dump_version"] == 18
    assert manifest["compression"] == "3"  # the wheel's pg_dump is built without zstd: gzip it is
    copy = pg18_cluster.create_database(sample=False)
    old_tools = remora("restore", "latest", "--to", "TO_URL", env={**env, "TO_URL": pg18_cluster.url(copy)})
    assert old_tools.returncode == 2 and "needs pg_restore 18 or newer" in old_tools.stderr
    # into an older server: refused before pg_restore starts, naming both versions
    spied, ran = pg_restore_spy(tmp_path / "spy", real=embedded_bin() / "pg_restore")
    with_18 = {**with_18, "PATH": f"{spied}{os.pathsep}{with_18['PATH']}"}
    older = remora("restore", "latest", "--to", "TO_URL",
                   env={**with_18, "TO_URL": pg_cluster.url(pg_cluster.create_database(sample=False))})
    assert older.returncode == 2, older.stderr
    assert (f"is of PostgreSQL {manifest['server_version']} (database {source}), newer than the target's "
            "PostgreSQL 15.") in older.stderr and "into a server of PostgreSQL 18 or newer" in older.stderr
    assert not ran.exists()
    ok(remora("restore", "latest", "--to", "TO_URL", env={**with_18, "TO_URL": pg18_cluster.url(copy)}))
    assert ran.exists()
    assert dump_sql(pg18_cluster.url(copy), bin_dir=embedded_bin()) == dump_sql(
        pg18_cluster.url(source), bin_dir=embedded_bin())
