"""Tokens: generated at random, stored as SHA-256 hashes, compared in constant time.

OAuth tokens from Heroku must be used again, so they are stored encrypted (Fernet) with a key
derived from REMORA_SECRET_KEY instead.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def new_token() -> str:
    return secrets.token_urlsafe(32)


def derived(secret_key: str, purpose: str, subject: str) -> str:
    """A token that the same key, purpose and subject always give again (HMAC-SHA256)."""
    mac = hmac.new(secret_key.encode(), f"{purpose}:{subject}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def matches(token: str, stored: bytes) -> bool:
    """Whether ``token`` hashes to ``stored``, in constant time."""
    return hmac.compare_digest(digest(token), bytes(stored))


def same(given: str, expected: str) -> bool:
    """Constant-time equality of two strings (an empty expected value never matches)."""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def _fernet(secret_key: str) -> Fernet:
    # a separate key for encryption, so that the session-signing key is never used for both
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"remora oauth tokens").derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(secret_key: str, value: str) -> bytes:
    return _fernet(secret_key).encrypt(value.encode())


def decrypt(secret_key: str, value: bytes) -> str:
    return _fernet(secret_key).decrypt(bytes(value)).decode()
