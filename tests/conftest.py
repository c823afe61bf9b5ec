"""Fixtures that start the real things: PostgreSQL, gpg, sshd and an S3 server (SeaweedFS)."""

pytest_plugins = [
    "tests.servers.postgres",
    "tests.servers.gpg",
    "tests.servers.sshd",
    "tests.servers.seaweed",
]
