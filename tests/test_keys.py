"""The public keys: each one must be usable for encryption; one about to expire is a warning, not a failure."""

from __future__ import annotations

import datetime
import json
import re

import pytest

from runner import crypto
from runner.errors import UsageError
from tests.helpers import base_env, ok, remora


def test_a_key_expiring_within_30_days_is_a_warning_and_still_a_recipient(database_env, gpg_key, odd_keys,
                                                                        file_target_env):
    expiring = odd_keys["expiring"]
    env = {**database_env, **file_target_env, "REMORA_GPG_PUBLIC_KEYS": gpg_key.public + expiring.public}
    result = ok(remora("backup", env=env))
    warning = re.search(rf"level=warning event=\"REMORA_GPG_PUBLIC_KEYS: key Expiring <soon@example.com> "
                        rf"{expiring.fingerprint} expires on (\d{{4}}-\d\d-\d\d)", result.stderr)
    days_left = datetime.date.fromisoformat(warning.group(1)) - datetime.datetime.now(datetime.timezone.utc).date()
    assert datetime.timedelta(days=9) <= days_left <= datetime.timedelta(days=10)  # it was made to last 10
    [manifest] = json.loads(ok(remora("list", "--json", env=env)).stdout)
    assert sorted(manifest["recipients"]) == sorted([gpg_key.fingerprint, expiring.fingerprint])
    assert f"expires {warning.group(1)}" in ok(remora("check", env=env)).stdout

@pytest.mark.parametrize("text, problem", [
    ("{key}\nsome words after the key", "REMORA_GPG_PUBLIC_KEYS holds text outside its key blocks"),
    ("{key}-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBGRk", "REMORA_GPG_PUBLIC_KEYS key block 2 has no END line"),
    ("-----BEGIN PGP MESSAGE-----\n\nhQEMA\n-----END PGP MESSAGE-----\n", "block 1 is a PGP MESSAGE, not a public key"),
    ("", "REMORA_GPG_PUBLIC_KEYS holds no ASCII-armored public key"),
])
def test_a_public_keys_value_is_all_key_blocks(gpg_key, text, problem):
    with crypto.Keyring(base_env()) as keyring, pytest.raises(UsageError, match=re.escape(problem)):
        keyring.import_public(text.format(key=gpg_key.public))
