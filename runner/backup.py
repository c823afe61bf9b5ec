"""``remora-backup backup``: pg_dump → gpg → target, then the signed manifest, last.

    pg_dump ──pipe──▶ Pump (splice, counts) ──pipe──▶ gpg --sign --encrypt ──pipe──▶ runner ──parts──▶ target

The plaintext only ever crosses kernel pipes. The archive is completed in the target only
after pg_dump and gpg have both exited 0; the manifest that makes it a backup comes after that.
With a signing key (REMORA_GPG_SIGNING_KEY), gpg signs the archive in the same pass, and the
manifest, which holds the archive's SHA-256, is signed too (see runner.signing).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import resource
import subprocess
from collections.abc import Mapping
from pathlib import Path

import structlog

from runner import __version__, catalog, crypto, postgres, privileges, processes, signing
from runner.config import Config
from runner.errors import DumpError
from runner.manifest import Manifest
from runner.processes import Child, ProcessGroup, Pump
from runner.targets import Target, open_target
from runner.transfer import upload_stream

log = structlog.get_logger()


def run(config: Config, env: Mapping[str, str], *, allow_write_credential: bool = False,
        on_dyno: bool = False) -> Manifest:
    """Back the database up and return the manifest written for it (``on_dyno``: hints give Heroku's commands)."""
    plan = _preflight(config, env, allow_write_credential=allow_write_credential, on_dyno=on_dyno)
    label = config.storage_label
    passphrase = config.gpg_signing_passphrase.reveal() if config.gpg_signing_passphrase else None
    with crypto.Keyring(env) as keyring:
        recipients = [r.fingerprint for r in keyring.import_public(config.gpg_public_keys)]
        signer = _signer(keyring, config, passphrase=passphrase)
        with open_target(config) as target, crypto.passphrase_pipe(passphrase if signer else None) as fd:
            started = datetime.datetime.now(datetime.timezone.utc)
            backup_id = catalog.new_id(started)
            log.info("backup started", id=backup_id, label=label, database=plan.server.dbname,
                     target=config.target_name, signer=signer or "none")
            notations = {signing.NOTATION_ID: backup_id, signing.NOTATION_LABEL: label}
            stored = _store(
                target,
                catalog.archive_key(label, backup_id),
                dump_argv=postgres.dump_argv(plan.pg_dump, compression=plan.compression),
                dump_env=postgres.libpq_env(plan.params, env),
                encrypt_argv=crypto.encrypt_argv(keyring.home, recipients, signer=signer, passphrase_fd=fd,
                                                 notations=notations),
                encrypt_env=env,
                encrypt_fds=() if fd is None else (fd,),
            )
            manifest = _manifest(plan, stored, backup_id=backup_id, label=label, recipients=recipients,
                                 started=started, signer=signer)
            if signer is not None:
                signature = signing.sign(keyring, signer, manifest.signed_bytes(), passphrase=passphrase)
                manifest = dataclasses.replace(manifest, signature=signature)
            _commit(target, manifest)
    log.info(
        "backup complete",
        id=backup_id,
        dump_bytes=manifest.dump_bytes,
        encrypted_bytes=manifest.encrypted_bytes,
        peak_rss_mib=_peak_rss_mib(),
    )
    return manifest


@dataclasses.dataclass(frozen=True)
class _Plan:
    params: dict[str, str]
    server: postgres.Server
    credential: str  # "read-only" or "read-write"
    pg_dump: Path
    dump_major: int
    compression: str


def _manifest(plan: _Plan, stored: _Stored, *, backup_id: str, label: str, recipients: list[str],
              started: datetime.datetime, signer: str | None) -> Manifest:
    """The manifest of a stored archive, finished now; signed afterwards if there is a ``signer``."""
    return Manifest(
        id=backup_id,
        label=label,
        database=plan.server.dbname,
        server_version=plan.server.version,
        pg_dump_version=plan.dump_major,
        archive_format="custom",
        compression=plan.compression,
        recipients=recipients,
        dump_bytes=stored.dump_bytes,
        encrypted_bytes=stored.encrypted_bytes,
        sha256=stored.sha256,
        started_at=_iso(started),
        finished_at=_iso(datetime.datetime.now(datetime.timezone.utc)),
        runner_version=__version__,
        credential=plan.credential,
        signer=signer,
    )


def _preflight(config: Config, env: Mapping[str, str], *, allow_write_credential: bool, on_dyno: bool) -> _Plan:
    """The checks that can refuse a backup, made before the target is even opened."""
    config.require("database_url", "target_url", "gpg_public_keys")
    variable = config.database_url_env
    params = postgres.connection_params(config.database_url, variable=variable)
    with postgres.connect(params, variable=variable) as conn:
        server = postgres.server_facts(conn)
        credential = privileges.check(conn, variable=variable, allow_write=allow_write_credential, on_dyno=on_dyno)
    pg_dump, dump_major = postgres.find_tool("pg_dump", server.major, path=env.get("PATH", ""))
    compression = postgres.dump_compression(pg_dump, dump_major, gzip_level=config.gzip_level)
    return _Plan(params, server, credential, pg_dump, dump_major, compression)


def _signer(keyring: crypto.Keyring, config: Config, *, passphrase: str | None) -> str | None:
    """The signing key's fingerprint, once it has signed a probe (its passphrase works); None without one."""
    if config.gpg_signing_key is None:
        log.warning("REMORA_GPG_SIGNING_KEY is not set: this backup is not signed, and restore will refuse it "
                    "without --allow-unsigned", hint="set a signing key: see remora-backup check")
        return None
    return signing.load_signer(keyring, config.gpg_signing_key.reveal(), passphrase=passphrase).fingerprint


def _commit(target: Target, manifest: Manifest) -> None:
    """Write the manifest; if that fails, take the archive away too rather than leave it half-made."""
    try:
        target.put(catalog.manifest_key(manifest.label, manifest.id), manifest.to_bytes())
    except BaseException:
        try:
            target.delete(catalog.archive_key(manifest.label, manifest.id))
        except Exception as cleanup:  # the original failure is the one to report
            log.warning("could not remove the archive", error=str(cleanup))
        raise


@dataclasses.dataclass(frozen=True)
class _Stored:
    dump_bytes: int
    encrypted_bytes: int
    sha256: str


def _store(target: Target, key: str, *, dump_argv, dump_env, encrypt_argv, encrypt_env, encrypt_fds=()) -> _Stored:
    """Stream pg_dump through gpg into ``key``; complete it only if every stage succeeded."""
    upload = target.begin(key)
    try:
        with ProcessGroup() as group:
            dump_out, pump_in = processes.pipe()
            pump_out, gpg_in = processes.pipe()
            dump = group.start("pg_dump", dump_argv, env=dump_env, stdout=pump_in)
            os.close(pump_in)
            gpg = group.start("gpg", encrypt_argv, env=encrypt_env, stdin=pump_out, stdout=subprocess.PIPE,
                              pass_fds=encrypt_fds)
            os.close(pump_out)
            processes.widen(gpg.popen.stdout.fileno())
            pump = Pump(dump_out, gpg_in)
            pump.start()
            size, sha256 = upload_stream(gpg.popen.stdout, upload, in_flight=target.max_in_flight)
            pump.join()
            _check(dump, gpg, pump)
        upload.complete()
    except BaseException:
        upload.abort()
        raise
    return _Stored(dump_bytes=pump.moved, encrypted_bytes=size, sha256=sha256)


def _check(dump: Child, gpg: Child, pump: Pump) -> None:
    """Report the real first failure: a dead gpg makes pg_dump die of SIGPIPE, so blame gpg first."""
    if gpg.wait() != 0:
        raise crypto.crypto_failure("encrypt the dump", gpg.stderr_text(), passphrase="REMORA_GPG_SIGNING_PASSPHRASE")
    if pump.error is not None and not isinstance(pump.error, BrokenPipeError):
        raise pump.error
    if (status := dump.wait()) != 0:
        raise DumpError(
            f"pg_dump failed (exit {status}): {dump.stderr_text() or 'no message'}",
            hint="see pg_dump's message; nothing was stored",
        )


def _peak_rss_mib() -> float:
    """This process's peak resident memory.

    VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so it would report the peak of
    whatever process forked the runner if that was larger.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _iso(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
