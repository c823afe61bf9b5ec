"""``remora-backup check``: every check a backup makes, and a round trip to the target, as a report.

One line a check, ``ok``, ``FAIL`` or ``skip`` and what it found; ``next`` for a step the
customer has yet to take (with ``--postdeploy``, attaching the database credential) and ``warn``
for what works but should not be so. Nothing is stored: the probe written to the target is
deleted again. The exit code is that of the first failure; neither ``next`` nor ``warn`` fails.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Mapping
from typing import TextIO, TypeVar

import structlog

from runner import crypto, keys, log, postgres, privileges, reading, signing
from runner.config import ADD_ON_STORAGE, Config
from runner.errors import RemoraError, StorageError, UsageError
from runner.targets import open_target

logger = structlog.get_logger()
T = TypeVar("T")
PROBE = b"remora-backup check: this object is deleted at once\n"


@dataclasses.dataclass
class Report:
    """Prints one line a check and remembers the failures."""

    out: TextIO
    failures: list[RemoraError] = dataclasses.field(default_factory=list)
    pending: list[str] = dataclasses.field(default_factory=list)

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

    def next(self, name: str, detail: str) -> None:
        """A check that cannot run yet because of a step still to take: said, remembered, not a failure."""
        self.pending.append(name)
        self.line(name, "next", detail)

    def line(self, name: str, status: str, detail: str) -> None:
        print(log.redactor.scrub(f"{name:<11} {status:<4}  {detail}"), file=self.out, flush=True)

    def finish(self) -> int:
        """Log the outcome in one line, as every command does; return the first failure's exit code."""
        pending = {"pending": ", ".join(self.pending)} if self.pending else {}
        if not self.failures:
            logger.info("check passed", **pending)
            return 0
        first = self.failures[0]
        logger.error(f"check failed: {first.one_line()}", exit_code=first.exit_code, failures=len(self.failures),
                     **pending)
        return first.exit_code


def run(load_config: Callable[[], Config], env: Mapping[str, str], *, allow_write: bool, postdeploy: bool,
        on_dyno: bool, out: TextIO) -> int:
    """Check the configuration, the database and its credential, pg_dump, the keys and the target.

    ``postdeploy``: a database URL not set yet is the next step to take, not a failure (app.json's
    postdeploy script runs before the customer can attach the credential). ``on_dyno``: this runs
    on a Heroku dyno, where a private key in the config vars is a risk worth a warning.
    """
    report = Report(out)
    config = report.step("config", lambda: (load_config(), "the variables parse"))
    if config is None:
        for name in ("database", "credential", "pg_dump", "keys", "signing", "target"):
            report.line(name, "skip", "needs a valid configuration")
        return report.finish()
    _database_checks(report, config, env, allow_write=allow_write, postdeploy=postdeploy, on_dyno=on_dyno)
    report.step("keys", lambda: _keys(config, env))
    if config.gpg_signing_key is None:
        report.line("signing", "warn", "REMORA_GPG_SIGNING_KEY not set: backups are not signed, so restore refuses "
                    "them without --allow-unsigned, and anyone who can write to the target can plant one")
    else:
        report.step("signing", lambda: _signing(config, env))
    if on_dyno and config.gpg_private_key is not None:
        report.line("private key", "warn", _private_key_warning(config))
    report.step("target", lambda: _target(config))
    return report.finish()


def _database_checks(report: Report, config: Config, env: Mapping[str, str], *, allow_write: bool,
                     postdeploy: bool, on_dyno: bool) -> None:
    if postdeploy and config.database_url is None:
        report.next("database", _attach_credential(config.database_url_env, on_dyno=on_dyno))
        server, why = None, "waits for the database"
    else:
        server, why = report.step("database", lambda: _database(config)), "needs the database"
    if server is None:
        for name in ("credential", "pg_dump"):
            report.line(name, "skip", why)
        return
    missing = report.step("credential", lambda: _credential(config, allow_write=allow_write, on_dyno=on_dyno))
    if missing:
        report.line("defaults", "warn", _defaults_warning(missing))
    report.step("pg_dump", lambda: _pg_dump(server, env, gzip_level=config.gzip_level))


def _attach_credential(variable: str, *, on_dyno: bool) -> str:
    """What to do when the database URL is not set yet: a role that only reads, and its GRANTs."""
    grants = privileges.grants_command(on_dyno)
    if on_dyno and variable.endswith("_URL"):
        return (f"{variable} not set yet: create the read-only credential, {privileges.heroku_credential(variable)}"
                f" (APP: the database's app), run what `{grants}` prints with `heroku pg:psql -a APP`,"
                " then run check again")
    return (f"{variable} not set yet: set it to the URL of the role backups should use, run what `{grants}`"
            " prints as the database's owner, then run check again")


def _defaults_warning(missing: list[privileges.Finding]) -> str:
    return (f"{privileges.listing(missing)}: what they create next (a migration) will stop the backups;"
            f" as a superuser or as each role, run {privileges.statements(missing)}")


def _private_key_warning(config: Config) -> str:
    variables = "REMORA_GPG_PRIVATE_KEY" + (" REMORA_GPG_PASSPHRASE" if config.gpg_passphrase else "")
    return ("REMORA_GPG_PRIVATE_KEY is set on this app: anyone who can run a dyno or read config vars here "
            f"can decrypt every backup; keep the key offline and unset it: heroku config:unset {variables}"
            " -a HELPER_APP")


def _database(config: Config) -> tuple[postgres.Server, str]:
    config.require("database_url")
    server = postgres.inspect(_params(config), variable=config.database_url_env)
    return server, f"PostgreSQL {server.version}, database {server.dbname}"


def _credential(config: Config, *, allow_write: bool, on_dyno: bool) -> tuple[list[privileges.Finding], str]:
    """The credential's verdict, and the roles whose next objects it would not be able to read."""
    with postgres.connect(_params(config), variable=config.database_url_env) as conn:
        credential = privileges.check(conn, variable=config.database_url_env, allow_write=allow_write,
                                      on_dyno=on_dyno)
        missing = reading.missing_defaults(conn, conn.info.user)
    return missing, f"{credential}, and it can read everything pg_dump reads"


def _pg_dump(server: postgres.Server, env: Mapping[str, str], *, gzip_level: int) -> tuple[str, str]:
    pg_dump, major = postgres.find_tool("pg_dump", server.major, path=env.get("PATH", ""))
    compression = postgres.dump_compression(pg_dump, major, gzip_level=gzip_level)
    said = f"gzip level {compression}" if compression.isdigit() else compression
    return compression, f"{pg_dump} (version {major}), compression {said}"


def _keys(config: Config, env: Mapping[str, str]) -> tuple[list, str]:
    config.require("gpg_public_keys")
    with crypto.Keyring(env) as keyring:
        recipients = keyring.import_public(config.gpg_public_keys)
    return recipients, f"{len(recipients)} recipient(s): " + "; ".join(_described(r) for r in recipients)


def _signing(config: Config, env: Mapping[str, str]) -> tuple[keys.Key, str]:
    """The signing key can sign with its passphrase; REMORA_GPG_SIGNERS, if set here, pins it."""
    passphrase = config.gpg_signing_passphrase.reveal() if config.gpg_signing_passphrase else None
    with crypto.Keyring(env) as keyring:
        signers = (keyring.import_public(config.gpg_signers, variable="REMORA_GPG_SIGNERS", use="sign")
                   if config.gpg_signers else None)
        key = signing.load_signer(keyring, config.gpg_signing_key.reveal(), passphrase=passphrase)
    if signers is not None and key.fingerprint not in {signer.fingerprint for signer in signers}:
        raise UsageError(f"REMORA_GPG_SIGNERS does not hold the signing key {key.fingerprint}: verify and restore "
                         "would refuse every backup", hint="add its public key: gpg --armor --export FINGERPRINT")
    pinned = "REMORA_GPG_SIGNERS pins it" if signers else "pin it with REMORA_GPG_SIGNERS where you restore"
    return key, f"signs backups: {_described(key)}; {pinned}"


def _described(key: keys.Key) -> str:
    expiry = f"expires {key.expires:%Y-%m-%d}" if key.expires else "does not expire"
    return f"{key.user_id} {key.fingerprint} ({expiry})"


def _target(config: Config) -> tuple[str, str]:
    if config.add_on_storage:
        return _add_on_storage(config)
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


def _add_on_storage(config: Config) -> tuple[str, str]:
    """No probe: nothing outside a backup run may write there. Listing proves the API token and the plan."""
    with open_target(config) as target:
        found = target.list()
    stored = sum(info.size for info in found)
    return found, f"{ADD_ON_STORAGE}: {len(found)} objects, {stored:,} bytes stored; each backup run writes its own"


def _params(config: Config) -> dict[str, str]:
    return postgres.connection_params(config.database_url, variable=config.database_url_env)
