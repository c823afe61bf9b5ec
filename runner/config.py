"""Configuration: one frozen object, built from the environment in one place.

Nothing below the CLI reads ``os.environ``. ``Config.from_env`` parses every variable the runner
knows, collects every problem it finds, and raises one ``UsageError`` naming each variable at
fault. Secrets are wrapped in ``Secret`` so that no ``repr``, log line or error message can show
them; code that needs the value calls ``reveal()`` at the last moment.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from runner import bearer, manifest
from runner.errors import UsageError
from runner.retention import Policy, parse as parse_policy

TARGET_SCHEMES = ("file", "s3", "sftp")
MIB = 1024 * 1024
ADD_ON_STORAGE = "the add-on's storage"


class Secret:
    """A value that never shows itself in ``repr``, ``str`` or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything the runner is told, validated.

    database_url_env   the variable that held the database URL (named in messages)
    database_url       libpq URL of the (read-only) credential
    target_url         where backups live: file://, s3:// or sftp://; None with the add-on's
                       variables set: the add-on's own storage (a managed plan)
    label              the database's name in storage paths (None: the database name)
    gpg_public_keys    ASCII-armored public keys; every one is a recipient
    gpg_private_key    for restore, download --decrypt, verify --decrypt
    gpg_signing_key    the private key that signs every backup (not the one that decrypts), and
                       gpg_signing_passphrase, its passphrase
    gpg_signers        ASCII-armored public keys: the signers whose backups verify, restore and
                       download accept
    sftp_*             the SSH key (text), its passphrase, and the pinned known_hosts lines
    aws_*              boto3's own settings, passed explicitly
    s3_part_size       bytes per multipart part (grows past 1,000 parts to stay under 10,000)
    s3_in_flight       parts uploading at once; memory is about (in_flight + 1) × part size
    gzip_level         pg_dump's gzip level where it has no zstd (0: uncompressed)
    retention          the policy ``prune`` applies (None: none configured, so prune refuses)
    control_url, run_id, run_token
                       set by the control plane on a run it launched: where to report, as whom
                       (and, in the add-on's storage, what the run may write)
    api_url, api_token set by the add-on on the helper app: the resource's API, asked whether it
                       recorded a backup being verified or restored, with no REMORA_TARGET_URL the
                       way into the add-on's storage, and by `run-due` for a run
    retry_attempts     tries of each storage call before a transient failure is given up
    retry_backoff_max  seconds: the longest wait between two tries (the first waits about 0.5 s)
    storage_timeout    seconds a storage connection may make no progress before it counts as dead
    """

    database_url_env: str = "REMORA_DATABASE_URL"
    database_url: Secret | None = None
    target_url: str | None = None
    label: str | None = None
    gpg_public_keys: str | None = None
    gpg_private_key: Secret | None = None
    gpg_passphrase: Secret | None = None
    gpg_signing_key: Secret | None = None
    gpg_signing_passphrase: Secret | None = None
    gpg_signers: str | None = None
    sftp_private_key: Secret | None = None
    sftp_passphrase: Secret | None = None
    sftp_known_hosts: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: Secret | None = None
    aws_session_token: Secret | None = None
    aws_region: str | None = None
    aws_endpoint_url: str | None = None
    s3_part_size: int = 16 * MIB
    s3_in_flight: int = 3
    gzip_level: int = 3
    retention: Policy | None = None
    control_url: str | None = None
    run_id: str | None = None
    run_token: Secret | None = None
    api_url: str | None = None
    api_token: Secret | None = None
    retry_attempts: int = 5
    retry_backoff_max: float = 20.0
    storage_timeout: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str], **flags: str | None) -> Config:
        """Build the config from ``env``; flags given on the command line win over variables."""
        problems: list[str] = []
        reader = _Reader(env, problems)
        db_env = flags.get("database_url_env") or "REMORA_DATABASE_URL"
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", db_env):
            problems.append(f"--database-url-env {db_env!r} is not a variable name")
        config = cls(
            database_url_env=db_env,
            database_url=reader.secret(db_env, check=_check_database_url),
            target_url=flags.get("target_url") or reader.text("REMORA_TARGET_URL"),
            label=flags.get("label") or reader.text("REMORA_LABEL"),
            gpg_public_keys=reader.text("REMORA_GPG_PUBLIC_KEYS"),
            gpg_private_key=reader.secret("REMORA_GPG_PRIVATE_KEY"),
            gpg_passphrase=reader.secret("REMORA_GPG_PASSPHRASE"),
            gpg_signing_key=reader.secret("REMORA_GPG_SIGNING_KEY"),
            gpg_signing_passphrase=reader.secret("REMORA_GPG_SIGNING_PASSPHRASE"),
            gpg_signers=reader.text("REMORA_GPG_SIGNERS"),
            sftp_private_key=reader.secret("REMORA_SFTP_PRIVATE_KEY"),
            sftp_passphrase=reader.secret("REMORA_SFTP_PASSPHRASE"),
            sftp_known_hosts=reader.text("REMORA_SFTP_KNOWN_HOSTS"),
            aws_access_key_id=reader.text("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=reader.secret("AWS_SECRET_ACCESS_KEY"),
            aws_session_token=reader.secret("AWS_SESSION_TOKEN"),
            aws_region=reader.text("AWS_DEFAULT_REGION"),
            aws_endpoint_url=reader.text("AWS_ENDPOINT_URL_S3"),
            s3_part_size=reader.integer("REMORA_S3_PART_SIZE_MB", 16, low=5, high=5120) * MIB,
            s3_in_flight=reader.integer("REMORA_S3_CONCURRENCY", 3, low=1, high=32),
            gzip_level=reader.integer("REMORA_GZIP_LEVEL", 3, low=0, high=9),
            retention=reader.policy("REMORA_RETENTION", flag=flags.get("keep")),
            control_url=reader.text("REMORA_CONTROL_URL"),
            run_id=reader.text("REMORA_RUN_ID"),
            run_token=reader.secret("REMORA_RUN_TOKEN"),
            api_url=reader.text("REMORA_API_URL"),
            api_token=reader.secret("REMORA_API_TOKEN"),
            retry_attempts=reader.integer("REMORA_RETRY_ATTEMPTS", 5, low=1, high=20),
            retry_backoff_max=reader.seconds("REMORA_RETRY_BACKOFF_MAX", 20.0, low=0, high=600),
            storage_timeout=reader.seconds("REMORA_STORAGE_TIMEOUT", 60.0, low=0.1, high=3600),
        )
        if config.target_url is not None:
            _check_target_url(config.target_url, problems)
        if config.api_url is not None:
            _check_api_url(config.api_url, problems)
        if config.label is not None and not manifest.LABEL.fullmatch(config.label):
            problems.append(
                f"REMORA_LABEL {config.label!r} must be 1-63 letters, digits, '.', '_' or '-'"
            )
        if problems:
            raise UsageError("; ".join(problems), hint="fix the configuration and run again")
        return config

    @property
    def storage_label(self) -> str | None:
        """REMORA_LABEL, else the database's name from its URL made safe for paths, else None."""
        if self.label is not None or self.database_url is None:
            return self.label
        dbname = unquote(urlsplit(self.database_url.reveal()).path.lstrip("/"))
        label = re.sub(r"[^A-Za-z0-9._-]", "_", dbname).lstrip("._-")[:63]
        return label or "database"

    @property
    def add_on_storage(self) -> bool:
        """No target of the customer's own, and the add-on's variables: backups go to the add-on's storage."""
        return self.target_url is None and (self.api_url is not None or self.control_url is not None)

    @property
    def target_name(self) -> str:
        return self.target_url or ADD_ON_STORAGE

    def require(self, *fields: str) -> None:
        """Raise one UsageError naming every variable that a command needs and is not set.

        ``target_url`` is there with the add-on's storage in its place.
        """
        absent = [name for name in fields if getattr(self, name) is None
                  and not (name == "target_url" and self.add_on_storage)]
        if absent:
            hint = "set it as a config var"
            if "target_url" in absent:
                hint += "; without a target of your own, a managed plan of the add-on stores the backups"
            raise UsageError(f"{', '.join(map(self._variable, absent))} not set", hint=hint)

    def secrets(self) -> list[str]:
        """Every secret value configured, for the log redactor."""
        values = [v.reveal() for v in dataclasses.astuple(self) if isinstance(v, Secret)]
        if self.database_url is not None:
            try:
                values.append(urlsplit(self.database_url.reveal()).password or "")
            except ValueError:
                pass
        return [v for v in values if v]

    def _variable(self, field: str) -> str:
        if field == "database_url":
            return self.database_url_env
        if field.startswith("aws_"):
            return {"aws_region": "AWS_DEFAULT_REGION", "aws_endpoint_url": "AWS_ENDPOINT_URL_S3"}.get(
                field, field.upper()
            )
        return "REMORA_" + field.upper()


class _Reader:
    """Typed readers over the environment that record problems instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str], problems: list[str]):
        self._env = env
        self._problems = problems

    def text(self, name: str) -> str | None:
        value = self._env.get(name)
        if value is None or not value.strip():
            return None
        return value.strip()

    def secret(self, name: str, *, check=None) -> Secret | None:
        value = self.text(name)
        if value is None:
            return None
        if check is not None and (problem := check(value)):
            self._problems.append(f"{name} {problem}")
        return Secret(value)

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        value = self.text(name)
        if value is None:
            return default
        if not value.isdigit() or not low <= int(value) <= high:
            self._problems.append(f"{name} must be a whole number from {low} to {high}, not {value!r}")
            return default
        return int(value)

    def policy(self, name: str, *, flag: str | None) -> Policy | None:
        """A retention policy from ``--keep`` if given, else from variable ``name``."""
        source, value = ("--keep", flag) if flag is not None else (name, self.text(name))
        if value is None:
            return None
        try:
            return parse_policy(value, source=source)
        except UsageError as e:
            self._problems.append(e.message)
            return None
    def seconds(self, name: str, default: float, *, low: float, high: float) -> float:
        value = self.text(name)
        if value is None:
            return default
        if not re.fullmatch(r"\d+(\.\d+)?", value) or not low <= float(value) <= high:
            self._problems.append(f"{name} must be a number of seconds from {low:g} to {high:g}, not {value!r}")
            return default
        return float(value)


def _check_database_url(value: str) -> str | None:
    """Say what is wrong with a database URL, without ever repeating it (it holds a password)."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("postgres", "postgresql"):
        return "must start with postgres:// or postgresql://"
    if not parts.path.strip("/"):
        return "names no database (postgres://user:password@host:5432/DATABASE)"
    return None


def _check_api_url(value: str, problems: list[str]) -> None:
    """REMORA_API_URL carries the API token: https, or plain http to this machine only."""
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(f"REMORA_API_URL {value!r} is not an http(s) URL")
    elif not bearer.may_carry(value):
        problems.append("REMORA_API_URL must be https (plain http only to this machine): the API token goes there")


def _check_target_url(value: str, problems: list[str]) -> None:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018
    except ValueError:
        problems.append(f"REMORA_TARGET_URL {value!r} is not a valid URL")
        return
    if parts.scheme not in TARGET_SCHEMES:
        problems.append(
            f"REMORA_TARGET_URL scheme {parts.scheme!r} is not one of "
            + ", ".join(f"{s}://" for s in TARGET_SCHEMES)
        )
    elif parts.password is not None:
        problems.append("REMORA_TARGET_URL must not hold a password; use the key variables instead")
    elif parts.scheme == "s3" and not parts.hostname:
        problems.append("REMORA_TARGET_URL names no bucket (s3://bucket/prefix)")
    elif parts.scheme == "sftp" and not (parts.hostname and parts.username):
        problems.append("REMORA_TARGET_URL needs a user and a host (sftp://user@host[:port]/path)")
    elif parts.scheme == "file" and (parts.netloc or not parts.path.startswith("/")):
        problems.append("REMORA_TARGET_URL must be an absolute path (file:///path)")
