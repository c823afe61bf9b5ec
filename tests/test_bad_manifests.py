"""Manifests are data from a stranger: each malformed one is skipped by ``list``, exits 7 elsewhere, and does no harm.

Each case plants one manifest, as the newest backup, in a target that also holds a good one.
The runner must write nothing anywhere (it runs with TMPDIR inside the test's folder, and the
folder is compared before and after), print no traceback and no raw control character, and
keep its memory bounded however large the manifest is.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from runner import catalog
from runner.manifest import Manifest
from tests.helpers import ok, peak_rss_mib, remora

GOOD = Manifest(id="20260101T030000Z-0a0b0c", label="shop", database="shop", server_version="15.8",
                pg_dump_version=15, archive_format="custom", compression="3", recipients=["A" * 40], dump_bytes=10,
                encrypted_bytes=19, sha256="0" * 64, started_at="2026-01-01T03:00:00Z",
                finished_at="2026-01-01T03:00:01Z", runner_version="0.1.0")
PLANTED_ID = "20260102T030000Z-0d0e0f"  # newer: it is `latest`
ESCAPES = "\x1b]0;owned\x07\x1b[2J\u202e"


def fields(**changes) -> bytes:
    """The planted manifest: the good one's fields under the planted id, with ``changes``."""
    data = {**dataclasses.asdict(GOOD), "id": PLANTED_ID, **changes}
    return json.dumps(data).encode()


CASES = {  # name -> (the planted manifest's bytes, given the test folder; what the error names)
    "traversal id": (lambda tmp: fields(id="../../../escaped"), "id '../../../escaped' has not the expected form"),
    "absolute id": (lambda tmp: fields(id=str(tmp / "victim")), "id '/"),
    "wrong type": (lambda tmp: fields(encrypted_bytes="19"), "encrypted_bytes '19' must be a whole number"),
    "mismatched label": (lambda tmp: fields(label="other"), "label 'other' is not the label of its key, shop"),
    # escaped by the runner, then logfmt doubles each backslash
    "escape sequences in the label": (lambda tmp: fields(label=ESCAPES), r"label '\\x1b]0;owned\\x07\\x1b[2J"),
    "not JSON": (lambda tmp: b"\x1b[2J{", "is not JSON"),
}


@pytest.fixture
def planted(tmp_path) -> dict[str, str]:
    """A target holding a good manifest; TMPDIR inside the test's folder, so that any stray file shows."""
    (tmp_path / "tmp").mkdir()
    (tmp_path / "victim.dump.gpg").write_bytes(b"someone else's file")
    folder = tmp_path / "backups"
    (folder / catalog.manifest_key(GOOD.label, GOOD.id)).parent.mkdir(parents=True)
    (folder / catalog.manifest_key(GOOD.label, GOOD.id)).write_bytes(GOOD.to_bytes())
    return {"REMORA_TARGET_URL": f"file://{folder}", "REMORA_LABEL": "shop", "TMPDIR": str(tmp_path / "tmp"),
            "REMORA_GPG_PRIVATE_KEY": "unused", "TO_URL": "postgresql://nobody@127.0.0.1:1/nothing"}


def plant(env: dict[str, str], data: bytes) -> str:
    key = catalog.manifest_key("shop", PLANTED_ID)
    path = Path(env["REMORA_TARGET_URL"].removeprefix("file://")) / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return key


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_refused_without_harm(env: dict[str, str], tmp_path: Path, key: str, problem: str) -> None:
    before = snapshot(tmp_path)
    listed = ok(remora("list", env=env))
    assert GOOD.id in listed.stdout and PLANTED_ID not in listed.stdout
    [warning] = [line for line in listed.stderr.splitlines() if "skipped" in line]
    assert f"skipped: manifest {key} " in warning and problem in warning, warning
    output = tmp_path / "out.dump"
    for args in (["restore", "latest", "--to", "TO_URL"], ["verify", "latest"],
                 ["download", "latest", "--output", str(output), "--decrypt"]):
        result = remora(*args, env=env)
        assert result.returncode == 7, (args, result.stderr)
        [line] = result.stderr.splitlines()
        assert key in line and problem in line, (args, line)
    for result in (listed, result):
        assert "Traceback" not in result.stderr and "\x1b" not in result.stdout + result.stderr
    assert snapshot(tmp_path) == before  # nothing written, nothing truncated, nothing removed


@pytest.mark.parametrize("make, problem", CASES.values(), ids=CASES.keys())
def test_a_malformed_manifest_is_skipped_or_refused_and_does_no_harm(make, problem, planted, tmp_path):
    key = plant(planted, make(tmp_path))
    assert_refused_without_harm(planted, tmp_path, key, problem)


def test_an_oversized_manifest_is_never_read_whole(planted, tmp_path):
    normal = peak_rss_mib(ok(remora("list", env=planted, peak=True)))
    key = plant(planted, b"")
    path = Path(planted["REMORA_TARGET_URL"].removeprefix("file://")) / key
    with open(path, "r+b") as file:  # 300 MB, sparse: no disk, and what a reader reads is real bytes all the same
        file.truncate(300 * 1024 * 1024)
    assert_refused_without_harm(planted, tmp_path, key, "is larger than 65536 bytes: not a manifest")
    for args in (["list"], ["verify", "latest"]):
        peak = peak_rss_mib(remora(*args, env=planted, peak=True))
        assert peak < normal + 16, f"{args[0]}: {peak:.0f} MiB at its peak, {normal:.0f} MiB for a normal list"


def test_control_characters_in_a_valid_manifest_are_shown_escaped(planted, tmp_path):
    plant(planted, fields(database=ESCAPES, runner_version="0.1.0"))
    listed = ok(remora("list", env=planted))
    [line] = [line for line in listed.stdout.splitlines() if PLANTED_ID in line]
    assert r"\x1b]0;owned\x07\x1b[2J\u202e" in line and "PostgreSQL 15.8" in line
    as_json = ok(remora("list", "--json", env=planted)).stdout
    assert json.loads(as_json)[-1]["database"] == ESCAPES and "\x1b" not in as_json
    refused = remora("restore", "latest", "--to", "TO_URL", env=planted)  # unsigned: refused, and said safely
    assert refused.returncode == 7 and "\x1b" not in refused.stderr
    assert os.listdir(tmp_path / "tmp") == []
