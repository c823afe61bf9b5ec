"""gpg: throwaway keyrings, and argv builders for the streaming stages and for signatures.

Keys live in a keyring made for one run and removed after it, in RAM (/dev/shm) where the
machine has it, so not even a private key touches the dyno's disk. python-gnupg handles keys;
the data stream goes through the ``gpg`` binary directly, because python-gnupg buffers it.
Passphrases reach gpg on a file descriptor, never in its argv. What gpg reads from or writes to
a file (a spool, a signature, a decrypted archive) is in a new file only this user can read.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import gnupg

from runner import armor, keys
from runner.errors import CryptoError, UsageError

_RAM_DIR = Path("/dev/shm")
# gpg's hash for signatures, set rather than left to the keys' preferences (SHA-512 for ed25519):
# with the SHA extensions of current x86 CPUs, signing 400 MB took 0.35 s of CPU more than not
# signing with SHA-256, 0.60 s with SHA-512.
DIGEST = "SHA256"


def encrypt_argv(homedir: Path, recipients: list[str], *, signer: str | None = None,
                 passphrase_fd: int | None = None, notations: Mapping[str, str] | None = None) -> list[str]:
    """gpg reading plaintext on stdin and writing binary OpenPGP to stdout, uncompressed.

    The archive is already compressed by pg_dump: gpg's own compression would only cost time.
    With ``signer``, it is signed in the same pass (``--sign --encrypt``), and the signature
    carries ``notations``: what it was made as, so that it cannot pass for another backup.
    """
    argv = _base_argv(homedir) + ["--trust-model", "always", "--compress-algo", "none"]
    argv += _passphrase_argv(passphrase_fd)
    for fingerprint in recipients:
        argv += ["--recipient", fingerprint]
    if signer is None:
        return argv + ["--output", "-", "--encrypt"]
    argv += _signer_argv(signer)
    for name, value in (notations or {}).items():
        argv += ["--set-notation", f"{name}={value}"]
    return argv + ["--output", "-", "--sign", "--encrypt"]


def decrypt_argv(homedir: Path, *, passphrase_fd: int | None = None, status_file: Path | None = None) -> list[str]:
    """gpg reading OpenPGP on stdin and writing plaintext to stdout; the passphrase comes on a fd.

    With ``status_file``, gpg checks the archive's signature and writes its machine-readable
    status lines there; without (a backup let through unsigned), it checks none.
    """
    argv = _base_argv(homedir) + _passphrase_argv(passphrase_fd)
    if status_file is None:
        argv += ["--skip-verify"]
    else:
        argv += ["--trust-model", "always", "--status-file", str(status_file)]
    return argv + ["--output", "-", "--decrypt"]


def sign_argv(homedir: Path, signer: str, *, passphrase_fd: int | None = None) -> list[str]:
    """gpg writing an armored detached signature by ``signer`` of stdin to stdout."""
    argv = _base_argv(homedir) + _passphrase_argv(passphrase_fd) + _signer_argv(signer)
    return argv + ["--armor", "--output", "-", "--detach-sign"]


def verify_argv(homedir: Path, signature: Path, *, status_file: Path) -> list[str]:
    """gpg checking the detached ``signature`` of stdin, its status lines written to ``status_file``."""
    argv = _base_argv(homedir) + ["--trust-model", "always", "--status-file", str(status_file)]
    return argv + ["--verify", str(signature), "-"]


def _base_argv(homedir: Path) -> list[str]:
    return ["gpg", "--homedir", str(homedir), "--batch", "--no-tty", "--quiet", "--no-greeting"]


def _signer_argv(signer: str) -> list[str]:
    return ["--local-user", signer, "--digest-algo", DIGEST]


def _passphrase_argv(passphrase_fd: int | None) -> list[str]:
    return [] if passphrase_fd is None else ["--pinentry-mode", "loopback", "--passphrase-fd", str(passphrase_fd)]


@contextlib.contextmanager
def passphrase_pipe(passphrase: str | None) -> Iterator[int | None]:
    """The read end of a pipe holding ``passphrase`` for ``--passphrase-fd`` (None without one); closed after."""
    if passphrase is None:
        yield None
        return
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, passphrase.encode() + b"\n")
    finally:
        os.close(write_fd)
    try:
        yield read_fd
    finally:
        os.close(read_fd)


def create_private(path: Path) -> BinaryIO:
    """A new file at ``path`` that only this user can read; FileExistsError if there is one already."""
    return open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


class Keyring:
    """A temporary GNUPGHOME for one command; a context manager that removes it afterwards."""

    def __init__(self, env: Mapping[str, str]) -> None:
        """``env``: the environment for gpg, which needs no config var (see processes.child_env)."""
        base = _RAM_DIR if _RAM_DIR.is_dir() and os.access(_RAM_DIR, os.W_OK) else None
        self.home = Path(tempfile.mkdtemp(prefix="remora-gpg-", dir=base))
        self.env = dict(env)
        self._gpg = gnupg.GPG(gnupghome=str(self.home), env=self.env)

    def import_public(self, armored: str, *, variable: str = "REMORA_GPG_PUBLIC_KEYS",
                      use: str = "encrypt") -> list[keys.Key]:
        """Import every public key in ``armored`` and check that each can ``use`` ("encrypt" or "sign")."""
        imported: list[str] = []
        for number, block in enumerate(keys.blocks(armor.refold(armored), variable, kind="PUBLIC"), 1):
            secret_before = len(self._gpg.list_keys(secret=True))
            found = self._gpg.import_keys(block).fingerprints
            if not found:
                raise UsageError(
                    f"{variable}: key block {number} is not a readable OpenPGP public key",
                    hint="paste the whole output of gpg --armor --export KEY",
                )
            if len(self._gpg.list_keys(secret=True)) != secret_before:
                # a private key armored as a public one imports as a private key all the same
                raise UsageError(
                    f"{variable}: key block {number} holds a private key; only public keys belong here",
                    hint="export the public key with gpg --armor --export KEY, and keep the private one safe",
                )
            imported += found
        return [keys.judge(key, variable, use=use) for key in self._gpg.list_keys() if key["fingerprint"] in imported]

    def import_private(self, armored: str, *, passphrase: str | None) -> None:
        """Import the private key that decrypts backups."""
        result = self._gpg.import_keys(armor.refold(armored), passphrase=passphrase)
        if not result.fingerprints or not self._gpg.list_keys(secret=True):
            raise UsageError(
                "REMORA_GPG_PRIVATE_KEY holds no OpenPGP private key",
                hint="export it with gpg --armor --export-secret-keys",
            )

    def import_signing(self, armored: str, *, variable: str = "REMORA_GPG_SIGNING_KEY") -> keys.Key:
        """Import the one private key that signs backups, and check that it can sign."""
        blocks = keys.blocks(armor.refold(armored), variable, kind="PRIVATE")
        if len(blocks) != 1:
            raise UsageError(f"{variable} holds {len(blocks)} private keys: it takes the one that signs backups")
        found = set(self._gpg.import_keys(blocks[0]).fingerprints)
        secret = [key["fingerprint"] for key in self._gpg.list_keys(secret=True) if key["fingerprint"] in found]
        if not secret:
            raise UsageError(f"{variable} holds no readable OpenPGP private key",
                             hint="export it with gpg --armor --export-secret-keys KEY")
        [public] = [key for key in self._gpg.list_keys() if key["fingerprint"] == secret[0]]
        return keys.judge(public, variable, use="sign")

    def close(self) -> None:
        """Stop the agent gpg may have started for this keyring, then remove the keyring."""
        subprocess.run(
            ["gpgconf", "--homedir", str(self.home), "--kill", "all"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> Keyring:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def crypto_failure(action: str, stderr: str, *, passphrase: str = "REMORA_GPG_PASSPHRASE") -> CryptoError:
    """The error for a gpg that failed, in gpg's own words; ``passphrase`` names the variable that may be wrong."""
    stderr = " / ".join(line.strip() for line in stderr.splitlines() if line.strip())
    return CryptoError(f"gpg could not {action}: {stderr or 'no message'}", hint=_hint(stderr, passphrase))


def _hint(stderr: str, passphrase: str) -> str:
    if "No secret key" in stderr or "no secret key" in stderr:
        return "set REMORA_GPG_PRIVATE_KEY to a private key of one of the backup's recipients"
    if "Bad passphrase" in stderr or "bad passphrase" in stderr or "No passphrase" in stderr:
        return f"check {passphrase}"
    return "check the keys and try again"
