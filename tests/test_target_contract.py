"""The contract every storage target keeps (runner/targets/base.py), run against each real server."""

from __future__ import annotations

import datetime
import os

import pytest
import structlog

from runner.config import Config
from runner.errors import ObjectNotFound
from runner.targets import open_target


@pytest.fixture
def target(target_env):
    with open_target(Config.from_env(target_env)) as target:
        yield target


def read(target, key: str) -> bytes:
    with target.open(key) as stream:
        return stream.read()


def test_put_then_read_stat_list(target):
    target.put("db/2026/01/02/a.manifest.json", b'{"x": 1}')
    assert read(target, "db/2026/01/02/a.manifest.json") == b'{"x": 1}'
    assert target.stat("db/2026/01/02/a.manifest.json").size == 8
    assert [i.key for i in target.list("db/")] == ["db/2026/01/02/a.manifest.json"]
    assert target.list("other/") == []


def test_a_multipart_upload_reads_back_byte_for_byte(target):
    upload = target.begin("db/big.dump.gpg")
    parts = [os.urandom(upload.part_size(1)), os.urandom(upload.part_size(2)), os.urandom(1234)]
    for number, data in enumerate(parts, start=1):
        upload.send(number, data)
    upload.complete()
    assert read(target, "db/big.dump.gpg") == b"".join(parts)
    assert target.stat("db/big.dump.gpg").size == sum(map(len, parts))


def test_a_part_sent_again_replaces_the_first_try(target):
    upload = target.begin("db/retried")
    first = os.urandom(upload.part_size(1))
    upload.send(1, os.urandom(len(first)))
    upload.send(1, first)
    upload.send(2, b"tail")
    upload.complete()
    assert read(target, "db/retried") == first + b"tail"


def test_nothing_is_visible_before_complete_and_abort_leaves_nothing(target):
    upload = target.begin("db/partial.dump.gpg")
    upload.send(1, os.urandom(upload.part_size(1)))
    assert target.list() == []
    with pytest.raises(ObjectNotFound):
        target.stat("db/partial.dump.gpg")
    upload.abort()
    upload.abort()  # twice is fine
    assert target.list() == []


def test_an_abort_after_complete_changes_nothing(target):
    upload = target.begin("db/kept.dump.gpg")
    upload.send(1, b"kept")
    upload.complete()
    with structlog.testing.capture_logs() as logs:
        upload.abort()  # as a caller's cleanup does when an error comes after the upload completed
    assert read(target, "db/kept.dump.gpg") == b"kept" and logs == []


def test_missing_objects(target):
    with pytest.raises(ObjectNotFound):
        target.stat("no/such/key")
    with pytest.raises(ObjectNotFound):
        target.open("no/such/key")
    target.delete("no/such/key")


def test_delete_removes(target):
    target.put("db/x", b"1")
    target.delete("db/x")
    assert target.list() == []


def test_an_empty_object(target):
    upload = target.begin("db/empty")
    upload.send(1, b"")
    upload.complete()
    assert read(target, "db/empty") == b""


def test_an_unfinished_upload_is_a_leftover_until_discarded(target):
    started = datetime.datetime.now(datetime.timezone.utc)
    upload = target.begin("db/2026/01/02/killed.dump.gpg")
    upload.send(1, os.urandom(upload.part_size(1)))
    target.begin("other/x").send(1, b"another label's")
    target.put("db/2026/01/02/done.manifest.json", b"{}")

    [leftover] = target.leftovers("db/")
    assert leftover.key == "db/2026/01/02/killed.dump.gpg"
    assert abs(leftover.modified - started) < datetime.timedelta(seconds=30)
    assert {lo.key for lo in target.leftovers()} == {"db/2026/01/02/killed.dump.gpg", "other/x"}
    assert [i.key for i in target.list("db/")] == ["db/2026/01/02/done.manifest.json"]

    target.discard(leftover)
    target.discard(leftover)  # twice is fine
    assert [lo.key for lo in target.leftovers()] == ["other/x"]
    upload.abort()  # what the killed run would have done: still harmless
    assert [i.key for i in target.list()] == ["db/2026/01/02/done.manifest.json"]


def test_completed_and_aborted_uploads_leave_no_leftover(target):
    done = target.begin("db/done")
    done.send(1, b"x")
    done.complete()
    aborted = target.begin("db/aborted")
    aborted.send(1, b"y")
    aborted.abort()
    assert target.leftovers() == []
