"""Signatures: made as a backup is stored, judged before anything read back is used.

A backup carries two signatures by the signing key: one inside the archive (``gpg --sign
--encrypt``, made in the same streaming pass, with the backup's id and label as notations, so
that plain ``gpg --decrypt`` says "Good signature"), and one of its manifest's canonical bytes,
which hold the archive's SHA-256, id and label. Either is good only if it is the one signature
there is, made by the key the manifest names, and that key is pinned (REMORA_GPG_SIGNERS).

gpg's verdict is read from its machine-readable status lines, never its human text.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import structlog

from runner import crypto, keys
from runner.errors import IntegrityError
from runner.manifest import Manifest

log = structlog.get_logger()
NOTATION_ID = "id@remora-backup"
NOTATION_LABEL = "label@remora-backup"
STATUS_KEEP = 64 * 1024  # bytes of status read: a backup's is about 2 KB
_VERDICTS = ("GOODSIG", "EXPKEYSIG", "EXPSIG", "REVKEYSIG", "BADSIG", "ERRSIG")


@dataclasses.dataclass
class Signature:
    verdict: str = ""  # one of _VERDICTS
    primary: str | None = None  # the primary key's fingerprint, from VALIDSIG (ERRSIG: the issuer's)
    notations: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Status:
    """What gpg's status lines say of one message."""

    signatures: list[Signature] = dataclasses.field(default_factory=list)
    decrypted: bool = False  # DECRYPTION_OKAY
    intact: bool = False  # GOODMDC: the encrypted data's integrity check passed (gpg reports it for AEAD too)


def parse_status(text: str) -> Status:
    """gpg's ``--status-file`` lines, read into a Status."""
    status, notation = Status(), None
    for line in text.splitlines():
        if not line.startswith("[GNUPG:] "):
            continue
        keyword, *args = line.removeprefix("[GNUPG:] ").split(" ")
        if keyword == "NEWSIG" or (keyword in _VERDICTS + ("VALIDSIG",) and not status.signatures):
            status.signatures.append(Signature())
        current = status.signatures[-1] if status.signatures else None
        if keyword in _VERDICTS:
            current.verdict = keyword
            if keyword == "ERRSIG" and len(args) > 6:
                current.primary = args[6]
        elif keyword == "VALIDSIG" and args:
            current.primary = args[9] if len(args) > 9 else args[0]
        elif keyword == "NOTATION_NAME" and current is not None and args:
            notation = args[0]
            current.notations[notation] = ""
        elif keyword == "NOTATION_DATA" and current is not None and notation is not None:
            current.notations[notation] += _unescape(" ".join(args))
        elif keyword == "DECRYPTION_OKAY":
            status.decrypted = True
        elif keyword == "GOODMDC":
            status.intact = True
    return status


def _unescape(text: str) -> str:
    """gpg's percent-escaping in NOTATION_DATA."""
    return re.sub(r"%([0-9A-Fa-f]{2})", lambda match: chr(int(match[1], 16)), text)


def require(status: Status, *, what: str, signer: str, pinned: set[str] | frozenset[str],
            notations: dict[str, str] | None = None) -> None:
    """Raise IntegrityError unless ``status`` holds one good signature, by ``signer``, pinned, with ``notations``."""
    if not status.signatures:
        raise IntegrityError(f"{what} is not signed", hint=_FORGED)
    if len(status.signatures) > 1:
        raise IntegrityError(f"{what} carries {len(status.signatures)} signatures; a backup carries one", hint=_FORGED)
    [signature] = status.signatures
    if signature.verdict == "ERRSIG":
        raise IntegrityError(f"{what} is signed by a key that is not in REMORA_GPG_SIGNERS "
                             f"({signature.primary or 'unknown'})", hint=_FORGED)
    if signature.verdict in ("BADSIG", "EXPSIG", "REVKEYSIG", ""):
        said = {"BADSIG": "a bad signature: it was changed after it was signed", "EXPSIG": "an expired signature",
                "REVKEYSIG": f"a signature by a revoked key ({signature.primary})", "": "a signature gpg did not judge"}
        raise IntegrityError(f"{what} has {said[signature.verdict]}", hint=_FORGED)
    if signature.primary not in pinned or signature.primary != signer:
        raise IntegrityError(f"{what} is signed by {signature.primary}, not by {signer} of REMORA_GPG_SIGNERS",
                             hint=_FORGED)
    if signature.verdict == "EXPKEYSIG":
        log.warning(f"{what} is signed by {signer}, a key that has expired since")
    for name, expected in (notations or {}).items():
        if signature.notations.get(name) != expected:
            raise IntegrityError(f"{what} was signed as {name}={signature.notations.get(name)!r}, not {expected!r}: "
                                 "it was made for another backup", hint=_FORGED)


_FORGED = "it was not made by your signing key as this backup: do not restore it; see who can write to the target"


def sign(keyring: crypto.Keyring, signer: str, data: bytes, *, passphrase: str | None) -> str:
    """An armored detached signature of ``data`` by ``signer``."""
    with crypto.passphrase_pipe(passphrase) as fd:
        result = subprocess.run(crypto.sign_argv(keyring.home, signer, passphrase_fd=fd), input=data,
                                env=keyring.env, capture_output=True, check=False,
                                pass_fds=() if fd is None else (fd,))
    if result.returncode != 0:
        raise crypto.crypto_failure("sign", result.stderr.decode(errors="replace").strip(),
                                    passphrase="REMORA_GPG_SIGNING_PASSPHRASE")
    return result.stdout.decode("ascii")


def load_signer(keyring: crypto.Keyring, armored: str, *, passphrase: str | None) -> keys.Key:
    """Import the signing key, and sign a probe with it: its passphrase works, before anything is stored."""
    key = keyring.import_signing(armored)
    sign(keyring, key.fingerprint, b"remora-backup: the signing key works\n", passphrase=passphrase)
    return key


def check_manifest(keyring: crypto.Keyring, manifest: Manifest, *, pinned: set[str]) -> None:
    """Raise IntegrityError unless the manifest's own signature is good, by its signer, a pinned key."""
    what = f"the manifest of backup {manifest.id}"
    signature = keyring.home / "manifest.sig"
    with crypto.create_private(signature) as file:
        file.write(manifest.signature.encode())
    status_file = keyring.home / "manifest.status"
    try:
        subprocess.run(crypto.verify_argv(keyring.home, signature, status_file=status_file),
                       input=manifest.signed_bytes(), env=keyring.env, capture_output=True, check=False)
    finally:
        signature.unlink()
    require(read_status(status_file), what=what, signer=manifest.signer, pinned=pinned)


def read_status(path: Path) -> Status:
    """The status gpg wrote to ``path`` (at most STATUS_KEEP bytes of it), then removed."""
    try:
        with open(path, "rb") as file:
            text = file.read(STATUS_KEEP).decode("utf-8", "replace")
    except FileNotFoundError:
        text = ""
    path.unlink(missing_ok=True)
    return parse_status(text)
