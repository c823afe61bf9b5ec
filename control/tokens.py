"""Tokens: generated at random, stored as SHA-256 hashes, compared in constant time.

What must be used again (Heroku's OAuth tokens, alert webhook URLs, a Heroku resource's API
token) is sealed instead: Fernet, with a key derived (HKDF) from REMORA_SECRET_KEY. Every key in
REMORA_PREVIOUS_SECRET_KEYS still opens what it sealed, so the key can be rotated:
``remora-control rotate-keys`` seals everything again with the current key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class Unreadable(Exception):
    """A sealed value that no configured key opens (a key was dropped before ``rotate-keys`` ran)."""


def new_token() -> str:
    return secrets.token_urlsafe(32)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def matches(token: str, stored: bytes | None) -> bool:
    """Whether ``token`` hashes to ``stored``, in constant time (a run not claimed yet has no token)."""
    return stored is not None and hmac.compare_digest(digest(token), bytes(stored))


def same(given: str, expected: str) -> bool:
    """Constant-time equality of two strings (an empty expected value never matches)."""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def _fernet(secret_key: str) -> Fernet:
    # a separate key for encryption, so that the session-signing key is never used for both
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"remora oauth tokens").derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def _keyring(config: Mapping) -> MultiFernet:
    """The current key first (it seals), then the previous ones (they only open)."""
    return MultiFernet([_fernet(key) for key in (config["SECRET_KEY"], *config.get("SECRET_KEY_FALLBACKS", ()))])


def seal(config: Mapping, value: str) -> bytes:
    return _keyring(config).encrypt(value.encode())


def unseal(config: Mapping, value: bytes) -> str:
    try:
        return _keyring(config).decrypt(bytes(value)).decode()
    except InvalidToken as e:
        raise Unreadable("no configured key opens it (is REMORA_PREVIOUS_SECRET_KEYS missing a key?)") from e


def reseal(config: Mapping, value: bytes) -> bytes:
    """``value`` sealed again with the current key."""
    try:
        return _keyring(config).rotate(bytes(value))
    except InvalidToken as e:
        raise Unreadable("no configured key opens it (is REMORA_PREVIOUS_SECRET_KEYS missing a key?)") from e
