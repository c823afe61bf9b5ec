"""gpg: throwaway keyrings, and argv builders for the streaming encrypt and decrypt stages.

Keys live in a keyring made for one run and removed after it, in RAM (/dev/shm) where the
machine has it, so not even a private key touches the dyno's disk. python-gnupg handles keys;
the data stream goes through the ``gpg`` binary directly, because python-gnupg buffers it.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import gnupg
import structlog

from runner import armor
from runner.errors import CryptoError, UsageError

log = structlog.get_logger()
_RAM_DIR = Path("/dev/shm")
EXPIRY_WARNING = datetime.timedelta(days=30)


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

    def import_public(self, armored: str, *, variable: str = "REMORA_GPG_PUBLIC_KEYS") -> list[Recipient]:
        """Import every public key in ``armored`` and check that each can be encrypted to: the recipients."""
        for number, block in enumerate(_public_blocks(armor.refold(armored), variable), 1):
            if not self._gpg.import_keys(block).fingerprints:
                raise UsageError(
                    f"{variable}: key block {number} is not a readable OpenPGP public key",
                    hint="paste the whole output of gpg --armor --export KEY",
                )
        return [_recipient(key, variable) for key in self._gpg.list_keys()]

    def import_private(self, armored: str, *, passphrase: str | None) -> None:
        """Import the private key that decrypts backups."""
        result = self._gpg.import_keys(armor.refold(armored), passphrase=passphrase)
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


@dataclasses.dataclass(frozen=True)
class Recipient:
    fingerprint: str
    user_id: str
    expires: datetime.datetime | None  # when it can no longer be encrypted to


_ARMOR = re.compile(r"-----BEGIN PGP ([A-Z ]+?)-----.*?-----END PGP \1-----", re.DOTALL)


def _public_blocks(armored: str, variable: str) -> list[str]:
    """The ASCII-armored public key blocks of ``armored``; anything else in it is an error."""
    matches = list(_ARMOR.finditer(armored))
    for number, match in enumerate(matches, 1):
        if match.group(1) == "PRIVATE KEY BLOCK":
            raise UsageError(
                f"{variable}: key block {number} is a private key; only public keys belong here",
                hint="export the public key with gpg --armor --export KEY, and keep the private one safe",
            )
        if match.group(1) != "PUBLIC KEY BLOCK":
            raise UsageError(f"{variable}: block {number} is a PGP {match.group(1)}, not a public key block")
    rest = _ARMOR.sub("", armored).strip()
    if rest or not matches:
        problem = "holds text outside its key blocks" if matches else "holds no ASCII-armored public key"
        if "-----BEGIN PGP" in rest:
            problem = f"key block {len(matches) + 1} has no END line"
        raise UsageError(f"{variable} {problem}", hint="paste the whole output of gpg --armor --export KEY")
    return [match.group(0) for match in matches]


def _recipient(key: dict, variable: str) -> Recipient:
    """The key as a recipient; a UsageError naming the key if it cannot be encrypted to."""
    user_id = key["uids"][0] if key["uids"] else "(no user id)"
    problem = _unusable(key)
    if problem is not None:
        what, hint = problem
        raise UsageError(f"{variable}: key {user_id} {key['fingerprint']} {what}", hint=hint)
    expires = _encryption_expiry(key)
    if expires is not None and expires - datetime.datetime.now(datetime.timezone.utc) < EXPIRY_WARNING:
        log.warning(
            f"{variable}: key {user_id} {key['fingerprint']} expires on {expires:%Y-%m-%d}",
            hint="extend it with gpg --quick-set-expire FPR 1y (and with '*' for its subkeys), then export it again",
        )
    return Recipient(fingerprint=key["fingerprint"], user_id=user_id, expires=expires)


def _unusable(key: dict) -> tuple[str, str] | None:
    """What makes ``key`` impossible to encrypt to, and what to do, or None if it is usable."""
    renew = "extend it with gpg --quick-set-expire, or make a new key, and export it again"
    add_one = "add one with gpg --quick-add-key FPR cv25519 encr, and export the key again"
    validity = key.get("trust", "")
    if validity == "r":
        return "is revoked", "use another key: a revoked key must not be encrypted to"
    if validity == "e":
        return f"expired on {_date(int(key['expires']))}", renew
    if validity in ("i", "d"):
        return "is not valid (bad self-signature)" if validity == "i" else "is disabled", "export the key again"
    if "E" in key.get("cap", ""):  # gpg's capital letters: a usable capability of the key as a whole
        return None
    subkeys = [info for info in key.get("subkey_info", {}).values() if "e" in info.get("cap", "")]
    if not subkeys:
        return "has no encryption key (it can only sign)", add_one
    expired = [int(info["expires"]) for info in subkeys if info.get("trust") == "e" and info.get("expires")]
    if expired:
        return f"has only expired encryption subkeys (the last on {_date(max(expired))})", renew
    return "has no usable encryption subkey (each is revoked or invalid)", add_one


def _encryption_expiry(key: dict) -> datetime.datetime | None:
    """When the key stops being usable for encryption: its own expiry, or its last encryption subkey's."""
    limits = [int(key["expires"])] if key.get("expires") else []
    subkeys = [info for info in key.get("subkey_info", {}).values()
               if "e" in info.get("cap", "") and info.get("trust") not in ("e", "r")]
    if subkeys and all(info.get("expires") for info in subkeys):
        limits.append(max(int(info["expires"]) for info in subkeys))
    return datetime.datetime.fromtimestamp(min(limits), datetime.timezone.utc) if limits else None


def _date(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%d")


def crypto_failure(action: str, stderr: str) -> CryptoError:
    """The error for a gpg that failed, in gpg's own words."""
    return CryptoError(f"gpg could not {action}: {stderr or 'no message'}", hint=_hint(stderr))


def _hint(stderr: str) -> str:
    if "No secret key" in stderr or "no secret key" in stderr:
        return "set REMORA_GPG_PRIVATE_KEY to a private key of one of the backup's recipients"
    if "Bad passphrase" in stderr or "bad passphrase" in stderr:
        return "check REMORA_GPG_PASSPHRASE"
    return "check the keys and try again"
