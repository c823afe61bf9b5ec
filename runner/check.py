"""``remora-backup check``: every check a backup makes, and a round trip to the target, as a report.

One line a check, ``ok``, ``FAIL`` or ``skip`` and what it found. Nothing is stored: the probe
written to the target is deleted again. The exit code is that of the first failure.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Mapping
from typing import TextIO, TypeVar

import structlog

from runner import crypto, log, postgres, privileges
from runner.config import Config
from runner.errors import RemoraError, StorageError
from runner.targets import open_target

logger = structlog.get_logger()
T = TypeVar("T")
PROBE = b"remora-backup check: this object is deleted at once\n"


@dataclasses.dataclass
class Report:
    """Prints one line a check and remembers the failures."""

    out: TextIO
    failures: list[RemoraError] = dataclasses.field(default_factory=list)

    def step(self, name: str, action: Callable[[], tuple[T, str]]) -> T | None:
        """Run ``action``, which returns a value and what to say; None if it failed."""
        try:
            value, detail = action()
        except RemoraError as e:
            self.failures.append(e)
            self.line(name, "FAIL", e.one_line())
            return None
        self.line(name, "ok", detail)
        return value

    def line(self, name: str, status: str, detail: str) -> None:
        print(log.redactor.scrub(f"{name:<11} {status:<4}  {detail}"), file=self.out, flush=True)

    def finish(self) -> int:
        """Log the outcome in one line, as every command does; return the first failure's exit code."""
        if not self.failures:
            logger.info("check passed")
            return 0
        first = self.failures[0]
        logger.error(f"check failed: {first.one_line()}", exit_code=first.exit_code, failures=len(self.failures))
        return first.exit_code


def run(load_config: Callable[[], Config], env: Mapping[str, str], *, allow_write: bool, out: TextIO) -> int:
    """Check the configuration, the database and its credential, pg_dump, the keys and the target."""
    report = Report(out)
    config = report.step("config", lambda: (load_config(), "the variables parse"))
    if config is None:
        for name in ("database", "credential", "pg_dump", "keys", "target"):
            report.line(name, "skip", "needs a valid configuration")
        return report.finish()
    server = report.step("database", lambda: _database(config))
    if server is None:
        for name in ("credential", "pg_dump"):
            report.line(name, "skip", "needs the database")
    else:
        report.step("credential", lambda: _credential(config, allow_write=allow_write))
        report.step("pg_dump", lambda: _pg_dump(server, env, gzip_level=config.gzip_level))
    report.step("keys", lambda: _keys(config, env))
    report.step("target", lambda: _target(config))
    return report.finish()


def _database(config: Config) -> tuple[postgres.Server, str]:
    config.require("database_url")
    server = postgres.inspect(_params(config), variable=config.database_url_env)
    return server, f"PostgreSQL {server.version}, database {server.dbname}"


def _credential(config: Config, *, allow_write: bool) -> tuple[str, str]:
    with postgres.connect(_params(config), variable=config.database_url_env) as conn:
        credential = privileges.check(conn, variable=config.database_url_env, allow_write=allow_write)
    return credential, f"{credential}, and it can read everything pg_dump reads"


def _pg_dump(server: postgres.Server, env: Mapping[str, str], *, gzip_level: int) -> tuple[str, str]:
    pg_dump, major = postgres.find_tool("pg_dump", server.major, path=env.get("PATH", ""))
    compression = postgres.dump_compression(pg_dump, major, gzip_level=gzip_level)
    said = f"gzip level {compression}" if compression.isdigit() else compression
    return compression, f"{pg_dump} (version {major}), compression {said}"


def _keys(config: Config, env: Mapping[str, str]) -> tuple[list, str]:
    config.require("gpg_public_keys")
    with crypto.Keyring(env) as keyring:
        recipients = keyring.import_public(config.gpg_public_keys)
    described = [
        f"{r.user_id} {r.fingerprint} ({f'expires {r.expires:%Y-%m-%d}' if r.expires else 'does not expire'})"
        for r in recipients
    ]
    return recipients, f"{len(recipients)} recipient(s): " + "; ".join(described)


def _target(config: Config) -> tuple[str, str]:
    key = f"{config.storage_label or 'remora'}/.remora-probe-{secrets.token_hex(4)}"
    with open_target(config) as target:
        target.put(key, PROBE)
        try:
            size = target.stat(key).size
        finally:
            target.delete(key)
    if size != len(PROBE):
        raise StorageError(f"the probe {key} came back with {size} bytes, not {len(PROBE)}")
    return key, f"{config.target_url}: wrote, read and deleted {key}"


def _params(config: Config) -> dict[str, str]:
    return postgres.connection_params(config.database_url, variable=config.database_url_env)
