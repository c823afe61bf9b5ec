"""The runner's error tree. Each class owns one exit code; only cli.main() turns them into codes."""


class RemoraError(Exception):
    """An expected failure: one line that says what failed, and a hint that says what to do."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(RemoraError):
    """Usage or configuration error: a missing or invalid variable, a bad URL, a bad key."""

    exit_code = 2


class CredentialError(RemoraError):
    """The database credential was refused, can write, or cannot connect."""

    exit_code = 3


class DumpError(RemoraError):
    """pg_dump or pg_restore failed."""

    exit_code = 4


class CryptoError(RemoraError):
    """gpg failed to encrypt or decrypt."""

    exit_code = 5


class StorageError(RemoraError):
    """The storage target failed. Permanent unless it is a TransientStorageError."""

    exit_code = 6


class TransientStorageError(StorageError):
    """A storage failure worth retrying: timeouts, resets, 5xx, throttling, dropped connections."""


class ObjectNotFound(StorageError):
    """The target has no object under the requested key."""


class IntegrityError(RemoraError):
    """A checksum mismatch, a missing manifest, or a corrupt archive."""

    exit_code = 7


class Terminated(BaseException):
    """SIGTERM or SIGINT arrived: stop now. Exit code 128 + the signal's number, as shells report it.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` on the way out (a
    retry, an error translation) mistakes it for a failure to handle.
    """

    def __init__(self, signum: int, name: str):
        super().__init__(name)
        self.name = name
        self.exit_code = 128 + signum
