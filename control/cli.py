"""``remora-control``: migrate, create resources, serve the web app, run the clock, render the manifest."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from control import manifest, settings

EXIT_CONFIG = 2
WEB_WORKERS = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="remora-control", description="The Remora Backup control plane.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("migrate", help="apply the database migrations not applied yet")
    web = commands.add_parser("web", help="serve the web app on $PORT with gunicorn")
    web.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    web.add_argument("--workers", type=int, default=WEB_WORKERS,
                     help=f"gunicorn worker processes (default {WEB_WORKERS})")
    clock = commands.add_parser("clock", help="launch scheduled runs, find lost runs, send alerts")
    clock.add_argument("--once", action="store_true", help="one pass, then exit")
    resource = commands.add_parser("resource", help="manage resources").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    create = resource.add_parser("create", help="create a resource; prints its id and API token as JSON")
    create.add_argument("--app", required=True, help="the helper app that runs the backups")
    create.add_argument("--schedule", metavar="CRON", help="e.g. '0 3 * * *' (default: on demand only)")
    create.add_argument("--timezone", default="UTC", metavar="TZ", help="the schedule's time zone (default UTC)")
    create.add_argument("--alert-webhook", metavar="URL", help="POSTed to when backups go missing and recover")
    render = commands.add_parser("manifest", help="print the add-on manifest with its ${NAME} placeholders "
                                 "filled from the environment, for `heroku addons:admin:manifest:push`")
    render.add_argument("--template", type=Path, default=Path(manifest.TEMPLATE),
                        help=f"the manifest with placeholders (default ./{manifest.TEMPLATE})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "manifest":  # run where the add-on is published from: no database, no secret key
            return _manifest(args)
        config = settings.from_env(os.environ)
        settings.check(config)
        return _COMMANDS[args.command](args, config)
    except (settings.ConfigError, manifest.ManifestError) as e:
        print(f"remora-control: {e}", file=sys.stderr)
        return EXIT_CONFIG


def _migrate(args, config) -> int:
    from control import db

    applied = db.migrate(config["DATABASE_URL"])
    print(f"applied {', '.join(applied)}" if applied else "nothing to apply", file=sys.stderr)
    return 0


def _resource(args, config) -> int:
    from control import db, resources

    with db.open_pool(config["DATABASE_URL"], max_size=1) as pool, pool.connection() as conn:
        try:
            row, api_token = resources.create(conn, app=args.app, schedule=args.schedule,
                                              timezone=args.timezone, alert_webhook=args.alert_webhook)
        except resources.SettingError as e:
            raise settings.ConfigError(str(e)) from e
    print(json.dumps({"id": str(row["id"]), "app": row["app"], "api_token": api_token}))
    return 0


def _web(args, config) -> int:
    argv = gunicorn_argv(host=args.host, port=os.environ.get("PORT", "5000"), workers=args.workers)
    os.execv(sys.executable, argv)  # the secrets stay in the environment, never in argv


def gunicorn_argv(*, host: str, port: str, workers: int, app: str = "control:create_app()") -> list[str]:
    """How ``web`` serves the app (the benchmark serves its own factory the same way)."""
    return [sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}", "--workers", str(workers),
            "--access-logfile", "-", app]


def _clock(args, config) -> int:
    from control import clock

    if not config["CONTROL_URL"]:
        raise settings.ConfigError("REMORA_CONTROL_URL is not set (the runs report to it)")
    clock.main(config, once=args.once)
    return 0


def _manifest(args) -> int:
    rendered = manifest.render(manifest.load(args.template), os.environ)
    print(json.dumps(rendered, indent=2))
    return 0


_COMMANDS = {"migrate": _migrate, "resource": _resource, "web": _web, "clock": _clock}


if __name__ == "__main__":
    sys.exit(main())
