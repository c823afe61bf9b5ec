"""The keys: each usable for its purpose and strong enough; one about to expire, or weak, is a warning only."""

from __future__ import annotations

import datetime
import json
import re

import pytest
import structlog

from runner import crypto
from runner.errors import UsageError
from tests.helpers import base_env, ok, remora
from tests.servers.gpg import signing_env


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


@pytest.mark.parametrize("use, variable", [("encrypt", "REMORA_GPG_PUBLIC_KEYS"), ("sign", "REMORA_GPG_SIGNERS")])
def test_weak_keys_are_refused_below_2048_bits_and_warned_about_below_3072(odd_keys, use, variable):
    weak, smallish = odd_keys["weak"], odd_keys["rsa2048"]
    with structlog.testing.capture_logs() as logged:
        with crypto.Keyring(base_env()) as keyring, pytest.raises(UsageError) as refused:
            keyring.import_public(weak.public, variable=variable, use=use)
        with crypto.Keyring(base_env()) as keyring:
            [key] = keyring.import_public(smallish.public, variable=variable, use=use)
    assert re.fullmatch(rf"{variable}: key Weak <weak@example.com> {weak.fingerprint} uses a "
                        r"1024-bit RSA key; keys below 2048 bits are refused", refused.value.message)
    assert key.fingerprint == smallish.fingerprint
    [warning] = [event["event"] for event in logged if event["log_level"] == "warning"]
    assert warning.endswith(f"{smallish.fingerprint} uses a 2048-bit RSA key; below 3072 bits it is weak")


def test_a_private_key_in_public_key_armor_is_refused(gpg_key):
    disguised = gpg_key.private.replace("PRIVATE KEY BLOCK", "PUBLIC KEY BLOCK")
    with crypto.Keyring(base_env()) as keyring, pytest.raises(UsageError, match="key block 1 holds a private key"):
        keyring.import_public(disguised)


def test_check_judges_the_signing_key(database_env, file_target_env, gpg_key, signing_key, escrow_key, odd_keys):
    env = {**database_env, **file_target_env, "REMORA_GPG_PUBLIC_KEYS": gpg_key.public}
    cases = [  # what is wrong, the exit code, what the signing line says
        ({**signing_env(signing_key), "REMORA_GPG_SIGNERS": escrow_key.public}, 2,
         f"REMORA_GPG_SIGNERS does not hold the signing key {signing_key.fingerprint}"),
        ({"REMORA_GPG_SIGNING_KEY": escrow_key.private, "REMORA_GPG_SIGNING_PASSPHRASE": "planted-wrong-passphrase"},
         5, "check REMORA_GPG_SIGNING_PASSPHRASE"),
        ({"REMORA_GPG_SIGNING_KEY": odd_keys["weak"].private}, 2, "uses a 1024-bit RSA key; keys below 2048"),
        ({"REMORA_GPG_SIGNING_KEY": signing_key.public}, 2,
         "REMORA_GPG_SIGNING_KEY: block 1 is a PGP PUBLIC KEY BLOCK"),
    ]
    for tweak, code, says in cases:
        result = remora("check", env={**env, **tweak})
        [line] = [line for line in result.stdout.splitlines() if line.startswith("signing")]
        assert result.returncode == code and line.startswith("signing     FAIL") and says in line, result.stdout
        assert "planted-wrong-passphrase" not in result.stdout + result.stderr
