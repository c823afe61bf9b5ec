"""SFTP upload of the same ciphertext: the runner's SFTP target against OpenSSH's sftp, one cipher."""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.commands import timed
from bench.context import Bench
from bench.measure import Figure, Goal, Sample, ratios, rounds, values
from runner.config import Config
from runner.targets import open_target
from runner.transfer import upload_stream
from tests.helpers import base_env
from tests.servers.sshd import sftp_env

ORDER = 30
TITLE = "SFTP upload"
CIPHER = "aes128-gcm@openssh.com"  # OpenSSH is told to use it; the runner prefers it already
_OPENSSH_CIPHER = re.compile(rb"kex: client->server cipher: (\S+)")


def run(bench: Bench) -> list[Figure]:
    ciphertext = bench.prepared_backup.ciphertext
    mib = ciphertext.stat().st_size / 2**20
    ciphers: dict[str, set[str]] = {"OpenSSH": set(), "runner": set()}
    variants = {
        "openssh": functools.partial(_openssh, bench, ciphertext, ciphers["OpenSSH"]),
        "runner": functools.partial(_runner, bench, ciphertext, ciphers["runner"]),
    }
    samples = rounds(variants, repeats=bench.settings.repeats, log=lambda m: bench.log(f"sftp: {m}"))
    runner_speed = [mib / s for s in values(samples["runner"], "s")]
    openssh_speed = [mib / s for s in values(samples["openssh"], "s")]
    used = ", ".join(f"{who} {'/'.join(sorted(names)) or 'unknown'}" for who, names in ciphers.items())
    if ciphers["OpenSSH"] != ciphers["runner"]:
        used += " (not the same: the comparison is not like for like)"
    return [Figure(
        row="sftp", name=f"SFTP upload of {mib:.0f} MiB of the runner's ciphertext (runner.transfer, paramiko)",
        unit="MiB/s", candidate=runner_speed,
        baseline_name=f"OpenSSH `sftp -b` put, `-c {CIPHER}`, same server",
        baseline=openssh_speed, ratio_name="runner / OpenSSH (speed)", ratios=ratios(runner_speed, openssh_speed),
        goal=Goal("≥ 0.5×", at_least=0.5), notes=f"ciphers: {used}; both times include connecting and logging in",
    )]


def _openssh(bench: Bench, ciphertext: Path, ciphers: set[str]) -> Sample:
    """``sftp -b`` putting the file, in batch mode, with the pinned host key and the client key."""
    sshd = bench.servers.sshd
    with _folder(bench, "openssh") as folder, tempfile.TemporaryFile() as stderr:
        batch = bench.work / "sftp.batch"
        batch.write_text(f'put "{ciphertext}" "{folder}/upload"\n')
        argv = ["sftp", "-v", "-b", str(batch), "-c", CIPHER, "-F", "/dev/null", "-P", str(sshd.port),
                "-i", str(_file(bench.work / "client_key", sshd.client_private_key)),
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={_file(bench.work / 'known_hosts', sshd.known_hosts_line)}",
                "-o", "GlobalKnownHostsFile=/dev/null", f"{sshd.user}@{sshd.host}"]
        sample = timed(argv, env=base_env(), timeout=bench.timeout(bench.main_size), stderr=stderr)
        stderr.seek(0)
        ciphers.update(name.decode() for name in _OPENSSH_CIPHER.findall(stderr.read()))
    return sample


def _runner(bench: Bench, ciphertext: Path, ciphers: set[str]) -> Sample:
    """The runner's SFTP target reading the file as it reads gpg's output: upload_stream, in process."""
    with _folder(bench, "runner") as folder, _paramiko_ciphers(ciphers):
        config = Config.from_env(sftp_env(bench.servers.sshd, folder))
        started = time.monotonic()
        with open_target(config) as target, open(ciphertext, "rb") as source:
            upload = target.begin("upload")
            upload_stream(source, upload, in_flight=target.max_in_flight)
            upload.complete()
        return {"s": time.monotonic() - started}


@contextlib.contextmanager
def _folder(bench: Bench, who: str) -> Iterator[Path]:
    """An empty folder on the SFTP server, removed afterwards."""
    folder = bench.servers.sshd.root / f"{who}-{secrets.token_hex(4)}"
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _file(path: Path, text: str) -> Path:
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(text.strip() + "\n")
    return path


class _CipherLog(logging.Handler):
    """Keeps the cipher paramiko logs when it agrees on one ("Cipher: aes128-gcm@openssh.com")."""

    def __init__(self, ciphers: set[str]):
        super().__init__(logging.DEBUG)
        self.ciphers = ciphers

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Cipher: "):
            self.ciphers.add(message.removeprefix("Cipher: "))


@contextlib.contextmanager
def _paramiko_ciphers(ciphers: set[str]) -> Iterator[None]:
    """Hear paramiko's debug lines while the block runs, and keep them from any other handler."""
    logger = logging.getLogger("paramiko.transport")
    handler, level, propagate = _CipherLog(ciphers), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
