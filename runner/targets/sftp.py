"""sftp://user@host[:port]/path — the customer's own SFTP server, over paramiko.

Trust: the server must show a host key pinned in REMORA_SFTP_KNOWN_HOSTS, checked before we
authenticate; an unknown or changed key is refused, never added. The client key comes from
REMORA_SFTP_PRIVATE_KEY and is parsed in memory: no key file, no agent, no ~/.ssh.

Uploads go to ``.NAME.RANDOM.part`` beside the final name (``list`` skips such names). Each part
is written at its offset and confirmed by the file's size; ``complete()`` checks the whole size and
renames with posix-rename@openssh.com, which replaces an existing name in one step (restic's way).

Drops: a failed link is closed and the next call reconnects (same pinned host key, same key), so
a retried call can succeed. The temporary file outlives the connection: a part whose try failed
is sent again on the new one, after a stat has shown that the file still holds every confirmed
part. A link that moves no byte for REMORA_STORAGE_TIMEOUT seconds counts as dropped.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import errno
import io
import itertools
import posixpath
import secrets
import socket
import stat
import time
from collections.abc import Iterator
from typing import BinaryIO
from urllib.parse import SplitResult, unquote

import paramiko
import structlog

from runner.config import Config
from runner.errors import ObjectNotFound, RemoraError, StorageError, TransientStorageError, UsageError
from runner.targets import sshkeys
from runner.targets.base import MIB, Leftover, ObjectInfo, Target, Upload, upload_key_of

log = structlog.get_logger()

_TEMP_SUFFIX = ".part"
_KEEPALIVE = 30  # seconds between keepalive packets, so that NATs and firewalls keep the link
# What the server may send before we acknowledge. Not more: paramiko's channel buffer deletes
# from the front of one array on every read, so a larger window made downloads slower here
# (2 MiB: ~160 MB/s on loopback; 16 MiB: ~30-60 MB/s).
_WINDOW = 2 * MIB
_MAX_PACKET = 64 * 1024  # room for a 32 KiB SFTP read reply and its header in one SSH packet
_BLOCK = 32 * 1024  # bytes per SFTP read request: what servers answer in one reply
_READ_AHEAD = 8 * MIB  # bytes requested at once when reading: a window
_WINDOWS_AHEAD = 2  # windows requested before the one being read is finished
# GCM needs no separate MAC pass, which in paramiko costs as much as the cipher itself.
_FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes128-ctr", "aes256-gcm@openssh.com", "aes256-ctr")
# An RSA host key is negotiated under the names of its signature algorithms.
_HOST_KEY_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256")}


@dataclasses.dataclass(frozen=True)
class _Server:
    user: str
    host: str
    port: int
    # seconds for connecting and logging in, and that a link may move no byte before it counts
    # as dead even if TCP has not noticed
    timeout: float = 60.0

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """The name OpenSSH files this server's key under in known_hosts."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def keyscan_hint(self) -> str:
        return (
            f"if the server's key really is new, pin it: put the output of "
            f"`ssh-keyscan -p {self.port} {self.host}` (checked out of band) in REMORA_SFTP_KNOWN_HOSTS"
        )


def from_url(parts: SplitResult, config: Config) -> SFTPTarget:
    """Connect to the server an sftp:// URL names, with the configured key and pinned host key."""
    config.require("sftp_private_key", "sftp_known_hosts")
    server = _Server(
        unquote(parts.username or ""), parts.hostname or "", parts.port or 22, timeout=config.storage_timeout
    )
    root = unquote(parts.path)
    if not root.startswith("/"):
        raise UsageError(
            "REMORA_TARGET_URL needs an absolute path (sftp://user@host/path)",
            hint="use /~/path for a folder under the login's home",
        )
    pinned = sshkeys.pinned_keys(config.sftp_known_hosts, server.known_hosts_name)
    key = sshkeys.private_key(config.sftp_private_key, config.sftp_passphrase)
    return SFTPTarget(server, root, key=key, pinned=pinned)


# --- connection ---------------------------------------------------------------------------------


def _connect(server: _Server, key: paramiko.PKey, pinned: list[paramiko.PKey]):
    """Open an authenticated SFTP session, refusing any server whose key is not pinned."""
    if not pinned:
        raise StorageError(
            f"the host key of {server} is not pinned in REMORA_SFTP_KNOWN_HOSTS", hint=server.keyscan_hint()
        )
    try:
        sock = socket.create_connection((server.host, server.port), timeout=server.timeout)
    except OSError as e:
        raise _failure(f"cannot connect to {server}", e, alive=False) from e
    transport = paramiko.Transport(
        _StallGuard(sock, server.timeout), default_window_size=_WINDOW, default_max_packet_size=_MAX_PACKET
    )
    try:
        _handshake(transport, server, pinned)
        return transport, _login(transport, server, key)
    except BaseException as e:
        transport.close()
        if isinstance(e, RemoraError) or not isinstance(e, Exception):
            raise
        raise _failure(f"cannot log in to {server} as {server.user}", e, alive=False) from e


def _handshake(transport: paramiko.Transport, server: _Server, pinned: list[paramiko.PKey]) -> None:
    """Agree on keys, asking only for the pinned kinds of host key, and check the one shown."""
    options = transport.get_security_options()
    offered = transport.preferred_ciphers
    options.ciphers = tuple(c for c in _FAST_CIPHERS if c in offered) + tuple(
        c for c in offered if c not in _FAST_CIPHERS
    )
    # As OpenSSH does for a known host: otherwise a server holding several kinds of host key may
    # show another kind than the one pinned, and a good server would look changed.
    kinds = {alg for k in pinned for alg in _HOST_KEY_ALGORITHMS.get(k.get_name(), (k.get_name(),))}
    options.key_types = tuple(alg for alg in transport.preferred_keys if alg in kinds)
    try:
        transport.start_client(timeout=server.timeout)
    except paramiko.IncompatiblePeer as e:
        if "host key" not in str(e):
            raise
        pinned_kinds = ", ".join(sorted({k.get_name() for k in pinned}))
        raise StorageError(
            f"the host key of {server} is not the pinned one: it has no {pinned_kinds} key",
            hint=server.keyscan_hint(),
        ) from e
    _check_host_key(transport, server, pinned)


def _login(transport: paramiko.Transport, server: _Server, key: paramiko.PKey) -> paramiko.SFTPClient:
    transport.auth_timeout = server.timeout
    transport.auth_publickey(server.user, key)
    if not transport.is_authenticated():
        raise StorageError(f"{server} wants more than a key to log in as {server.user}")
    sftp = paramiko.SFTPClient.from_transport(transport, window_size=_WINDOW, max_packet_size=_MAX_PACKET)
    sftp.get_channel().settimeout(server.timeout)
    transport.set_keepalive(_KEEPALIVE)
    return sftp


class _StallGuard:
    """The socket under an SSH transport, whose sends give up after ``timeout`` s of no progress.

    paramiko retries a timed-out socket send until the transport is closed, so a link that takes
    no more bytes (a frozen server, a NAT that forgot us) would hang a write for ever; the SFTP
    channel's own timeout covers only waiting for answers and for the SSH window.
    """

    def __init__(self, sock: socket.socket, timeout: float):
        self._sock = sock
        self._timeout = timeout
        self._stuck_since: float | None = None

    def send(self, data) -> int:
        try:
            sent = self._sock.send(data)
        except socket.timeout:
            now = time.monotonic()
            self._stuck_since = self._stuck_since or now
            if now - self._stuck_since >= self._timeout:
                # not a TimeoutError, which paramiko would retry: this one ends the transport
                raise ConnectionAbortedError(errno.ECONNABORTED, "the link took no byte") from None
            raise
        self._stuck_since = None
        return sent

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


def _check_host_key(transport: paramiko.Transport, server: _Server, pinned: list[paramiko.PKey]) -> None:
    offered = transport.get_remote_server_key()
    if not any(k.get_name() == offered.get_name() and k.asbytes() == offered.asbytes() for k in pinned):
        raise StorageError(
            f"the host key of {server} is not the pinned one: it shows "
            f"{offered.get_name()} {offered.fingerprint}; refusing to connect",
            hint=server.keyscan_hint(),
        )


def _failure(what: str, error: Exception, *, alive: bool) -> StorageError:
    """Classify a paramiko or socket error: permanent, unless the link itself failed."""
    reason = " ".join((getattr(error, "strerror", None) or str(error) or type(error).__name__).split())
    if isinstance(error, EOFError):  # paramiko's word for a link that closed under it
        reason = "the connection was lost"
    message = f"{what}: {reason}"
    if isinstance(error, paramiko.AuthenticationException):
        return StorageError(
            message, hint="add the public half of REMORA_SFTP_PRIVATE_KEY to the user's authorized_keys"
        )
    if isinstance(error, paramiko.IncompatiblePeer):
        return StorageError(message, hint="the server shares no key exchange, cipher or host key kind with us")
    transient = (EOFError, TimeoutError, ConnectionError, socket.gaierror, paramiko.SSHException)
    if not alive or isinstance(error, transient):
        return TransientStorageError(message, hint="check that the server is up and reachable")
    if isinstance(error, FileNotFoundError):
        return StorageError(message, hint="create the folder or fix REMORA_TARGET_URL")
    if isinstance(error, PermissionError):
        return StorageError(message, hint="let the SFTP user write to that folder")
    return StorageError(message, hint="the server refused; is its disk full or the user over quota?")


# --- the target ---------------------------------------------------------------------------------


class SFTPTarget(Target):
    """A folder tree on an SFTP server, over one SSH connection, reopened after a drop.

    Not thread-safe: paramiko's SFTP client serves one caller at a time (max_in_flight is 1).
    """

    def __init__(self, server: _Server, root: str, *, key: paramiko.PKey, pinned: list[paramiko.PKey]):
        self._server, self._key, self._pinned = server, key, pinned
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._folders: set[str] = set()
        try:
            self._session()  # connect now, so that a refused host key or login shows at once
            self.root = self._resolve(root)
        except BaseException:
            self.close()
            raise

    def _resolve(self, root: str) -> str:
        if root == "/~" or root.startswith("/~/"):
            with self._io("find the home folder", "~"):
                root = self._session().normalize(".") + root[2:]
        return "/" + root.strip("/")

    def _session(self) -> paramiko.SFTPClient:
        if self._sftp is None or not self._transport.is_active():
            self.close()
            self._transport, self._sftp = _connect(self._server, self._key, self._pinned)
        return self._sftp

    @contextlib.contextmanager
    def _io(self, action: str, path: str, *, transport: paramiko.Transport | None = None):
        """Turn errors inside into the runner's; a failed link is closed so the next call reconnects."""
        try:
            yield
        except RemoraError:
            raise
        except Exception as e:
            transport = transport or self._transport
            alive = transport is not None and transport.is_active()
            failure = _failure(f"cannot {action} {path} on {self._server}", e, alive=alive)
            if isinstance(failure, TransientStorageError) and transport is not None:
                transport.close()
            raise failure from e
        except BaseException:
            # stopped halfway (SIGTERM): the SSH stream may hold half a packet, never reuse it
            link = transport or self._transport
            if link is not None:
                link.close()
            raise

    def _path(self, key: str) -> str:
        return f"{self.root.rstrip('/')}/{key}"

    def begin(self, key: str) -> Upload:
        return _SFTPUpload(self, self._path(key))

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        with self._io("list", self.root):
            files = self._walk(self._session(), "", prefix)
            return [
                _info(key, attrs) for key, attrs in files if key.startswith(prefix) and not _is_temp(attrs.filename)
            ]

    def _walk(
        self, sftp: paramiko.SFTPClient, relative: str, prefix: str
    ) -> Iterator[tuple[str, paramiko.SFTPAttributes]]:
        """Every file, temporary ones included, in the folders that may hold keys starting with ``prefix``."""
        for attrs in sftp.listdir_attr(self._path(relative) if relative else self.root):
            key = relative + attrs.filename
            if stat.S_ISDIR(attrs.st_mode):
                folder = key + "/"
                if folder.startswith(prefix) or prefix.startswith(folder):
                    yield from self._walk(sftp, folder, prefix)
            elif stat.S_ISREG(attrs.st_mode):
                yield key, attrs

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        with self._io("stat", path):
            try:
                attrs = self._session().stat(path)
            except FileNotFoundError as e:
                raise ObjectNotFound(f"no object {key} on {self._server}") from e
        if not stat.S_ISREG(attrs.st_mode):
            raise ObjectNotFound(f"no object {key} on {self._server}: {path} is not a file")
        return _info(key, attrs)

    def open(self, key: str, offset: int = 0) -> BinaryIO:
        path = self._path(key)
        with self._io("read", path):
            try:
                handle = self._session().open(path, "rb")
            except FileNotFoundError as e:
                raise ObjectNotFound(f"no object {key} on {self._server}") from e
            size = handle.stat().st_size
        return _RemoteFile(self, handle, path, size, offset)

    def delete(self, key: str) -> None:
        path = self._path(key)
        with self._io("delete", path), contextlib.suppress(FileNotFoundError):
            self._session().remove(path)

    def close(self) -> None:
        for link in (self._sftp, self._transport):
            if link is not None:
                with contextlib.suppress(Exception):
                    link.close()
        self._sftp = self._transport = None

    def _makedirs(self, folder: str) -> None:
        """Create ``folder`` and its parents, checking each once in the target's life."""
        if folder in self._folders or folder == "/":
            return
        with self._io("create folder", folder):
            sftp = self._session()
            if not _is_dir(sftp, folder):
                self._makedirs(posixpath.dirname(folder))
                try:
                    sftp.mkdir(folder)
                except OSError:
                    if not _is_dir(sftp, folder):  # else another run made it meanwhile: fine
                        raise
        self._folders.add(folder)

    def leftovers(self, prefix: str = "") -> list[Leftover]:
        found = []
        with self._io("list", self.root):
            for temp_key, attrs in self._walk(self._session(), "", prefix):
                key = upload_key_of(temp_key)
                if key is not None and key.startswith(prefix):
                    found.append(Leftover(key, _info(temp_key, attrs).modified, handle=temp_key))
        return found

    def discard(self, leftover: Leftover) -> None:
        self.delete(leftover.handle)


def _is_dir(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        return stat.S_ISDIR(sftp.stat(path).st_mode)
    except FileNotFoundError:
        return False


def _is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(_TEMP_SUFFIX)


def _info(key: str, attrs: paramiko.SFTPAttributes) -> ObjectInfo:
    modified = datetime.datetime.fromtimestamp(attrs.st_mtime or 0, datetime.timezone.utc)
    return ObjectInfo(key=key, size=attrs.st_size, modified=modified)


class _SFTPUpload(Upload):
    """Parts arrive in order (max_in_flight is 1) and are written at their offsets.

    A part is confirmed once the file's size shows all of it. After a failed try, the part is
    sent again whole, never from the first byte the file lacks: some servers (Go's pkg/sftp)
    write a handle's requests in parallel, so a file cut short by a drop may have holes.
    """

    def __init__(self, target: SFTPTarget, path: str):
        folder, name = posixpath.split(path)
        self._target, self._path = target, path
        self._temp = f"{folder}/.{name}.{secrets.token_hex(4)}{_TEMP_SUFFIX}"
        self._offsets = {1: 0}
        self._size = 0
        self._unconfirmed: int | None = None  # the part whose last try failed
        self._done = False
        target._makedirs(folder)  # the file itself is made by part 1, so that a retried begin leaves none

    def send(self, number: int, data: bytes) -> None:
        offset = self._offsets[number]
        end = offset + len(data)
        with self._target._io("write", self._temp):
            sftp = self._target._session()
            if self._unconfirmed == number:
                self._check_resumable(sftp, number, offset)
            self._unconfirmed = number
            # A handle per part: paramiko's pipelined writes must not share a handle with other
            # requests, and after a reconnect the old handle is gone anyway. Part 1 makes the file.
            handle = sftp.open(self._temp, "w" if offset == 0 else "r+")
            handle.set_pipelined(True)
            handle.seek(offset)
            handle.write(data)
            # Closed only after a good write: close() waits for every pipelined write, so on a
            # failure or a stop it would hold us up; the link is closed then, and the handle with it.
            handle.close()
            # paramiko drops the replies to pipelined writes it has not read by close(), errors
            # included; the size is what tells us the server stored every byte.
            size = sftp.stat(self._temp).st_size
        if size < end:
            raise StorageError(
                f"cannot write {self._temp} on {self._target._server}: it holds {size} bytes "
                f"after part {number}, not {end}",
                hint="is the server's disk full or the user over quota?",
            )
        self._unconfirmed = None
        self._offsets[number + 1] = end
        self._size = end

    def _check_resumable(self, sftp: paramiko.SFTPClient, number: int, offset: int) -> None:
        """Before a part is sent again: the file must still hold every part confirmed before it."""
        try:
            held = sftp.stat(self._temp).st_size
        except FileNotFoundError:
            held = None
        if offset and (held is None or held < offset):
            raise StorageError(
                f"cannot resume {self._temp} on {self._target._server}: it holds "
                f"{'nothing' if held is None else f'{held} bytes'}, not the {offset} bytes confirmed",
                hint="the server lost what it had stored; run the backup again",
            )
        log.info("resuming upload", file=self._temp, part=number, offset=offset, held=held or 0)

    def complete(self) -> None:
        with self._target._io("finish", self._path):
            sftp = self._target._session()
            try:
                size = sftp.stat(self._temp).st_size
            except FileNotFoundError:
                if not self._renamed_already(sftp):
                    raise
            else:
                self._check_size(size)
                sftp.posix_rename(self._temp, self._path)
        self._done = True

    def _renamed_already(self, sftp: paramiko.SFTPClient) -> bool:
        """A retry whose first try renamed, and then lost the reply with the link, has nothing to do."""
        return sftp.stat(self._path).st_size == self._size

    def _check_size(self, size: int) -> None:
        if size != self._size:
            raise StorageError(
                f"cannot finish {self._path} on {self._target._server}: "
                f"{self._temp} holds {size} bytes, not the {self._size} sent",
                hint="something else writes there, or the server lost data; run the backup again",
            )

    def abort(self) -> None:
        if self._done:
            return
        try:
            with self._target._io("remove", self._temp), contextlib.suppress(FileNotFoundError):
                self._target._session().remove(self._temp)
        except Exception:  # a leftover .part is never listed, and prune removes it once old
            pass
        self._done = True


class _RemoteFile(io.RawIOBase):
    """A remote file read ahead a window at a time; errors come out as the runner's.

    Each window's blocks are requested at once (paramiko's readv), instead of one round trip
    per 32 KiB block. Not the whole file at once (paramiko's prefetch): that sends and tracks a
    request for every block of the file up front, about 3 MB of bookkeeping per GB, so memory
    would grow with the backup's size.
    """

    def __init__(self, target: SFTPTarget, handle: paramiko.SFTPFile, path: str, size: int, offset: int):
        super().__init__()
        self._target, self._handle, self._path, self._size = target, handle, path, size
        # judge errors by the link this file was opened on, not one reopened since
        self._transport = handle.sftp.get_channel().get_transport()
        self._requested = offset
        self._windows: collections.deque[Iterator[bytes]] = collections.deque()
        self._blocks: Iterator[bytes] = iter(())
        self._block = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        if not self._block:
            with self._target._io("read", self._path, transport=self._transport):
                self._block = self._next_block()
        data, self._block = self._block[:size], self._block[size:]
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _next_block(self) -> bytes:
        while (block := next(self._blocks, None)) is None:
            while len(self._windows) < _WINDOWS_AHEAD and self._requested < self._size:
                self._windows.append(self._request_window())
            if not self._windows:
                return b""
            self._blocks = self._windows.popleft()
        return block

    def _request_window(self) -> Iterator[bytes]:
        """Ask for the next window's blocks at once; they arrive while earlier windows are read."""
        start = self._requested
        self._requested = end = min(start + _READ_AHEAD, self._size)
        blocks = self._handle.readv([(at, min(_BLOCK, end - at)) for at in range(start, end, _BLOCK)])
        # readv sends its requests only when first asked for a block
        return itertools.chain([next(blocks)], blocks)

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self._handle.close()
        super().close()
