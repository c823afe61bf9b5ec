"""The real servers the benchmark runs against, started with the test suite's own code."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

from tests.servers.gpg import GpgKey, make_key, stop_agent
from tests.servers.postgres import PG_BIN, Cluster, running_cluster
from tests.servers.seaweed import S3Server, running_weed
from tests.servers.sshd import SSHServer, running_sshd


@dataclasses.dataclass(frozen=True)
class Servers:
    cluster: Cluster
    s3: S3Server
    sshd: SSHServer
    key: GpgKey  # the customer's key pair, in its own GNUPGHOME
    signer: GpgKey  # the helper app's signing key: every runner backup is signed, as on Heroku


# The storage servers stand in for storage on another machine, as on Heroku, where they take no CPU
# from pg_dump: here they share its two cores, so they run at the lowest priority and get what the
# backup leaves (docs/benchmarks.md says what that changed).
STORAGE_NICENESS = 19


@contextlib.contextmanager
def started(cache: Path, work: Path) -> Iterator[Servers]:
    """PostgreSQL kept in ``cache`` (its databases outlive the run), and the rest in ``work``."""
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(running_cluster(keep=cache / f"pg{PG_BIN.parent.name}"))
        s3 = stack.enter_context(running_weed(niceness=STORAGE_NICENESS))
        sshd = stack.enter_context(running_sshd(work / "sshd", niceness=STORAGE_NICENESS))
        key = make_key(work / "gnupg", "Bench DBA <dba@example.com>")
        stack.callback(stop_agent, key.home)
        signer = make_key(work / "signer", "Bench signer <signer@example.com>", algo="ed25519", usage="sign")
        stack.callback(stop_agent, signer.home)
        yield Servers(cluster=cluster, s3=s3, sshd=sshd, key=key, signer=signer)
