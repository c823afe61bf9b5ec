"""gpg: throwaway keyrings, and argv builders for the streaming encrypt and decrypt stages.

Keys live in a keyring made for one run and removed after it, in RAM (/dev/shm) where the
machine has it, so not even a private key touches the dyno's disk. python-gnupg handles keys;
the data stream goes through the ``gpg`` binary directly, because python-gnupg buffers it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import gnupg

from runner.errors import CryptoError, UsageError

_RAM_DIR = Path("/dev/shm")


def encrypt_argv(homedir: Path, recipients: list[str]) -> list[str]:
    """gpg reading plaintext on stdin and writing binary OpenPGP to stdout, uncompressed.

    The archive is already compressed by pg_dump: gpg's own compression would only cost time.
    """
    argv = _base_argv(homedir) + ["--trust-model", "always", "--compress-algo", "none"]
    for fingerprint in recipients:
        argv += ["--recipient", fingerprint]
    return argv + ["--output", "-", "--encrypt"]


def decrypt_argv(homedir: Path, *, passphrase_fd: int | None = None) -> list[str]:
    """gpg reading OpenPGP on stdin and writing plaintext to stdout; the passphrase comes on a fd."""
    argv = _base_argv(homedir)
    if passphrase_fd is not None:
        argv += ["--pinentry-mode", "loopback", "--passphrase-fd", str(passphrase_fd)]
    return argv + ["--output", "-", "--decrypt"]


def _base_argv(homedir: Path) -> list[str]:
    return ["gpg", "--homedir", str(homedir), "--batch", "--no-tty", "--quiet", "--no-greeting"]


class Keyring:
    """A temporary GNUPGHOME for one command; a context manager that removes it afterwards."""

    def __init__(self, env: Mapping[str, str]) -> None:
        """``env``: the environment for gpg, which needs no config var (see processes.child_env)."""
        base = _RAM_DIR if _RAM_DIR.is_dir() and os.access(_RAM_DIR, os.W_OK) else None
        self.home = Path(tempfile.mkdtemp(prefix="remora-gpg-", dir=base))
        self._env = dict(env)
        self._gpg = gnupg.GPG(gnupghome=str(self.home), env=self._env)

    def import_public(self, armored: str, *, variable: str = "REMORA_GPG_PUBLIC_KEYS") -> list[str]:
        """Import every public key in ``armored``; return their fingerprints: the recipients."""
        result = self._gpg.import_keys(armored)
        if not result.fingerprints:
            raise UsageError(f"{variable} holds no OpenPGP public key", hint="paste ASCII-armored keys")
        recipients = []
        for key in self._gpg.list_keys():
            user_id = key["uids"][0] if key["uids"] else "(no user id)"
            if "E" not in key.get("cap", ""):
                raise UsageError(
                    f"{variable}: key {user_id} {key['fingerprint']} has no usable encryption key",
                    hint="export a key with an encryption subkey",
                )
            recipients.append(key["fingerprint"])
        return recipients

    def import_private(self, armored: str, *, passphrase: str | None) -> None:
        """Import the private key that decrypts backups."""
        result = self._gpg.import_keys(armored, passphrase=passphrase)
        if not result.fingerprints or not self._gpg.list_keys(secret=True):
            raise UsageError(
                "REMORA_GPG_PRIVATE_KEY holds no OpenPGP private key",
                hint="export it with gpg --armor --export-secret-keys",
            )

    def close(self) -> None:
        """Stop the agent gpg may have started for this keyring, then remove the keyring."""
        subprocess.run(
            ["gpgconf", "--homedir", str(self.home), "--kill", "all"],
            env=self._env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> Keyring:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def crypto_failure(action: str, stderr: str) -> CryptoError:
    """The error for a gpg that failed, in gpg's own words."""
    return CryptoError(f"gpg could not {action}: {stderr or 'no message'}", hint=_hint(stderr))


def _hint(stderr: str) -> str:
    if "No secret key" in stderr or "no secret key" in stderr:
        return "set REMORA_GPG_PRIVATE_KEY to a private key of one of the backup's recipients"
    if "Bad passphrase" in stderr or "bad passphrase" in stderr:
        return "check REMORA_GPG_PASSPHRASE"
    return "check the keys and try again"
