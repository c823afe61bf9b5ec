"""A real OpenSSH sshd on a free loopback port, with its own host key, config and client key.

``sshd_server`` runs for the whole session; ``running_sshd`` starts a private one for tests that
kill it. A missing sshd or ssh-keygen fails the run: a quiet skip would hide an untested target.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import pwd
import re
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.servers.util import free_port, require_tool

SSHD = "/usr/sbin/sshd"
HOST = "127.0.0.1"
_READY_SECONDS = 15


@dataclasses.dataclass
class SSHServer:
    host: str
    port: int
    user: str
    known_hosts_line: str  # "[127.0.0.1]:PORT ssh-ed25519 AAAA..."
    client_private_key: str  # an unencrypted ed25519 key that may log in as ``user``
    root: Path  # a folder for uploads
    authorized_keys: Path
    log: Path
    process: subprocess.Popen

    def authorize(self, public_key: str) -> None:
        """Let another client key log in; sshd reads authorized_keys afresh at every login."""
        with self.authorized_keys.open("a") as f:
            f.write(public_key.strip() + "\n")

    def url(self, path: Path | str) -> str:
        """The sftp:// URL of ``path`` on this server."""
        return f"sftp://{self.user}@{self.host}:{self.port}{path}"

    def drop_connections(self) -> None:
        """Kill the sshd processes serving logins, as a cut network would; the listener stays."""
        _kill(_descendants(self.process.pid), signal.SIGKILL)

    def stop(self) -> None:
        """Stop sshd and every login it serves, and reap it. Safe to call twice."""
        if self.process.poll() is not None:
            return
        # sshd puts each login in a session of its own, out of reach of the listener's death and
        # of its process group: stop them one by one, first, so that the listener reaps them.
        logins = _descendants(self.process.pid)
        _kill(logins, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and set(logins) & set(_descendants(self.process.pid)):
            time.sleep(0.02)
        _kill([self.process.pid], signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _kill([self.process.pid], signal.SIGKILL)
            self.process.wait()

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])


def keygen(path: Path, kind: str = "ed25519", *, passphrase: str = "", options: tuple = ()) -> tuple[str, str]:
    """Generate a key pair with ssh-keygen; return the private key's text and the public line."""
    argv = [str(require_tool("ssh-keygen")), "-q", "-t", kind, "-N", passphrase, "-C", "remora-test", "-f", str(path)]
    subprocess.run([*argv, *options], check=True, stdin=subprocess.DEVNULL, capture_output=True)
    return path.read_text(), Path(f"{path}.pub").read_text().strip()


@contextlib.contextmanager
def running_sshd(directory: Path, *, niceness: int = 0):
    """Run an sshd whose keys, config, pid file and log all live under ``directory``.

    ``niceness``: its CPU priority (and its sessions'), lowered (as by ``nice``) for the benchmark.
    """
    sshd = str(require_tool(SSHD))
    directory.mkdir(parents=True, exist_ok=True)
    _, host_public = keygen(directory / "host_ed25519")
    client_private, client_public = keygen(directory / "client_ed25519")
    authorized = directory / "authorized_keys"
    authorized.write_text(client_public + "\n")
    (directory / "root").mkdir()
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
    port = free_port()
    config = directory / "sshd_config"
    config.write_text(_config(sshd, directory, port))
    log = directory / "sshd.log"
    user = pwd.getpwuid(os.geteuid()).pw_name
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sshd, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=functools.partial(os.nice, niceness),
        )
    server = SSHServer(
        host=HOST,
        port=port,
        user=user,
        known_hosts_line=f"[{HOST}]:{port} " + " ".join(host_public.split()[:2]),
        client_private_key=client_private,
        root=directory / "root",
        authorized_keys=authorized,
        log=log,
        process=process,
    )
    try:
        _wait_ready(server)
        yield server
    finally:
        server.stop()


def _config(sshd: str, directory: Path, port: int) -> str:
    lines = [
        f"Port {port}",
        f"ListenAddress {HOST}",
        f'HostKey "{directory / "host_ed25519"}"',
        f'PidFile "{directory / "sshd.pid"}"',
        f'AuthorizedKeysFile "{directory / "authorized_keys"}"',
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",  # pytest's tmp folders are not laid out as sshd would like ~/.ssh
        "PermitRootLogin prohibit-password",  # CI runs as root
        "Subsystem sftp internal-sftp",
        "MaxStartups 100",
        "LogLevel VERBOSE",
    ]
    if _openssh_version(sshd) >= (9, 8):
        # Tests refuse host keys on purpose; 9.8's penalties would then shut 127.0.0.1 out.
        lines.append("PerSourcePenalties no")
    return "\n".join(lines) + "\n"


def _openssh_version(sshd: str) -> tuple[int, int]:
    banner = subprocess.run([sshd, "-V"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", banner.stderr + banner.stdout)
    return (int(match[1]), int(match[2])) if match else (0, 0)


def _wait_ready(server: SSHServer) -> None:
    """Wait until sshd accepts a connection and sends its SSH banner."""
    deadline = time.monotonic() + _READY_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"sshd exited with {server.process.returncode}:\n{server.log_tail()}", pytrace=False)
        with contextlib.suppress(OSError), socket.create_connection((server.host, server.port), timeout=2) as s:
            if s.makefile("rb").readline().startswith(b"SSH-2.0-"):
                return
        time.sleep(0.05)
    pytest.fail(f"sshd did not answer on {server.host}:{server.port}:\n{server.log_tail()}", pytrace=False)


def _descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for path in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # the command name may hold spaces and parentheses; the parent pid follows the last ')'
            parents[int(path.parent.name)] = int(path.read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _kill(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def sftp_env(server: SSHServer, folder: Path | str) -> dict[str, str]:
    """Runner variables for an SFTP target at ``folder`` on ``server``."""
    return {
        "REMORA_TARGET_URL": server.url(folder),
        "REMORA_SFTP_PRIVATE_KEY": server.client_private_key,
        "REMORA_SFTP_KNOWN_HOSTS": server.known_hosts_line,
    }


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory) -> SSHServer:
    """A real OpenSSH sshd on a free loopback port, shared by the whole test session."""
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture
def sftp_target_env(sshd_server: SSHServer) -> dict[str, str]:
    """Runner variables pointing at a fresh, empty folder on the test sshd."""
    folder = sshd_server.root / uuid.uuid4().hex[:12]
    folder.mkdir()
    return sftp_env(sshd_server, folder)
