"""Reading backups back: ``verify``, ``download`` and ``restore``.

Nothing is decrypted, let alone restored, from an object whose SHA-256 has not first been
checked against its manifest: the ciphertext is spooled to a private temporary file while it
is hashed, and only the checked spool is fed to gpg.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import structlog

from runner import catalog, crypto, postgres
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
    """The backup's ciphertext in a private temporary file, checked against its manifest."""
    folder = Path(tempfile.mkdtemp(prefix="remora-spool-"))
    try:
        path = folder / f"{manifest.id}.dump.gpg"
        with open(path, "wb") as sink:
            check_object(target, manifest, sink)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def private_keyring(config: Config, env: Mapping[str, str]) -> Iterator[crypto.Keyring]:
    """A keyring holding the private key from REMORA_GPG_PRIVATE_KEY."""
    config.require("gpg_private_key")
    with crypto.Keyring(env) as keyring:
        passphrase = config.gpg_passphrase.reveal() if config.gpg_passphrase else None
        keyring.import_private(config.gpg_private_key.reveal(), passphrase=passphrase)
        yield keyring


def decrypt_into(
    group: ProcessGroup, keyring: crypto.Keyring, config: Config, *, source: Path, stdout, env
):
    """Start gpg decrypting ``source`` into ``stdout``; the passphrase travels on a pipe."""
    passphrase = config.gpg_passphrase.reveal().encode() if config.gpg_passphrase else None
    read_fd = None
    if passphrase is not None:
        read_fd, write_fd = os.pipe()
        os.write(write_fd, passphrase + b"\n")
        os.close(write_fd)
    try:
        with open(source, "rb") as stdin:
            return group.start(
                "gpg",
                crypto.decrypt_argv(keyring.home, passphrase_fd=read_fd),
                env=env,
                stdin=stdin,
                stdout=stdout,
                pass_fds=() if read_fd is None else (read_fd,),
            )
    finally:
        if read_fd is not None:
            os.close(read_fd)


def verify(config: Config, target: Target, manifest: Manifest, env: Mapping[str, str], *, decrypt: bool) -> None:
    """Check the archive's checksum; with ``decrypt``, also that it decrypts to a whole archive."""
    if not decrypt:
        check_object(target, manifest)
        return
    pg_restore, _ = postgres.find_tool("pg_restore", manifest.pg_dump_version, path=env.get("PATH", ""))
    with private_keyring(config, env) as keyring, verified_spool(target, manifest) as spool:
        with ProcessGroup() as group:
            gpg = decrypt_into(group, keyring, config, source=spool, stdout=-1, env=env)
            widen(gpg.popen.stdout.fileno())
            lister = group.start("pg_restore", postgres.read_all_argv(pg_restore), env=env, stdin=gpg.popen.stdout)
            gpg.popen.stdout.close()
            list_status = lister.wait()
            _check_decrypt(gpg)
            if list_status != 0:
                raise IntegrityError(
                    f"backup {manifest.id} decrypts but is not a readable archive: {lister.stderr_text()}"
                )


def download(config: Config, target: Target, manifest: Manifest, output: Path, env, *, decrypt: bool) -> None:
    """Write the checked archive to ``output`` (plaintext with ``decrypt``), atomically."""
    temp = output.with_name(f".{output.name}.part")
    try:
        if not decrypt:
            with open(temp, "xb") as sink:
                check_object(target, manifest, sink)
        else:
            with private_keyring(config, env) as keyring, verified_spool(target, manifest) as spool:
                with ProcessGroup() as group, open(temp, "xb") as sink:
                    _check_decrypt(decrypt_into(group, keyring, config, source=spool, stdout=sink, env=env))
        os.replace(temp, output)
    except FileExistsError as e:
        raise UsageError(f"{temp} exists: another download may be running", hint="remove it") from e
    except OSError as e:
        raise UsageError(f"cannot write {output}: {e.strerror}") from e
    finally:
        temp.unlink(missing_ok=True)


def restore(
    config: Config, target: Target, manifest: Manifest, to_url, env, *, clean: bool, jobs: int
) -> None:
    """Restore the checked, decrypted archive into the database at ``to_url``."""
    params = postgres.connection_params(to_url, variable="--to")
    server = postgres.inspect(params, variable="--to")
    # pg_restore must read the archive and speak to the server: as new as the newer of the two
    needed = max(manifest.pg_dump_version, server.major)
    pg_restore, _ = postgres.find_tool("pg_restore", needed, path=env.get("PATH", ""))
    tool_env = postgres.libpq_env(params, env)
    with private_keyring(config, env) as keyring, verified_spool(target, manifest) as spool:
        log.info("restoring", id=manifest.id, database=params["dbname"], jobs=jobs)
        with ProcessGroup() as group:
            if jobs > 1:
                # pg_restore --jobs must seek in the archive, so it needs a file, not a pipe.
                archive = spool.with_suffix("")
                with open(archive, "xb") as sink:
                    gpg = decrypt_into(group, keyring, config, source=spool, stdout=sink, env=env)
                    _check_decrypt(gpg)
                argv = postgres.restore_argv(pg_restore, dbname=params["dbname"], clean=clean, jobs=jobs, archive=archive)
                restorer = group.start("pg_restore", argv, env=tool_env)
            else:
                gpg = decrypt_into(group, keyring, config, source=spool, stdout=-1, env=env)
                widen(gpg.popen.stdout.fileno())
                argv = postgres.restore_argv(pg_restore, dbname=params["dbname"], clean=clean, jobs=1)
                restorer = group.start("pg_restore", argv, env=tool_env, stdin=gpg.popen.stdout)
                gpg.popen.stdout.close()
            restore_status = restorer.wait()
            _check_decrypt(gpg)
            if restore_status != 0:
                raise DumpError(
                    f"pg_restore failed (exit {restore_status}): {restorer.stderr_text() or 'no message'}",
                    hint="the restore was rolled back" if jobs == 1 else "the database may be partly restored",
                )
    log.info("restore complete", id=manifest.id, database=params["dbname"])


def _check_decrypt(gpg: Child) -> None:
    """Wait for a decrypting gpg; a failure is reported in gpg's own words."""
    if gpg.wait() != 0:
        raise crypto.crypto_failure("decrypt the backup", gpg.stderr_text())
