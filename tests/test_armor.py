"""Keys pasted into a single-line field (the Deploy button's form) lose their line breaks; they still work.

gpg's armor is rebuilt (runner/armor.py); SSH keys are read flat by their parser as they are.
"""

from __future__ import annotations

import pytest

from runner import armor, crypto
from runner.config import Secret
from runner.errors import UsageError
from runner.targets import sshkeys
from tests.helpers import base_env
from tests.servers.sshd import keygen

pytestmark = pytest.mark.parametrize("flatten", [
    pytest.param(lambda text: text.replace("\r", "").replace("\n", ""), id="line-breaks-stripped"),  # a browser
    pytest.param(lambda text: " ".join(text.split("\n")), id="line-breaks-as-spaces"),
])


def test_a_flattened_public_key_is_imported_as_itself(gpg_key, escrow_key, flatten):
    both = gpg_key.public + escrow_key.public
    assert "\n" not in flatten(both)
    with crypto.Keyring(base_env()) as keyring:
        recipients = keyring.import_public(flatten(both))
    assert sorted(r.fingerprint for r in recipients) == sorted([gpg_key.fingerprint, escrow_key.fingerprint])
    assert armor.refold(flatten(gpg_key.public)).strip() == gpg_key.public.strip()


def test_a_flattened_private_key_still_decrypts(gpg_key, escrow_key, flatten):
    with crypto.Keyring(base_env()) as keyring:
        keyring.import_private(flatten(escrow_key.private), passphrase=escrow_key.passphrase)


@pytest.mark.parametrize("kind, options", [("ed25519", ()), ("rsa", ()), ("rsa", ("-m", "PEM")), ("ecdsa", ())])
def test_a_flattened_ssh_key_loads_as_itself(tmp_path, kind, options, flatten):
    text, public = keygen(tmp_path / "key", kind, options=options)
    loaded = sshkeys.private_key(Secret(flatten(text)), None)
    assert f"{loaded.get_name()} {loaded.get_base64()}" == " ".join(public.split()[:2])


def test_an_intact_block_and_other_text_are_left_alone(gpg_key, flatten):
    text = "before\n" + gpg_key.public + "after"
    assert armor.refold(text) == text
    not_base64 = "-----BEGIN PGP PUBLIC KEY BLOCK-----Version: 1 mQ?!-----END PGP PUBLIC KEY BLOCK-----"
    assert armor.refold(not_base64) == not_base64


def test_a_flattened_key_with_headers_fails_as_before(tmp_path, flatten):
    """An old encrypted PEM key carries headers in its block, which cannot be told from its base64."""
    text, _ = keygen(tmp_path / "key", "rsa", passphrase="pw-123456", options=("-m", "PEM"))
    assert "Proc-Type" in text
    with pytest.raises(UsageError, match="REMORA_SFTP_PRIVATE_KEY"):
        sshkeys.private_key(Secret(flatten(text)), Secret("pw-123456"))
