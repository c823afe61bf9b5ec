"""The command line. The only place that reads the environment and turns errors into exit codes."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import structlog

from runner import backup, catalog, log, restore, shutdown
from runner.config import Config, Secret
from runner.errors import RemoraError, Terminated, UsageError
from runner.processes import child_env
from runner.targets import open_target

logger = structlog.get_logger()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="remora-backup", description="Encrypted offsite backups of PostgreSQL.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("--target", dest="target_url", metavar="URL", help="overrides REMORA_TARGET_URL")
        sub.add_argument("--label", metavar="NAME", help="overrides REMORA_LABEL")
        return sub

    sub = command("backup", "dump, encrypt and store the database")
    sub.add_argument("--database-url-env", metavar="NAME", help="the variable holding the database URL")
    sub = command("list", "list complete backups, oldest first")
    sub.add_argument("--json", action="store_true", help="print the manifests as JSON")
    sub = command("verify", "check a backup's checksum (and with --decrypt, that it decrypts)")
    sub.add_argument("ref", metavar="ID|latest")
    sub.add_argument("--decrypt", action="store_true", help="also decrypt and run pg_restore --list")
    sub = command("restore", "restore a checked backup into a database")
    sub.add_argument("ref", metavar="ID|latest")
    sub.add_argument("--to", required=True, metavar="DATABASE_URL", help="a URL, or the name of a variable holding one")
    sub.add_argument("--clean", action="store_true", help="drop objects before recreating them")
    sub.add_argument("--jobs", type=_positive, default=1, metavar="N", help="parallel pg_restore jobs")
    sub = command("download", "write a checked backup to a file")
    sub.add_argument("ref", metavar="ID|latest")
    sub.add_argument("--output", required=True, type=Path, metavar="FILE")
    sub.add_argument("--decrypt", action="store_true", help="write the decrypted pg_dump archive")
    return parser


def _positive(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to 64")
    return int(text)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run one command; return its exit code."""
    env = dict(os.environ if env is None else env)
    log.configure()
    args = build_parser().parse_args(argv)
    try:
        with shutdown.stop_on_signals():
            config = Config.from_env(
                env,
                target_url=args.target_url,
                label=args.label,
                database_url_env=getattr(args, "database_url_env", None),
            )
            log.redactor.add(config.secrets())
            return _COMMANDS[args.command](args, config, env)
    except RemoraError as e:
        logger.error(e.one_line(), exit_code=e.exit_code)
        return e.exit_code
    except Terminated as e:
        logger.error(f"{args.command} stopped by {e.name}; nothing that looks complete was left",
                     exit_code=e.exit_code)
        return e.exit_code


def _backup(args, config: Config, env) -> int:
    manifest = backup.run(config, child_env(env))
    print(manifest.id)
    return 0


def _list(args, config: Config, env) -> int:
    with open_target(config) as target:
        found = catalog.backups(target, config.storage_label)
    if args.json:
        print(json.dumps([json.loads(m.to_bytes()) for m in found], indent=2))
        return 0
    for m in found:
        print(f"{m.id}  {m.label:<20} {m.encrypted_bytes:>14,} bytes  {m.finished_at}")
    return 0


def _verify(args, config: Config, env) -> int:
    with open_target(config) as target:
        manifest = catalog.resolve(target, config.storage_label, args.ref)
        restore.verify(config, target, manifest, child_env(env), decrypt=args.decrypt)
    logger.info("backup verified", id=manifest.id, sha256=manifest.sha256, decrypted=args.decrypt)
    return 0


def _restore(args, config: Config, env) -> int:
    to_url = _database_url(args.to, env)
    with open_target(config) as target:
        manifest = catalog.resolve(target, config.storage_label, args.ref)
        restore.restore(config, target, manifest, to_url, child_env(env), clean=args.clean, jobs=args.jobs)
    return 0


def _download(args, config: Config, env) -> int:
    with open_target(config) as target:
        manifest = catalog.resolve(target, config.storage_label, args.ref)
        restore.download(config, target, manifest, args.output, child_env(env), decrypt=args.decrypt)
    logger.info("backup downloaded", id=manifest.id, output=str(args.output), decrypted=args.decrypt)
    return 0


def _database_url(value: str, env: Mapping[str, str]) -> Secret:
    """``--to`` takes a URL, or the name of a variable that holds one (keeping the password out of argv)."""
    if re.fullmatch(r"[A-Z_][A-Z0-9_]*", value):
        if not env.get(value):
            raise UsageError(f"--to names {value}, which is not set")
        url = Secret(env[value])
    else:
        url = Secret(value)
        if "@" in value and ":" in value.split("://", 1)[-1].split("@", 1)[0]:
            logger.warning("--to holds a password, which the process list shows; name a variable instead")
    log.redactor.add([url.reveal()])
    return url


_COMMANDS = {"backup": _backup, "list": _list, "verify": _verify, "restore": _restore, "download": _download}


if __name__ == "__main__":
    sys.exit(main())
