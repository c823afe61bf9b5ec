"""``remora-backup prune`` against each real target: exactly what the policy keeps, leftovers only once old."""

from __future__ import annotations

import datetime
import json
import re
import time

import structlog

from runner import catalog, cli
from runner.config import Config
from runner.targets import Target, open_target
from tests.helpers import craft_backup, ok, remora, start_remora, upload_in_flight

POLICY = "daily=3,weekly=3,monthly=4"
# Against POLICY, with a real backup taken today as the newest: 2020-03-10 is a Tuesday in 2020-W11,
# 03-09 a Monday of the same week, 03-02 a Monday of W10.
CRAFTED = {
    "a": ("2020-03-10T10:00", "daily 2020-03-10, weekly 2020-W11, monthly 2020-03"),
    "b": ("2020-03-10T08:00", None),  # a's day, older
    "c": ("2020-03-09T10:00", "daily 2020-03-09"),
    "d": ("2020-03-02T10:00", "weekly 2020-W10"),
    "e": ("2020-02-15T10:00", "monthly 2020-02"),
    "f": ("2020-01-15T10:00", "monthly 2020-01"),
    "g": ("2019-06-01T10:00", None),  # beyond every count
}
LEFTOVER_AGE = "0.0014"  # hours: about 5 s
AGED = 8.0  # seconds the old leftovers have had when prune runs; the young ones have had about none


def run_cli(capsys, *args: str, env: dict[str, str]) -> tuple[int, list[str], str]:
    """``remora-backup ARGS`` in this process (no interpreter start-up, so ages stay as planned)."""
    capsys.readouterr()
    logging = structlog.get_config()
    try:
        code = cli.main(list(args), env=env)
    finally:
        structlog.configure(**logging)  # main() logs to capsys's stream, which closes after this test
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def plan_lines(lines: list[str]) -> dict[str, tuple[str, str]]:
    """subject → (verb, reason), from prune's lines ``VERB  SUBJECT  REASON``."""
    found = {}
    for line in lines:
        verb, subject, reason = re.split(" {2,}", line, maxsplit=2)
        found[subject] = (verb, reason)
    return found


def contents(target: Target) -> tuple[list[str], list[tuple[str, str]]]:
    return sorted(i.key for i in target.list()), sorted((lo.key, lo.handle) for lo in target.leftovers())


def test_prune_keeps_what_the_policy_says_and_only_old_leftovers_go(
    target_env, pg_cluster, database, big_database, gpg_env, capsys
):
    env = {**target_env, **gpg_env, "REMORA_DATABASE_URL": pg_cluster.reader_url(database)}
    label = database
    with open_target(Config.from_env(env)) as target:
        # old leftovers: a run killed mid-upload, and an archive whose run died before its manifest
        killed = start_remora("backup", env={**env, "REMORA_DATABASE_URL": pg_cluster.reader_url(big_database),
                                             "REMORA_LABEL": label})
        [killed_upload] = upload_in_flight(killed, target)
        killed.kill()
        killed.communicate()
        old_orphan = catalog.archive_key(label, craft_backup(target, label, "2020-01-20T10:00", manifest=False))
        aged_from = time.monotonic()

        newest = ok(remora("backup", env=env)).stdout.strip()
        ids = {name: craft_backup(target, label, when) for name, (when, _) in CRAFTED.items()}
        other_label = craft_backup(target, "other", "2019-06-01T10:00")
        time.sleep(max(0.0, aged_from + AGED - time.monotonic()))
        # young leftovers, as a running backup has
        young_orphan = catalog.archive_key(label, craft_backup(target, label, "2020-01-21T10:00", manifest=False))
        running = target.begin(catalog.archive_key(label, catalog.new_id(datetime.datetime.now(datetime.timezone.utc))))
        running.send(1, b"in flight")
        before = contents(target)

        code, dry, err = run_cli(capsys, "prune", "--dry-run", "--keep", POLICY, "--leftover-age", LEFTOVER_AGE,
                                 env=env)
        assert code == 0, err
        assert contents(target) == before
        assert "nothing deleted (dry run)" in err

        expected = {f"{label} {newest}": "keep"} | {
            f"{label} {ids[name]}": "keep" if reason else "delete" for name, (_, reason) in CRAFTED.items()
        } | {old_orphan: "delete", killed_upload.key: "delete"}
        plan = plan_lines(dry)
        assert {subject: verb for subject, (verb, _) in plan.items()} == expected
        assert plan[f"{label} {newest}"][1].startswith("newest, daily ")
        for name, (_, reason) in CRAFTED.items():
            assert plan[f"{label} {ids[name]}"][1] == (reason or f"not kept by {POLICY}")
        assert plan[old_orphan][1].startswith("archive without a manifest, last written")
        assert plan[killed_upload.key][1].startswith("unfinished upload, last written")

        code, real, err = run_cli(capsys, "prune", "--keep", POLICY, "--leftover-age", LEFTOVER_AGE, env=env)
        assert code == 0, err
        assert real == dry
        assert "prune complete" in err and "kept=6 deleted=2 leftovers=2" in err

        kept = sorted([newest] + [ids[name] for name, (_, reason) in CRAFTED.items() if reason])
        objects, leftovers = contents(target)
        assert objects == sorted(
            [catalog.archive_key(label, i) for i in kept] + [catalog.manifest_key(label, i) for i in kept]
            + [young_orphan, catalog.archive_key("other", other_label), catalog.manifest_key("other", other_label)]
        )
        assert len(before[1]) == 2
        assert leftovers == [lo for lo in before[1] if lo != (killed_upload.key, killed_upload.handle)]

    code, listed, err = run_cli(capsys, "list", "--json", env=env)
    assert [m["id"] for m in json.loads("\n".join(listed))] == kept
    ok(remora("verify", newest, env=env))


def test_without_a_label_each_label_is_pruned_on_its_own(file_target_env, capsys):
    with open_target(Config.from_env(file_target_env)) as target:
        one = [craft_backup(target, "one", when) for when in ("2020-01-01T10:00", "2020-01-02T10:00")]
        two = [craft_backup(target, "two", when) for when in ("2021-05-01T10:00", "2021-05-01T11:00")]
        code, lines, err = run_cli(capsys, "prune", "--keep", "daily=1", env=file_target_env)
        assert code == 0, err
        assert 'label="every label"' in err
        assert [line.split()[:3] for line in lines] == [
            ["delete", "one", one[0]], ["keep", "one", one[1]], ["delete", "two", two[0]], ["keep", "two", two[1]]
        ]
        assert sorted(catalog.manifest_keys(target, None)) == sorted([one[1], two[1]])


def test_prune_without_a_policy_refuses_and_deletes_nothing(file_target_env):
    with open_target(Config.from_env(file_target_env)) as target:
        craft_backup(target, "db", "2020-01-01T10:00")
        craft_backup(target, "db", "2020-01-02T10:00")
        result = remora("prune", env=file_target_env)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1
        assert "no retention policy is set" in result.stderr
        assert "set REMORA_RETENTION (e.g. daily=7,weekly=4,monthly=12) or pass --keep" in result.stderr
        assert len(catalog.manifest_keys(target, None)) == 2
    bad = remora("prune", "--keep", "hourly=24", env=file_target_env)
    assert bad.returncode == 2 and "--keep has 'hourly=24'" in bad.stderr
    bad = remora("prune", "--keep", "daily=1", "--leftover-age", "0", env=file_target_env)
    assert bad.returncode == 2 and "--leftover-age" in bad.stderr


def test_a_run_to_the_customers_own_target_prunes_after_its_backup(managed_plane, file_target_env, database_env,
                                                                  database, gpg_env):
    """A byo resource's launched run applies REMORA_RETENTION once its backup is stored; a plain backup does not."""
    resource, _ = managed_plane.resource(plan="byo")
    env = {**file_target_env, **database_env, **gpg_env, "REMORA_RETENTION": POLICY}
    with open_target(Config.from_env(env)) as target:
        ids = {name: craft_backup(target, database, when) for name, (when, _) in CRAFTED.items()}
        unpruned = ok(remora("backup", env=env)).stdout.strip()
        assert len(catalog.manifest_keys(target, database)) == len(CRAFTED) + 1
        for key in (catalog.manifest_key(database, unpruned), catalog.archive_key(database, unpruned)):
            target.delete(key)  # else the run's backup may come in the same second, and either be the newest

        run, token = managed_plane.run(resource)
        result = ok(remora("backup", env={**env, **managed_plane.run_env(run, token)}))
        newest = result.stdout.strip()
        assert 'event=pruned step="delete' in result.stderr
        kept = {newest} | {ids[name] for name, (_, reason) in CRAFTED.items() if reason}
        assert sorted(catalog.manifest_keys(target, database)) == sorted(kept)
