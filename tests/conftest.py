"""Fixtures that start the real things: PostgreSQL, gpg, sshd and an S3 server (SeaweedFS)."""

pytest_plugins = [
    "tests.servers.postgres",
    "tests.servers.gpg",
    "tests.servers.sshd",
    "tests.servers.seaweed",
    "tests.servers.heroku",
    "tests.controlplane",
    "tests.managed",
]

import pytest


@pytest.fixture(params=["file_target_env", "s3_target_env", "sftp_target_env"], ids=["file", "s3", "sftp"])
def target_env(request) -> dict[str, str]:
    """Each target in turn: a fresh folder, S3 bucket or SFTP folder."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def file_target_env(tmp_path) -> dict[str, str]:
    """A fresh folder target."""
    folder = tmp_path / "backups"
    folder.mkdir()
    return {"REMORA_TARGET_URL": f"file://{folder}"}
