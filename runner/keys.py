"""Judging OpenPGP keys before they are used: armor, purpose, validity, expiry and strength.

A key a customer pastes is hostile until judged: a recipient must be able to encrypt, a signer
to sign, neither may be revoked, expired or too weak to trust, and a public-key variable must not
smuggle in a private key. python-gnupg lists the keys (gpg's colon listing); this module decides.
"""

from __future__ import annotations

import dataclasses
import datetime
import re

import structlog

from runner.errors import UsageError

log = structlog.get_logger()
EXPIRY_WARNING = datetime.timedelta(days=30)
REFUSED_BITS = 2048  # RSA, DSA and ElGamal below this are refused
WEAK_BITS = 3072  # and below this warned about: NIST's 128-bit level starts at 3072
_FACTORING = {"1": "RSA", "2": "RSA", "3": "RSA", "16": "ElGamal", "20": "ElGamal", "17": "DSA"}
_USES = {  # gpg's capability letter, the noun, and how to add a subkey for it
    "encrypt": ("E", "encryption", "cv25519 encr"),
    "sign": ("S", "signing", "ed25519 sign"),
}


@dataclasses.dataclass(frozen=True)
class Key:
    fingerprint: str  # the primary key's
    user_id: str
    expires: datetime.datetime | None  # when it can no longer be used for its purpose


_ARMOR = re.compile(r"-----BEGIN PGP ([A-Z ]+?)-----.*?-----END PGP \1-----", re.DOTALL)


def blocks(armored: str, variable: str, *, kind: str) -> list[str]:
    """The ASCII-armored key blocks of ``armored`` (``kind``: "PUBLIC" or "PRIVATE"); anything else is an error."""
    matches = list(_ARMOR.finditer(armored))
    wanted = f"{kind} KEY BLOCK"
    for number, match in enumerate(matches, 1):
        if match.group(1) == "PRIVATE KEY BLOCK" and kind == "PUBLIC":
            raise UsageError(
                f"{variable}: key block {number} is a private key; only public keys belong here",
                hint="export the public key with gpg --armor --export KEY, and keep the private one safe",
            )
        if match.group(1) != wanted:
            raise UsageError(f"{variable}: block {number} is a PGP {match.group(1)}, not a {kind.lower()} key block")
    export = "gpg --armor --export KEY" if kind == "PUBLIC" else "gpg --armor --export-secret-keys KEY"
    rest = _ARMOR.sub("", armored).strip()
    if rest or not matches:
        problem = "holds text outside its key blocks" if matches else f"holds no ASCII-armored {kind.lower()} key"
        if "-----BEGIN PGP" in rest:
            problem = f"key block {len(matches) + 1} has no END line"
        raise UsageError(f"{variable} {problem}", hint=f"paste the whole output of {export}")
    return [match.group(0) for match in matches]


def judge(key: dict, variable: str, *, use: str) -> Key:
    """The key, if it can be used to ``use`` ("encrypt" or "sign"); a UsageError naming it otherwise.

    One that expires within 30 days, or that is weak, is a warning.
    """
    user_id = key["uids"][0] if key["uids"] else "(no user id)"
    named = f"{variable}: key {user_id} {key['fingerprint']}"
    problem = _unusable(key, use) or _too_weak(key)
    if problem is not None:
        what, hint = problem
        raise UsageError(f"{named} {what}", hint=hint)
    if (weak := _weakest(key)) is not None and weak[0] < WEAK_BITS:
        log.warning(f"{named} uses a {weak[0]}-bit {weak[1]} key; below {WEAK_BITS} bits it is weak",
                    hint="plan a new key: gpg --quick-gen-key NAME future-default makes an ed25519 one")
    expires = _expiry(key, use)
    if expires is not None and expires - datetime.datetime.now(datetime.timezone.utc) < EXPIRY_WARNING:
        log.warning(
            f"{named} expires on {expires:%Y-%m-%d}",
            hint="extend it with gpg --quick-set-expire FPR 1y (and with '*' for its subkeys), then export it again",
        )
    return Key(fingerprint=key["fingerprint"], user_id=user_id, expires=expires)


def _unusable(key: dict, use: str) -> tuple[str, str] | None:
    """What makes ``key`` impossible to ``use``, and what to do, or None if it is usable."""
    letter, noun, algo = _USES[use]
    renew = "extend it with gpg --quick-set-expire, or make a new key, and export it again"
    add_one = f"add one with gpg --quick-add-key FPR {algo}, and export the key again"
    validity = key.get("trust", "")
    if validity == "r":
        return "is revoked", f"use another key: a revoked key must not be used to {use}"
    if validity == "e":
        return f"expired on {_date(int(key['expires']))}", renew
    if validity in ("i", "d"):
        return "is not valid (bad self-signature)" if validity == "i" else "is disabled", "export the key again"
    if letter in key.get("cap", ""):  # gpg's capital letters: a usable capability of the key as a whole
        return None
    subkeys = [info for info in key.get("subkey_info", {}).values() if letter.lower() in info.get("cap", "")]
    if not subkeys and letter.lower() not in key.get("cap", ""):
        other = "it can only sign" if use == "encrypt" else "it can only encrypt"
        return f"has no {noun} key ({other})", add_one
    expired = [int(info["expires"]) for info in subkeys if info.get("trust") == "e" and info.get("expires")]
    if expired:
        return f"has only expired {noun} subkeys (the last on {_date(max(expired))})", renew
    return f"has no usable {noun} subkey (each is revoked or invalid)", add_one


def _too_weak(key: dict) -> tuple[str, str] | None:
    weak = _weakest(key)
    if weak is None or weak[0] >= REFUSED_BITS:
        return None
    bits, name = weak
    return (f"uses a {bits}-bit {name} key; keys below {REFUSED_BITS} bits are refused",
            "make a new key: gpg --quick-gen-key NAME future-default (ed25519), or RSA of 3072 bits or more")


def _weakest(key: dict) -> tuple[int, str] | None:
    """The smallest (bits, algorithm) among the key's RSA, DSA and ElGamal parts; None if it has none.

    Every part counts, the primary key too: whoever can forge the primary's signatures can bind
    a subkey of their own to it.
    """
    parts = [key, *key.get("subkey_info", {}).values()]
    sizes = [(int(part.get("length") or 0), _FACTORING[part.get("algo")]) for part in parts
             if part.get("algo") in _FACTORING]
    return min(sizes) if sizes else None


def _expiry(key: dict, use: str) -> datetime.datetime | None:
    """When the key stops being usable to ``use``: its own expiry, or its last such subkey's."""
    letter = _USES[use][0].lower()
    limits = [int(key["expires"])] if key.get("expires") else []
    subkeys = [info for info in key.get("subkey_info", {}).values()
               if letter in info.get("cap", "") and info.get("trust") not in ("e", "r")]
    if subkeys and letter not in key.get("cap", "") and all(info.get("expires") for info in subkeys):
        limits.append(max(int(info["expires"]) for info in subkeys))
    return datetime.datetime.fromtimestamp(min(limits), datetime.timezone.utc) if limits else None


def _date(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%d")
