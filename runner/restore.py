"""Reading backups back: ``verify``, ``download`` and ``restore``.

Nothing read back is used before it is shown to be authentic, in this order:

1. the manifest is valid (runner.manifest) and its signature is good, by a pinned signer
   (REMORA_GPG_SIGNERS): it vouches for the archive's SHA-256, id and label;
2. the ciphertext is spooled to a private temporary file while it is hashed, and must have that
   SHA-256: from here on, every byte gpg decrypts is one the signing key vouched for;
3. gpg decrypts the spool and judges the archive's own signature (same signer, made as this
   backup). It can only say so at the end of the message: a decrypted file (download, restore
   --jobs) is judged before it is used, a stream into pg_restore when pg_restore has read it.
   A first pass to judge it before would cost a whole decryption more (about 1 s for the 400 MB
   archive of a 1 GB database) for what step 2 has already shown.

A backup without signatures is refused unless ``--allow-unsigned`` says otherwise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import structlog

from runner import catalog, crypto, postgres, signing, witness
from runner.config import Config
from runner.errors import DumpError, IntegrityError, ObjectNotFound, UsageError
from runner.manifest import Manifest
from runner.processes import Child, ProcessGroup, widen
from runner.targets import Target
from runner.transfer import Progress

log = structlog.get_logger()
CHUNK = 1024 * 1024


def check_object(target: Target, manifest: Manifest, sink: BinaryIO | None = None) -> None:
    """Read the archive, copying it to ``sink``; raise IntegrityError unless it matches the manifest."""
    key = catalog.archive_key(manifest.label, manifest.id)
    digest, size = hashlib.sha256(), 0
    progress = Progress("reading")
    try:
        with target.open(key) as stream:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                if sink is not None:
                    sink.write(chunk)
                progress.update(size)
    except ObjectNotFound as e:
        raise IntegrityError(f"backup {manifest.id} has a manifest but no archive ({key})") from e
    if size != manifest.encrypted_bytes or digest.hexdigest() != manifest.sha256:
        raise IntegrityError(
            f"backup {manifest.id} does not match its manifest: {size} bytes with SHA-256 "
            f"{digest.hexdigest()[:16]}…, expected {manifest.encrypted_bytes} bytes with "
            f"{manifest.sha256[:16]}…",
            hint="the stored object was changed or damaged; restore another backup",
        )


@contextlib.contextmanager
def verified_spool(target: Target, manifest: Manifest) -> Iterator[Path]:
    """The backup's ciphertext in a private temporary file, checked against its manifest.

    Its name is the spool's own, not one made from the manifest.
    """
    folder = Path(tempfile.mkdtemp(prefix="remora-spool-"))
    try:
        path = folder / "archive.gpg"
        with crypto.create_private(path) as sink:
            check_object(target, manifest, sink)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class Authenticated:
    """A backup whose manifest passed, and what it takes to decrypt its archive and judge its signature."""

    config: Config
    keyring: crypto.Keyring
    manifest: Manifest
    pinned: frozenset[str] | None  # the signers' fingerprints; None: an unsigned backup, allowed

    def decrypt_into(self, group: ProcessGroup, *, source: Path, stdout, env) -> Child:
        """Start gpg decrypting ``source`` into ``stdout``; it judges the archive's signature as it goes."""
        passphrase = self.config.gpg_passphrase.reveal() if self.config.gpg_passphrase else None
        with crypto.passphrase_pipe(passphrase) as fd, open(source, "rb") as stdin:
            return group.start(
                "gpg",
                crypto.decrypt_argv(self.keyring.home, passphrase_fd=fd, status_file=self._status_file),
                env=env,
                stdin=stdin,
                stdout=stdout,
                pass_fds=() if fd is None else (fd,),
            )

    def finish(self, gpg: Child) -> None:
        """Wait for a decrypting gpg; IntegrityError if the archive is not this backup's, CryptoError if gpg failed."""
        code = gpg.wait()
        if self._status_file is not None:
            status = signing.read_status(self._status_file)
            if status.decrypted or code == 0:  # gpg read the whole message: its verdict stands
                if not (status.decrypted and status.intact):
                    raise IntegrityError(f"the archive of backup {self.manifest.id} fails gpg's integrity check")
                signing.require(status, what=f"the archive of backup {self.manifest.id}", signer=self.manifest.signer,
                                pinned=self.pinned, notations={signing.NOTATION_ID: self.manifest.id,
                                                               signing.NOTATION_LABEL: self.manifest.label})
        if code != 0:
            raise crypto.crypto_failure("decrypt the backup", gpg.stderr_text())

    @property
    def _status_file(self) -> Path | None:
        return None if self.pinned is None else self.keyring.home / "archive.status"


@contextlib.contextmanager
def authenticated(config: Config, env: Mapping[str, str], manifest: Manifest, *, allow_unsigned: bool,
                  private: bool) -> Iterator[Authenticated]:
    """The backup, its manifest checked against the pinned signers; the private key imported if ``private``."""
    if private:
        config.require("gpg_private_key")
    with crypto.Keyring(env) as keyring:
        pinned = _check_manifest(config, keyring, manifest, allow_unsigned=allow_unsigned)
        witness.testify(config, manifest)
        if private:
            passphrase = config.gpg_passphrase.reveal() if config.gpg_passphrase else None
            keyring.import_private(config.gpg_private_key.reveal(), passphrase=passphrase)
        yield Authenticated(config, keyring, manifest, pinned)


def _check_manifest(config: Config, keyring: crypto.Keyring, manifest: Manifest, *,
                    allow_unsigned: bool) -> frozenset[str] | None:
    """Raise IntegrityError unless the manifest is signed by a pinned signer (or unsigned, and that is allowed)."""
    if manifest.signature is None:
        if not allow_unsigned:
            raise IntegrityError(
                f"backup {manifest.id} is not signed: anyone who can write to the target could have made it",
                hint="restore a signed backup; one made before signing was set up takes --allow-unsigned",
            )
        log.warning(f"backup {manifest.id} is not signed: going on because of --allow-unsigned, trusting "
                    "whoever can write to the target")
        return None
    config.require("gpg_signers")
    signers = keyring.import_public(config.gpg_signers, variable="REMORA_GPG_SIGNERS", use="sign")
    pinned = frozenset(key.fingerprint for key in signers)
    signing.check_manifest(keyring, manifest, pinned=pinned)
    return pinned


def verify(config: Config, target: Target, manifest: Manifest, env: Mapping[str, str], *, decrypt: bool,
           allow_unsigned: bool) -> None:
    """Check the signatures and the checksum; with ``decrypt``, also that it decrypts to a whole archive."""
    if not decrypt:
        with authenticated(config, env, manifest, allow_unsigned=allow_unsigned, private=False):
            check_object(target, manifest)
        return
    pg_restore, _ = postgres.find_tool("pg_restore", manifest.pg_dump_version, path=env.get("PATH", ""))
    with authenticated(config, env, manifest, allow_unsigned=allow_unsigned, private=True) as backup:
        with verified_spool(target, manifest) as spool, ProcessGroup() as group:
            gpg = backup.decrypt_into(group, source=spool, stdout=-1, env=env)
            widen(gpg.popen.stdout.fileno())
            lister = group.start("pg_restore", postgres.read_all_argv(pg_restore), env=env, stdin=gpg.popen.stdout)
            gpg.popen.stdout.close()
            list_status = lister.wait()
            backup.finish(gpg)
            if list_status != 0:
                raise IntegrityError(
                    f"backup {manifest.id} decrypts but is not a readable archive: {lister.stderr_text()}"
                )


def download(config: Config, target: Target, manifest: Manifest, output: Path, env, *, decrypt: bool,
             allow_unsigned: bool) -> None:
    """Write the checked archive to ``output`` (plaintext with ``decrypt``), which must not exist yet."""
    if os.path.lexists(output):
        raise UsageError(f"{output} exists", hint="name a new file: download never replaces one")
    temp = output.with_name(f".{output.name}.{secrets.token_hex(4)}.part")
    created = False
    try:
        with authenticated(config, env, manifest, allow_unsigned=allow_unsigned, private=decrypt) as backup:
            with crypto.create_private(temp) as sink:
                created = True
                if not decrypt:
                    check_object(target, manifest, sink)
                else:
                    with verified_spool(target, manifest) as spool, ProcessGroup() as group:
                        backup.finish(backup.decrypt_into(group, source=spool, stdout=sink, env=env))
        os.link(temp, output)  # unlike a rename, never replaces a file that appeared meanwhile
    except FileExistsError as e:
        raise UsageError(f"{e.filename} exists", hint="name a new file: download never replaces one") from e
    except OSError as e:
        raise UsageError(f"cannot write {output}: {e.strerror}") from e
    finally:
        if created:
            temp.unlink(missing_ok=True)


def restore(config: Config, target: Target, manifest: Manifest, to_url, env, *, clean: bool, jobs: int,
            allow_unsigned: bool) -> None:
    """Restore the authenticated, checked, decrypted archive into the database at ``to_url``."""
    params = postgres.connection_params(to_url, variable="--to")
    with authenticated(config, env, manifest, allow_unsigned=allow_unsigned, private=True) as backup:
        server = postgres.inspect(params, variable="--to")
        _announce(backup, into=params["dbname"], server=server)
        if manifest.server_major > server.major:
            raise UsageError(
                f"backup {manifest.id} is of PostgreSQL {manifest.server_version} (database {manifest.database}),"
                f" newer than the target's PostgreSQL {server.version}: pg_restore would fail part way",
                hint=f"restore it into a server of PostgreSQL {manifest.server_major} or newer",
            )
        # pg_restore must read the archive and speak to the server: as new as the newer of the two
        needed = max(manifest.pg_dump_version, server.major)
        pg_restore, _ = postgres.find_tool("pg_restore", needed, path=env.get("PATH", ""))
        with verified_spool(target, manifest) as spool, ProcessGroup() as group:
            gpg, restorer = _start_restore(group, backup, spool, pg_restore, params, env, clean=clean, jobs=jobs)
            # gpg has read it or holds it open: freeing its blocks now overlaps the restore rather than follow it
            spool.unlink()
            restore_status = restorer.wait()
            if jobs == 1:
                _finish_streamed(backup, gpg, into=params["dbname"], restored=restore_status == 0)
            if restore_status != 0:
                raise DumpError(
                    f"pg_restore failed (exit {restore_status}): {restorer.stderr_text() or 'no message'}",
                    hint="the restore was rolled back" if jobs == 1 else "the database may be partly restored",
                )
    log.info("restore complete", id=manifest.id, into=params["dbname"])


def _announce(backup: Authenticated, *, into: str, server: postgres.Server) -> None:
    """Say what is about to be restored, and where to, before anything is."""
    m = backup.manifest
    log.info("restoring", id=m.id, label=m.label, database=m.database, server_version=m.server_version,
             taken_at=m.finished_at, signer=m.signer if backup.pinned else "none (unsigned, --allow-unsigned)",
             into=into, into_server_version=server.version)


def _start_restore(group: ProcessGroup, backup: Authenticated, spool: Path, pg_restore: Path,
                   params: dict[str, str], env, *, clean: bool, jobs: int) -> tuple[Child, Child]:
    """gpg and pg_restore, started: one transaction read from a pipe, or parallel jobs from a decrypted file.

    A decrypted file is whole, its signature judged, before pg_restore starts.
    """
    tool_env = postgres.libpq_env(params, env)
    if jobs > 1:
        # pg_restore --jobs must seek in the archive, so it needs a file, not a pipe.
        archive = spool.with_name("archive.dump")
        with crypto.create_private(archive) as sink:
            gpg = backup.decrypt_into(group, source=spool, stdout=sink, env=env)
            backup.finish(gpg)
        argv = postgres.restore_argv(pg_restore, dbname=params["dbname"], clean=clean, jobs=jobs, archive=archive)
        return gpg, group.start("pg_restore", argv, env=tool_env)
    gpg = backup.decrypt_into(group, source=spool, stdout=-1, env=env)
    widen(gpg.popen.stdout.fileno())
    argv = postgres.restore_argv(pg_restore, dbname=params["dbname"], clean=clean, jobs=1)
    restorer = group.start("pg_restore", argv, env=tool_env, stdin=gpg.popen.stdout)
    gpg.popen.stdout.close()
    return gpg, restorer


def _finish_streamed(backup: Authenticated, gpg: Child, *, into: str, restored: bool) -> None:
    """gpg's verdict on a stream pg_restore has read: it comes with the stream's end, so after the restore."""
    try:
        backup.finish(gpg)
    except IntegrityError as e:
        if not restored:
            raise
        # only the signing key could make this: the manifest it signed vouched for these very bytes
        raise IntegrityError(e.message, hint=f"it was restored into {into}: drop that database; {e.hint}") from e
