"""``remora-backup backup``: pg_dump → gpg → target, then the manifest, last.

    pg_dump ──pipe──▶ splice (counts) ──pipe──▶ gpg --encrypt ──pipe──▶ runner ──parts──▶ target

The plaintext only ever crosses kernel pipes. The archive is completed in the target only
after pg_dump and gpg have both exited 0; the manifest that makes it a backup comes after that.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import resource
from collections.abc import Mapping
from pathlib import Path

import structlog

from runner import __version__, catalog, crypto, postgres
from runner.config import Config
from runner.errors import DumpError
from runner.manifest import Manifest
from runner.processes import ProcessGroup, pump
from runner.targets import Target, open_target
from runner.transfer import upload_stream

log = structlog.get_logger()


def run(config: Config, env: Mapping[str, str]) -> Manifest:
    """Back the database up and return the manifest written for it."""
    config.require("database_url", "target_url", "gpg_public_keys")
    params = postgres.connection_params(config.database_url, variable=config.database_url_env)
    server = postgres.inspect(params, variable=config.database_url_env)
    pg_dump, dump_major = postgres.find_tool("pg_dump", server.major)
    label = config.label or _label_for(server.dbname)
    with crypto.Keyring() as keyring, open_target(config) as target:
        recipients = keyring.import_public(config.gpg_public_keys)
        started = datetime.datetime.now(datetime.timezone.utc)
        backup_id = catalog.new_id(started)
        log.info("backup started", id=backup_id, label=label, database=server.dbname, target=config.target_url)
        compression = "zstd" if dump_major >= 16 else "1"
        stream = _Stream(
            dump_argv=postgres.dump_argv(pg_dump, compression=compression),
            encrypt_argv=crypto.encrypt_argv(keyring.home, [r.fingerprint for r in recipients]),
            env=postgres.libpq_env(params, dict(env)),
        )
        encrypted_bytes, sha256 = stream.store(target, catalog.archive_key(label, backup_id), config)
        manifest = Manifest(
            id=backup_id,
            label=label,
            database=server.dbname,
            server_version=server.version.split()[1] if " " in server.version else server.version,
            pg_dump_version=dump_major,
            archive_format="custom",
            compression=compression,
            recipients=[r.fingerprint for r in recipients],
            dump_bytes=stream.dump_bytes,
            encrypted_bytes=encrypted_bytes,
            sha256=sha256,
            started_at=_iso(started),
            finished_at=_iso(datetime.datetime.now(datetime.timezone.utc)),
            runner_version=__version__,
        )
        _commit(target, manifest)
    log.info(
        "backup complete",
        id=backup_id,
        dump_bytes=stream.dump_bytes,
        encrypted_bytes=encrypted_bytes,
        peak_rss_mib=_peak_rss_mib(),
    )
    return manifest


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


class _Stream:
    """The pg_dump → gpg pipeline, feeding one upload."""

    def __init__(self, *, dump_argv: list[str], encrypt_argv: list[str], env: dict[str, str]):
        self.dump_argv = dump_argv
        self.encrypt_argv = encrypt_argv
        self.env = env
        self.dump_bytes = 0

    def store(self, target: Target, key: str, config: Config) -> tuple[int, str]:
        """Stream the encrypted dump into ``key``; complete it only if every stage succeeded."""
        upload = target.begin(key)
        try:
            with ProcessGroup() as group:
                dump_out, pump_in = os.pipe()
                pump_out, gpg_in = os.pipe()
                dump = group.start("pg_dump", self.dump_argv, env=self.env, stdout=pump_in)
                os.close(pump_in)
                gpg = group.start("gpg", self.encrypt_argv, env=self.env, stdin=pump_out, stdout=-1)
                os.close(pump_out)
                counter, pump_errors = [0], []
                mover = pump(dump_out, gpg_in, counter, pump_errors)
                in_flight = target.max_in_flight
                size, sha256 = upload_stream(gpg.popen.stdout, upload, in_flight=in_flight)
                mover.join()
                _check(dump.wait(), gpg.wait(), dump, gpg)
                self.dump_bytes = counter[0]
            upload.complete()
        except BaseException:
            upload.abort()
            raise
        return size, sha256


def _check(dump_status: int, gpg_status: int, dump, gpg) -> None:
    """Report the real first failure: a dead gpg makes pg_dump die of SIGPIPE, so blame gpg first."""
    if gpg_status != 0:
        raise crypto.crypto_failure("encrypt the dump", gpg.stderr_text())
    if dump_status != 0:
        raise DumpError(
            f"pg_dump failed (exit {dump_status}): {dump.stderr_text() or 'no message'}",
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


def _label_for(dbname: str) -> str:
    """A storage-safe label from a database name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", dbname)[:63] or "database"


def _iso(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
