"""``remora-control``: migrate, create resources, serve the web app, run the clock, rotate keys, render the manifest."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from control import manifest, settings

EXIT_UNREADABLE = 1
EXIT_CONFIG = 2
WEB_WORKERS = 2
# gunicorn's request limits: no route takes more (a body is capped by the app, at 64 KiB)
REQUEST_LINE = 2048
REQUEST_FIELDS = 40
REQUEST_FIELD_SIZE = 4096


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="remora-control", description="The Remora Backup control plane.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("migrate", help="apply the database migrations not applied yet")
    web = commands.add_parser("web", help="serve the web app on $PORT with gunicorn")
    web.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    web.add_argument("--workers", type=int, default=WEB_WORKERS,
                     help=f"gunicorn worker processes (default {WEB_WORKERS})")
    clock = commands.add_parser("clock", help="launch queued and scheduled runs, find lost runs, send alerts, "
                                "delete what the add-on's storage no longer keeps")
    clock.add_argument("--once", action="store_true", help="one pass, then exit")
    commands.add_parser("rotate-keys", help="seal every stored secret again with REMORA_SECRET_KEY (the old key "
                        "stays in REMORA_PREVIOUS_SECRET_KEYS until this is done)")
    resource = commands.add_parser("resource", help="manage resources").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    create = resource.add_parser("create", help="create a resource; prints its id and API token as JSON")
    create.add_argument("--app", required=True, help="the helper app that runs the backups")
    create.add_argument("--schedule", metavar="CRON", help="e.g. '0 3 * * *' (default: on demand only)")
    create.add_argument("--timezone", default="UTC", metavar="TZ", help="the schedule's time zone (default UTC)")
    create.add_argument("--alert-webhook", metavar="URL", help="POSTed to when backups go missing and recover")
    create.add_argument("--plan", default="byo", metavar="NAME",
                        help="byo (default): backups go to the helper app's own target; any other: the add-on's storage")
    create.add_argument("--retention", metavar="POLICY",
                        help="what the add-on's storage keeps (default daily=7,weekly=4,monthly=12)")
    update = resource.add_parser("update", help="change a resource's settings, checked as provisioning checks them; "
                                 "prints the resource as JSON")
    update.add_argument("id", metavar="ID", help="the resource's id (Heroku's add-on uuid)")
    update.add_argument("--schedule", metavar="CRON", help="e.g. '0 3 * * *'")
    update.add_argument("--no-schedule", action="store_true", help="on demand only")
    update.add_argument("--timezone", metavar="TZ", help="the schedule's time zone")
    update.add_argument("--alert-webhook", metavar="URL", help="POSTed to when backups go missing and recover")
    update.add_argument("--no-alert-webhook", action="store_true", help="no alert webhook")
    update.add_argument("--retention", metavar="POLICY", help="what the add-on's storage keeps, e.g. daily=7,monthly=12")
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
    from control import db, keys

    applied = db.migrate(config["DATABASE_URL"])
    print(f"applied {', '.join(applied)}" if applied else "nothing to apply", file=sys.stderr)
    with db.open_pool(config["DATABASE_URL"], max_size=1) as pool, pool.connection() as conn:
        if sealed := keys.seal_legacy_webhooks(conn, config):
            print(f"sealed {sealed} alert webhook URLs stored in plaintext", file=sys.stderr)
    return 0


def _resource(args, config) -> int:
    return _update(args, config) if args.action == "update" else _create(args, config)


def _given(args) -> dict:
    """The options named on the command line (``--no-…``: cleared)."""
    given = {name: value for name in ("schedule", "timezone", "alert_webhook", "retention")
             if (value := getattr(args, name)) is not None}
    given |= {"schedule": None} if getattr(args, "no_schedule", False) else {}
    given |= {"alert_webhook": None} if getattr(args, "no_alert_webhook", False) else {}
    return given


def _create(args, config) -> int:
    from control import db, options, resources

    try:
        chosen = options.validate(_given(args), policy=options.policy(config))
    except options.OptionError as e:
        raise settings.ConfigError(str(e)) from e
    with db.open_pool(config["DATABASE_URL"], max_size=1) as pool, pool.connection() as conn:
        row, api_token = resources.create(conn, config, chosen, app=args.app, plan=args.plan)
    print(json.dumps({"id": str(row["id"]), "app": row["app"], "plan": row["plan"], "api_token": api_token}))
    return 0


def _update(args, config) -> int:
    import uuid

    from control import db, options, resources
    from control.api import public_resource

    try:
        resource_id = uuid.UUID(args.id)
    except ValueError:
        raise settings.ConfigError(f"{args.id!r} is not a resource id") from None
    with db.open_pool(config["DATABASE_URL"], max_size=1) as pool, pool.connection() as conn:
        resource = resources.get(conn, resource_id)
        if resource is None:
            raise settings.ConfigError(f"no resource {resource_id}")
        try:
            changed = resources.change(conn, config, resource, _given(args))
        except options.OptionError as e:
            raise settings.ConfigError(str(e)) from e
    print(json.dumps(public_resource(config, changed)))
    return 0


def _rotate_keys(args, config) -> int:
    from control import db, keys

    with db.open_pool(config["DATABASE_URL"], max_size=1) as pool, pool.connection() as conn:
        done, unreadable = keys.rotate(conn, config)
    print(f"sealed the secrets of {done} resources again with REMORA_SECRET_KEY", file=sys.stderr)
    if unreadable:
        print(f"remora-control: no key opens the secrets of {len(unreadable)} resources (put the key they were "
              f"sealed with in REMORA_PREVIOUS_SECRET_KEYS): {', '.join(unreadable)}", file=sys.stderr)
        return EXIT_UNREADABLE
    return 0


def _web(args, config) -> int:
    argv = gunicorn_argv(host=args.host, port=os.environ.get("PORT", "5000"), workers=args.workers)
    os.execv(sys.executable, argv)  # the secrets stay in the environment, never in argv


def gunicorn_argv(*, host: str, port: str, workers: int, app: str = "control:create_app()") -> list[str]:
    """How ``web`` serves the app (the benchmark serves its own factory the same way)."""
    return [sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}", "--workers", str(workers),
            "--limit-request-line", str(REQUEST_LINE), "--limit-request-fields", str(REQUEST_FIELDS),
            "--limit-request-field_size", str(REQUEST_FIELD_SIZE), "--access-logfile", "-", app]


def _clock(args, config) -> int:
    from control import clock

    settings.launching(config)
    clock.main(config, once=args.once)
    return 0


def _manifest(args) -> int:
    rendered = manifest.render(manifest.load(args.template), os.environ)
    print(json.dumps(rendered, indent=2))
    return 0


_COMMANDS = {"migrate": _migrate, "resource": _resource, "web": _web, "clock": _clock, "rotate-keys": _rotate_keys}


if __name__ == "__main__":
    sys.exit(main())
