"""The command line. The only place that reads the environment and turns errors into exit codes."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import structlog

from runner import backup, catalog, check, grants, log, postgres, prune, report, restore, retention, rundue, shutdown
from runner.config import Config, Secret
from runner.errors import RemoraError, Terminated, UsageError
from runner.manifest import Manifest
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
    _allow_write(sub)
    sub = command("run-due", "ask the control plane for this helper app's queued or due run, and run it as a backup")
    sub.add_argument("--database-url-env", metavar="NAME", help="the variable holding the database URL")
    _allow_write(sub)
    sub = command("list", "list complete backups, oldest first")
    sub.add_argument("--json", action="store_true", help="print the manifests as JSON")
    sub = command("verify", "check a backup's signatures and checksum (and with --decrypt, that it decrypts)")
    sub.add_argument("ref", metavar="ID|latest")
    sub.add_argument("--decrypt", action="store_true", help="also decrypt and run pg_restore --list")
    _allow_unsigned(sub)
    sub = command("restore", "restore a checked backup into a database")
    sub.add_argument("ref", metavar="ID|latest")
    _allow_unsigned(sub)
    sub.add_argument("--to", required=True, metavar="DATABASE_URL", help="a URL, or the name of a variable holding one")
    sub.add_argument("--clean", action="store_true", help="drop objects before recreating them")
    sub.add_argument("--jobs", type=_positive, default=1, metavar="N", help="parallel pg_restore jobs")
    sub = command("download", "write a checked backup to a file")
    sub.add_argument("ref", metavar="ID|latest")
    sub.add_argument("--output", required=True, type=Path, metavar="FILE")
    sub.add_argument("--decrypt", action="store_true", help="write the decrypted pg_dump archive")
    _allow_unsigned(sub)
    sub = command("prune", "delete the backups the retention policy does not keep, and old leftovers")
    sub.add_argument("--keep", metavar="POLICY", help=f"overrides REMORA_RETENTION, e.g. {retention.EXAMPLE}")
    sub.add_argument("--dry-run", action="store_true", help="print the plan and delete nothing")
    sub.add_argument(
        "--leftover-age", type=_hours, default=prune.DEFAULT_LEFTOVER_AGE, metavar="HOURS",
        help="leftovers younger than this are kept, as a running backup's may be (default 24)",
    )
    sub = commands.add_parser(
        "grants", help="print the SQL that makes a role a read-only credential for the database",
        description="print the SQL that makes a role a complete read-only credential for the database as it is now;"
                    " it reads only the catalogs, so the role itself can run it before it is granted anything",
    )
    sub.add_argument("--role", metavar="NAME", help="the role to grant to (default: the credential's own)")
    sub.add_argument("--database-url-env", metavar="NAME", help="the variable holding the database URL")
    sub = command("check", "check the configuration, credential, pg_dump, keys and target; store nothing")
    sub.add_argument("--database-url-env", metavar="NAME", help="the variable holding the database URL")
    _allow_write(sub)
    sub.add_argument(
        "--postdeploy", action="store_true",
        help="as app.json's postdeploy script runs it, before the database credential can be attached: "
             "a database URL not set yet says how to attach it and does not fail; all else still does",
    )
    return parser


def _allow_write(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--allow-write-credential", action="store_true",
        help="go on (with a warning) when the database credential can change the database",
    )


def _allow_unsigned(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--allow-unsigned", action="store_true",
        help="go on (with a warning) with a backup that is not signed, as those made before signing was set up; "
             "needs its ID, not latest",
    )


def _positive(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to 64")
    return int(text)


def _hours(text: str) -> datetime.timedelta:
    try:
        hours = float(text)
    except ValueError:
        hours = 0.0
    if not 0 < hours < 100_000:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of hours above 0")
    return datetime.timedelta(hours=hours)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run one command; return its exit code."""
    env = dict(os.environ if env is None else env)
    log.configure()
    args = build_parser().parse_args(argv)
    config = None
    try:
        with shutdown.stop_on_signals():
            if args.command == "check":  # it reports a bad configuration as one of its checks
                return check.run(lambda: _config(args, env), child_env(env),
                                 allow_write=args.allow_write_credential, postdeploy=args.postdeploy,
                                 on_dyno=bool(env.get("DYNO")), out=sys.stdout)
            config = _config(args, env)
            return _COMMANDS[args.command](args, config, env)
    except RemoraError as e:
        logger.error(e.one_line(), exit_code=e.exit_code)
        if config is None and args.command == "backup":
            report.unconfigured(env, e)  # a launched run whose settings are wrong must not look lost
        elif config is None and args.command == "run-due":
            rundue.unconfigured(env, e)  # nor a due run the helper app would have taken
        return e.exit_code
    except Terminated as e:
        logger.error(f"{args.command} stopped by {e.name}; nothing that looks complete was left",
                     exit_code=e.exit_code)
        return e.exit_code


def _config(args, env: Mapping[str, str]) -> Config:
    """The configuration from ``env`` and the flags; its secrets are redacted from logs from now on."""
    config = Config.from_env(
        env,
        target_url=getattr(args, "target_url", None),
        label=getattr(args, "label", None),
        database_url_env=getattr(args, "database_url_env", None),
        keep=getattr(args, "keep", None),
    )
    log.redactor.add(config.secrets())
    return config


def _backup(args, config: Config, env) -> int:
    with report.reporting(config) as reporter:
        if reporter is not None and reporter.another_process_started:
            return 0  # a second process of the same run (a dyno launched twice): the first one backs up
        manifest = backup.run(config, child_env(env), allow_write_credential=args.allow_write_credential,
                              on_dyno=bool(env.get("DYNO")))
        if reporter is not None:
            reporter.succeeded(manifest)
    print(manifest.id, flush=True)
    if reporter is not None and config.retention is not None and config.target_url is not None:
        _prune_after_backup(config)
    return 0


def _prune_after_backup(config: Config) -> None:
    """A run on the customer's own target applies REMORA_RETENTION once its backup is stored.

    The backup has succeeded whatever happens here, so a failure is a warning; the next run tries again.
    """
    try:
        prune.run(config, dry_run=False, report=lambda line: logger.info("pruned", step=line))
    except RemoraError as e:
        logger.warning(f"prune after the backup failed: {e.one_line()}")


def _run_due(args, config: Config, env) -> int:
    run = rundue.claim(config)
    if run is None:
        logger.info("nothing due")
        return 0
    log.redactor.add(run.secrets())
    logger.info("the control plane handed over a run", run_id=run.run_id)
    return _backup(args, run, env)


def _list(args, config: Config, env) -> int:
    with open_target(config) as target:
        found = catalog.backups(target, config.storage_label)
    if args.json:
        print(json.dumps([json.loads(m.to_bytes()) for m in found], indent=2))
        return 0
    for m in found:
        line = (f"{m.id}  {m.label:<20} {m.database:<20} PostgreSQL {m.server_version:<6} "
                f"{m.encrypted_bytes:>14,} bytes  {m.finished_at}")
        print(log.printable(line))
    return 0


def _resolve(args, config: Config, target) -> Manifest:
    """The backup that ``ref`` names; ``--allow-unsigned`` takes only a named one."""
    if args.allow_unsigned and args.ref == "latest":
        raise UsageError("--allow-unsigned needs a backup id, not latest: an unsigned latest could be anyone's",
                         hint="see remora-backup list, and name the backup")
    return catalog.resolve(target, config.storage_label, args.ref)


def _verify(args, config: Config, env) -> int:
    with open_target(config) as target:
        manifest = _resolve(args, config, target)
        restore.verify(config, target, manifest, child_env(env), decrypt=args.decrypt,
                       allow_unsigned=args.allow_unsigned)
    checked = ("manifest signature, " if manifest.signature else "") + "SHA-256" + (
        (", archive signature" if manifest.signature else "") + ", decryption, archive" if args.decrypt else "")
    logger.info("backup verified", id=manifest.id, sha256=manifest.sha256, signer=manifest.signer or "none",
                checked=checked)
    return 0


def _restore(args, config: Config, env) -> int:
    to_url = _database_url(args.to, env)
    with open_target(config) as target:
        manifest = _resolve(args, config, target)
        restore.restore(config, target, manifest, to_url, child_env(env), clean=args.clean, jobs=args.jobs,
                        allow_unsigned=args.allow_unsigned)
    return 0


def _download(args, config: Config, env) -> int:
    with open_target(config) as target:
        manifest = _resolve(args, config, target)
        restore.download(config, target, manifest, args.output, child_env(env), decrypt=args.decrypt,
                         allow_unsigned=args.allow_unsigned)
    logger.info("backup downloaded", id=manifest.id, output=str(args.output), decrypted=args.decrypt)
    return 0


def _prune(args, config: Config, env) -> int:
    prune.run(
        config, dry_run=args.dry_run, leftover_age=args.leftover_age, report=lambda line: print(line, flush=True)
    )
    return 0


def _grants(args, config: Config, env) -> int:
    config.require("database_url")
    params = postgres.connection_params(config.database_url, variable=config.database_url_env)
    with postgres.connect(params, variable=config.database_url_env) as conn:
        script = grants.script(conn, args.role)
    sys.stdout.write(script)
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


_COMMANDS = {
    "backup": _backup, "run-due": _run_due, "list": _list, "verify": _verify, "restore": _restore,
    "download": _download, "prune": _prune, "grants": _grants,
}


if __name__ == "__main__":
    sys.exit(main())
