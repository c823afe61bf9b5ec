"""gpg keys generated for the test session, in throwaway GNUPGHOMEs."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from tests.servers.util import require_tool


@dataclasses.dataclass(frozen=True)
class GpgKey:
    home: Path  # a GNUPGHOME holding the private key, for decrypting with plain gpg
    fingerprint: str
    public: str  # ASCII-armored
    private: str  # ASCII-armored
    passphrase: str | None

    def gpg(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        """Run plain gpg against this key's home, as a customer would."""
        argv = ["gpg", "--homedir", str(self.home), "--batch", "--no-tty"]
        if self.passphrase:
            passfile = self.home / "passphrase"
            passfile.write_text(self.passphrase)
            argv += ["--pinentry-mode", "loopback", "--passphrase-file", str(passfile)]
        return subprocess.run(argv + list(args), check=False, capture_output=True, **kwargs)


def make_key(home: Path, user_id: str, *, passphrase: str | None = None, algo: str = "future-default",
             usage: str = "default", expire: str = "never", made_at: str | None = None) -> GpgKey:
    """Generate a key in a new GNUPGHOME, export it, return it.

    ``made_at`` (e.g. "20200101T000000") makes it as if it were then: an old key that has expired.
    """
    require_tool("gpg")
    home.mkdir(mode=0o700, parents=True)
    # gpg-agent calibrates how long to hash a passphrase; on some machines that goes wrong (here
    # it took 6 s) and every use of a protected key then takes seconds: a test key needs no such care
    (home / "gpg-agent.conf").write_text("s2k-count 65536\n")
    base = ["gpg", "--homedir", str(home), "--batch", "--no-tty", "--pinentry-mode", "loopback",
            "--passphrase", passphrase or ""]
    made = ["--faked-system-time", made_at] if made_at else []
    subprocess.run(base + made + ["--quick-gen-key", user_id, algo, usage, expire], check=True, capture_output=True)
    listing = subprocess.run(base + ["--with-colons", "--list-secret-keys"], check=True, capture_output=True,
                             text=True).stdout
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    public = subprocess.run(base + ["--armor", "--export", fingerprint], check=True, capture_output=True,
                            text=True).stdout
    private = subprocess.run(base + ["--armor", "--export-secret-keys", fingerprint], check=True,
                             capture_output=True, text=True).stdout
    return GpgKey(home=home, fingerprint=fingerprint, public=public, private=private, passphrase=passphrase)


def revoked(key: GpgKey) -> str:
    """``key``'s public key with its revocation certificate (the one gpg made with it) applied."""
    [certificate] = (key.home / "openpgp-revocs.d").glob("*.rev")
    # gpg puts a ':' before the BEGIN line so that the certificate is not imported by accident
    text = certificate.read_text().replace(":-----BEGIN PGP PUBLIC KEY BLOCK", "-----BEGIN PGP PUBLIC KEY BLOCK")
    key.gpg("--import", input=text.encode()).check_returncode()
    return key.gpg("--armor", "--export", key.fingerprint, text=True).stdout


def stop_agent(home: Path) -> None:
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, check=False)


@pytest.fixture(scope="session")
def gpg_key(tmp_path_factory) -> GpgKey:
    """The customer's key pair (no passphrase)."""
    key = make_key(tmp_path_factory.mktemp("gpg") / "customer", "Customer DBA <dba@example.com>")
    yield key
    stop_agent(key.home)


@pytest.fixture(scope="session")
def escrow_key(tmp_path_factory) -> GpgKey:
    """A second recipient with a passphrase, as a company's escrow key would have."""
    key = make_key(tmp_path_factory.mktemp("gpg") / "escrow", "Escrow <escrow@example.com>",
                   passphrase="escrow-passphrase-" + "x" * 8)
    yield key
    stop_agent(key.home)


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory) -> GpgKey:
    """The helper app's signing key: ed25519, sign only, no passphrase (the config vars beside it hold the key)."""
    key = make_key(tmp_path_factory.mktemp("gpg") / "signer", "Acme backup signer <signer@example.com>",
                   algo="ed25519", usage="sign")
    yield key
    stop_agent(key.home)


def signing_env(key: GpgKey) -> dict[str, str]:
    """Sign backups with ``key``, and accept only backups it signed."""
    return {"REMORA_GPG_SIGNING_KEY": key.private, "REMORA_GPG_SIGNERS": key.public,
            **({"REMORA_GPG_SIGNING_PASSPHRASE": key.passphrase} if key.passphrase else {})}


@pytest.fixture
def gpg_env(gpg_key, signing_key) -> dict[str, str]:
    """What the runner needs to encrypt to, and to decrypt from, the customer's key; backups signed and checked."""
    return {"REMORA_GPG_PUBLIC_KEYS": gpg_key.public, "REMORA_GPG_PRIVATE_KEY": gpg_key.private,
            **signing_env(signing_key)}


@pytest.fixture(scope="session")
def odd_keys(tmp_path_factory) -> dict[str, GpgKey]:
    """Armored public keys that must not be encrypted to, or only with a warning, by what is odd about them."""
    base = tmp_path_factory.mktemp("odd-gpg")
    made = {
        "expired": make_key(base / "expired", "Expired <old@example.com>", expire="2d", made_at="20200101T000000"),
        "sign-only": make_key(base / "sign", "Signer <sign@example.com>", algo="ed25519", usage="sign"),
        "expiring": make_key(base / "expiring", "Expiring <soon@example.com>", expire="10d"),
        "revoked": make_key(base / "revoked", "Revoked <gone@example.com>"),
        "weak": make_key(base / "weak", "Weak <weak@example.com>", algo="rsa1024", usage="sign,encr"),
        "rsa2048": make_key(base / "rsa2048", "Old RSA <rsa2048@example.com>", algo="rsa2048", usage="sign,encr"),
    }
    yield {**made, "revoked": dataclasses.replace(made["revoked"], public=revoked(made["revoked"]))}
    for key in made.values():
        stop_agent(key.home)
