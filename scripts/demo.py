"""The demo: back up a throwaway database to a folder, list, verify, restore, compare. Then clean up."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers.gpg import make_key, signing_env, stop_agent  # noqa: E402
from tests.servers.postgres import running_cluster  # noqa: E402

TABLES = ["sales.customer", "sales.orders", "audit.event"]


def remora(*args: str, env: dict[str, str]) -> str:
    print(f"\n$ remora-backup {' '.join(args)}", flush=True)
    result = subprocess.run([sys.executable, "-m", "runner.cli", *args], env=env, stdout=subprocess.PIPE, text=True)
    print(result.stdout, end="", flush=True)
    if result.returncode != 0:
        sys.exit(f"demo: remora-backup {args[0]} failed with exit {result.returncode}")
    return result.stdout.strip()


def row_counts(cluster, dbname: str) -> dict[str, int]:
    with cluster.connect(dbname) as conn:
        counts = {t: conn.execute(f"select count(*) from {t}").fetchone()[0] for t in TABLES}
        counts["large objects"] = conn.execute("select count(*) from pg_largeobject_metadata").fetchone()[0]
    return counts


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="remora-demo-") as scratch, running_cluster() as cluster:
        source = cluster.create_database()
        key = make_key(Path(scratch) / "gnupg", "Demo DBA <dba@example.com>")
        signer = make_key(Path(scratch) / "signer", "Demo signer <signer@example.com>", algo="ed25519", usage="sign")
        env = {
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", scratch),
            "REMORA_DATABASE_URL": cluster.reader_url(source),
            "REMORA_TARGET_URL": f"file://{scratch}/backups",
            "REMORA_GPG_PUBLIC_KEYS": key.public,
            "REMORA_GPG_PRIVATE_KEY": key.private,
            **signing_env(signer),  # every backup signed, and only what this key signed restored
            "RESTORE_DATABASE_URL": cluster.url(copy := cluster.create_database(sample=False)),
        }
        try:
            backup_id = remora("backup", env=env)
            remora("list", env=env)
            remora("verify", backup_id, "--decrypt", env=env)
            remora("restore", backup_id, "--to", "RESTORE_DATABASE_URL", env=env)
            before, after = row_counts(cluster, source), row_counts(cluster, copy)
        finally:
            stop_agent(key.home)
            stop_agent(signer.home)
    print("\n{:<16} {:>8} {:>9}".format("table", "source", "restored"))
    for table, count in before.items():
        print(f"{table:<16} {count:>8} {after[table]:>9}")
    if before != after:
        sys.exit("demo: the restored database differs from the source")
    print("\ndemo: the restored database matches the source; everything was cleaned up")


if __name__ == "__main__":
    main()
