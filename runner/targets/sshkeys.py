"""SSH keys from text: the pinned host keys of a known_hosts text, and the client's private key.

Both come from config variables and are parsed in memory; no key is ever written to a file.
"""

from __future__ import annotations

import io
import secrets

import paramiko
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from runner.config import Secret
from runner.errors import UsageError

_KEY_CLASSES = (
    (ed25519.Ed25519PrivateKey, paramiko.Ed25519Key),
    (ec.EllipticCurvePrivateKey, paramiko.ECDSAKey),
    (rsa.RSAPrivateKey, paramiko.RSAKey),
)


def pinned_keys(text: str, name: str) -> list[paramiko.PKey]:
    """The host keys that known_hosts ``text`` pins for ``name`` (``host`` or ``[host]:port``, plain or hashed)."""
    pinned, count = [], 0
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        entry = _known_hosts_entry(number, fields)
        count += 1
        if any(_name_matches(pattern, name) for pattern in entry.hostnames):
            pinned.append(entry.key)
    if not count:
        raise _bad_known_hosts("holds no host key")
    return pinned


def _known_hosts_entry(number: int, fields: list[str]) -> paramiko.hostkeys.HostKeyEntry:
    if fields[0].startswith("@"):
        raise _bad_known_hosts(f"line {number}: markers like {fields[0]} are not supported")
    if len(fields) < 3:
        raise _bad_known_hosts(f"line {number} is not 'HOST KEYTYPE KEY'")
    try:
        entry = paramiko.hostkeys.HostKeyEntry.from_line(" ".join(fields[:3]), number)
    except Exception as e:  # paramiko lets bad base64 and bad key bytes out as many types
        raise _bad_known_hosts(f"line {number} holds a {fields[1]} key that cannot be read") from e
    if entry is None:
        raise _bad_known_hosts(f"line {number}: key type {fields[1]} is not supported")
    return entry


def _bad_known_hosts(problem: str) -> UsageError:
    return UsageError(
        f"REMORA_SFTP_KNOWN_HOSTS {problem}",
        hint="paste known_hosts lines, e.g. from ssh-keyscan: '[host]:port ssh-ed25519 AAAA...'",
    )


def _name_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("|1|"):
        return secrets.compare_digest(paramiko.HostKeys.hash_host(name, pattern), pattern)
    return pattern == name


def private_key(secret: Secret, passphrase: Secret | None) -> paramiko.PKey:
    """Load the client key from its text; it is never written anywhere."""
    loaded = _decode_private_key(secret.reveal(), passphrase.reveal() if passphrase else None)
    key_class = next((kc for cc, kc in _KEY_CLASSES if isinstance(loaded, cc)), None)
    if key_class is None:
        raise UsageError(
            f"REMORA_SFTP_PRIVATE_KEY is a {type(loaded).__name__}, not an ed25519, ECDSA or RSA key"
        )
    # paramiko reads only its own formats (ed25519 only as OpenSSH's), so hand it the key decoded
    # by cryptography, re-encoded as an unencrypted OpenSSH key, in memory.
    text = loaded.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    try:
        return key_class.from_private_key(io.StringIO(text))
    except (paramiko.SSHException, ValueError) as e:  # e.g. an ECDSA curve paramiko lacks
        raise UsageError("REMORA_SFTP_PRIVATE_KEY is a key paramiko cannot use") from e


def _decode_private_key(text: str, passphrase: str | None):
    data = (text.strip() + "\n").encode()
    password = passphrase.encode() if passphrase else None
    try:
        return _decode(data, password)
    except TypeError as e:  # cryptography's word for a missing, or needless, password
        if password is None:
            raise UsageError(
                "REMORA_SFTP_PRIVATE_KEY is encrypted and REMORA_SFTP_PASSPHRASE is not set",
                hint="set REMORA_SFTP_PASSPHRASE to the key's passphrase",
            ) from e
        return _decode_private_key(text, None)  # a passphrase for a plain key does no harm
    except (ValueError, UnsupportedAlgorithm) as e:
        if password is not None and _encrypted(data):
            raise UsageError(
                "REMORA_SFTP_PRIVATE_KEY cannot be decrypted with REMORA_SFTP_PASSPHRASE",
                hint="check the passphrase",
            ) from e
        raise UsageError(
            "REMORA_SFTP_PRIVATE_KEY is not a private key",
            hint="paste a whole ed25519, ECDSA or RSA private key, OpenSSH or PEM, BEGIN/END lines included",
        ) from e


def _decode(data: bytes, password: bytes | None):
    if b"-----BEGIN OPENSSH PRIVATE KEY-----" in data:
        return serialization.load_ssh_private_key(data, password)
    return serialization.load_pem_private_key(data, password)


def _encrypted(data: bytes) -> bool:
    try:
        _decode(data, None)
    except TypeError:
        return True
    except (ValueError, UnsupportedAlgorithm):
        return False
    return False
