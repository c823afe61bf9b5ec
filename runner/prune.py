"""``remora-backup prune``: apply the retention policy, and clear what killed runs left behind.

The add-on's storage is not pruned here: its control plane applies the same plan (``decide``) itself.

Per label: each database's backups are judged on their own (runner.retention), so the newest
backup of every database is always kept. With no label known, every label in the target is
pruned in turn.

A backup is deleted manifest first: from that moment it is no longer listed, and a prune that
dies before the archive goes leaves an archive without a manifest, which the next prune clears.

Leftovers are an archive without its manifest, a temporary file of an unfinished upload (file://,
sftp://) and an open multipart upload (s3://). Only those older than ``leftover_age`` are removed:
a running backup writes its upload continually and commits its manifest within moments of its
archive, so what it has in flight is always younger than that.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable

import structlog

from runner import catalog, retention
from runner.config import ADD_ON_STORAGE, Config
from runner.errors import UsageError
from runner.targets import Leftover, ObjectInfo, Target, open_target

log = structlog.get_logger()

DEFAULT_LEFTOVER_AGE = datetime.timedelta(hours=24)


@dataclasses.dataclass(frozen=True)
class Step:
    """One line of the plan, and the objects (in this order) or the leftover that carrying it out removes."""

    verb: str  # "keep" or "delete"
    subject: str  # "LABEL ID" for a backup, the key for a leftover
    reason: str
    keys: tuple[str, ...] = ()
    leftover: Leftover | None = None
    is_leftover: bool = False

    def __str__(self) -> str:
        return f"{self.verb:<6}  {self.subject}  {self.reason}"


def run(
    config: Config,
    *,
    dry_run: bool,
    leftover_age: datetime.timedelta = DEFAULT_LEFTOVER_AGE,
    report: Callable[[str], None],
) -> None:
    """Prune the configured label (or every label); ``report`` gets each step's line once it is done."""
    if config.retention is None:
        raise UsageError(
            "no retention policy is set, so prune will not delete anything",
            hint=f"set REMORA_RETENTION (e.g. {retention.EXAMPLE}) or pass --keep",
        )
    config.require("target_url")
    if config.add_on_storage:
        raise UsageError(f"{ADD_ON_STORAGE} is pruned by the add-on itself, by the policy set there",
                         hint="change the retention policy in the add-on's dashboard or API")
    label = config.storage_label
    now = datetime.datetime.now(datetime.timezone.utc)
    with open_target(config) as target:
        steps = plan(target, label, config.retention, now=now, leftover_age=leftover_age)
        for step in steps:
            if not dry_run:
                _carry_out(target, step)
            report(str(step))
    log.info(
        "prune planned, nothing deleted (dry run)" if dry_run else "prune complete",
        label=label or "every label",
        policy=str(config.retention),
        kept=sum(step.verb == "keep" for step in steps),
        deleted=sum(step.verb == "delete" and not step.is_leftover for step in steps),
        leftovers=sum(step.is_leftover for step in steps),
    )


def _carry_out(target: Target, step: Step) -> None:
    for key in step.keys:
        target.delete(key)
    if step.leftover is not None:
        target.discard(step.leftover)


def plan(
    target: Target,
    label: str | None,
    policy: retention.Policy,
    *,
    now: datetime.datetime,
    leftover_age: datetime.timedelta,
) -> list[Step]:
    """What prune keeps and deletes under ``label`` (None: every label), backups oldest first, then leftovers."""
    prefix = f"{label}/" if label else ""
    objects = {info.key: info for info in target.list(prefix)}
    return decide(objects, target.leftovers(prefix), policy, now=now, leftover_age=leftover_age)


def decide(
    objects: dict[str, ObjectInfo],
    leftovers: list[Leftover],
    policy: retention.Policy,
    *,
    now: datetime.datetime,
    leftover_age: datetime.timedelta,
) -> list[Step]:
    """The plan for a listing (key → object) and its unfinished uploads. Pure: the add-on's retention uses it too."""
    steps = _backup_steps(objects, policy)
    steps += _orphan_steps(objects, now=now, leftover_age=leftover_age)
    steps += _upload_steps(leftovers, now=now, leftover_age=leftover_age)
    return steps


def _backup_steps(objects: dict[str, ObjectInfo], policy: retention.Policy) -> list[Step]:
    """Keep or delete each complete backup, judging each label's backups on their own."""
    by_label: dict[str, dict[str, datetime.datetime]] = {}
    for key in objects:
        file = catalog.parse_key(key)
        if file is not None and file.suffix == catalog.MANIFEST_SUFFIX:
            by_label.setdefault(file.label, {})[file.id] = catalog.id_time(file.id)
    steps = []
    for label, times in sorted(by_label.items()):
        for decision in retention.plan(policy, times):
            subject = f"{label} {decision.id}"
            if decision.keep:
                steps.append(Step("keep", subject, ", ".join(decision.reasons)))
            else:
                keys = (catalog.manifest_key(label, decision.id), catalog.archive_key(label, decision.id))
                steps.append(Step("delete", subject, f"not kept by {policy}", keys=keys))
    return steps


def _orphan_steps(objects: dict[str, ObjectInfo], *, now, leftover_age) -> list[Step]:
    """Delete archives that have had no manifest for long enough: their run died before committing."""
    steps = []
    for key, info in sorted(objects.items()):
        file = catalog.parse_key(key)
        if (
            file is not None
            and file.suffix == catalog.ARCHIVE_SUFFIX
            and catalog.manifest_key(file.label, file.id) not in objects
            and now - info.modified >= leftover_age
        ):
            reason = f"archive without a manifest, {_age(info.modified, now)}"
            steps.append(Step("delete", key, reason, keys=(key,), is_leftover=True))
    return steps


def _upload_steps(leftovers: list[Leftover], *, now, leftover_age) -> list[Step]:
    """Discard old unfinished uploads of backup files; anything else in the target is not ours to touch."""
    steps = []
    for leftover in sorted(leftovers, key=lambda lo: (lo.key, lo.handle)):
        if catalog.parse_key(leftover.key) is not None and now - leftover.modified >= leftover_age:
            reason = f"unfinished upload, {_age(leftover.modified, now)}"
            steps.append(Step("delete", leftover.key, reason, leftover=leftover, is_leftover=True))
    return steps


def _age(modified: datetime.datetime, now: datetime.datetime) -> str:
    return f"last written {(now - modified).total_seconds() / 3600:.1f} h ago"
