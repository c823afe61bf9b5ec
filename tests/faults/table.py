"""The faults the suite injects, each with the targets it applies to and its one allowed outcome.

``tests/test_faults.py`` runs every row against every target it names, and
``scripts/fault_table.py`` renders this table into docs/testing.md.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Callable

from tests.faults.harness import MIB, Failed, FaultRun, Finished, Restored
from tests.faults.proxy import UNREACHABLE, Answer, Cut, Hook, Redirect, Refuse, Reset, Stall
from tests.procs import children_of, kill_encrypting_gpg

ALL = ("file", "s3", "sftp")
NETWORK = ("s3", "sftp")
ATTEMPTS = 5  # REMORA_RETRY_ATTEMPTS in the suite's runs
RATE = 4 * MIB  # bytes a second the proxy lets through when an upload must still be running


@dataclasses.dataclass(frozen=True)
class Fault:
    name: str  # the test's id
    description: str  # what happens, for docs/testing.md
    targets: tuple[str, ...]
    outcome: Restored | Failed
    inject: Callable[[FaultRun], Finished]  # runs the backup under the fault
    database: str = "medium"  # "big" where the fault must strike a dump still running
    http: bool = False  # the S3 proxy reads requests, to answer chosen ones itself
    env: dict[str, str] = dataclasses.field(default_factory=dict)  # more variables for the runner


def sftp_drops(run: FaultRun) -> Finished:
    # 8 MiB parts: the first drop strikes part 1; the second part 2, after part 1 (sent again
    # whole) was confirmed; the third part 2 again, on top of the confirmed part 1
    run.proxy.plan(Cut(after=3 * MIB), Reset(after=10 * MIB), Cut(after=2 * MIB))
    finished = run.backup()
    assert finished.stderr.count("event=\"resuming upload\"") == 3, finished.stderr
    return finished


def s3_drops(run: FaultRun) -> Finished:
    run.proxy.plan(Cut(after=2 * MIB), Reset(after=3 * MIB), Cut(after=1 * MIB))
    return run.backup()


def stall(run: FaultRun) -> Finished:
    run.proxy.plan(Stall(after=3 * MIB))
    return run.backup()


def refusals(run: FaultRun) -> Finished:
    first = [Cut(after=3 * MIB)] if run.target == "sftp" else []  # SFTP's one connection is up already
    run.proxy.plan(*first, Refuse(), Refuse(), Refuse())
    return run.backup()


def s3_errors(run: FaultRun) -> Finished:
    run.proxy.answer(
        Answer("CreateMultipartUpload", 503, "ServiceUnavailable"),
        Answer("UploadPart 1", 503, "SlowDown", times=2),
        Answer("UploadPart 2", 500, "InternalError"),
        Answer("UploadPart 3", 503, "SlowDown", times=3),
        Answer("CompleteMultipartUpload", 503, "SlowDown"),
        Answer("PutObject", 500, "InternalError"),
    )
    return run.backup()


def lost_replies(run: FaultRun) -> Finished:
    run.proxy.answer(
        Answer("CreateMultipartUpload", None),  # S3 started an upload the runner never hears of
        Answer("UploadPart 2", None),
        Answer("CompleteMultipartUpload", None),
    )
    return run.backup()


def slowdown_forever(run: FaultRun) -> Finished:
    run.proxy.answer(Answer("UploadPart 2", 503, "SlowDown", times=ATTEMPTS))
    return run.backup()


def denied_part(run: FaultRun) -> Finished:
    run.proxy.answer(Answer("UploadPart 2", 403, "AccessDenied"))
    finished = run.backup()
    assert run.proxy.operations.count("UploadPart 2") == 1, run.proxy.operations
    return finished


def wrong_secret(run: FaultRun) -> Finished:
    finished = run.backup()
    assert run.proxy.operations.count("CreateMultipartUpload") == 1, run.proxy.operations
    assert finished.seconds < 10, finished.seconds
    return finished


def changed_host_key(run: FaultRun) -> Finished:
    run.proxy.plan(Cut(after=3 * MIB), Redirect(run.helpers["impostor"]()))
    return run.backup()


def unreachable(run: FaultRun) -> Finished:
    run.proxy.plan(Cut(after=3 * MIB), *[Refuse()] * (ATTEMPTS - 1))
    return run.backup()


def dump_backend_terminated(run: FaultRun) -> Finished:
    runner = run.start()
    assert run.terminate_dump_backend()
    return run.finish(runner)


def gpg_killed(run: FaultRun) -> Finished:
    runner = run.start()
    kill_encrypting_gpg(runner)
    finished = run.finish(runner)
    assert "pg_dump failed" not in finished.stderr, finished.stderr
    return finished


def sigterm(run: FaultRun) -> Finished:
    if run.proxy is not None:
        run.proxy.rate = RATE
    runner = run.start()
    run.wait_until_uploading(runner)
    return run.signal(runner, signal.SIGTERM)


def sigterm_stalled(run: FaultRun) -> Finished:
    run.proxy.plan(Stall(after=3 * MIB))
    runner = run.start()
    assert run.proxy.stalled.wait(60)
    time.sleep(0.5)  # the runner is now waiting on the stalled link
    return run.signal(runner, signal.SIGTERM)


def sigterm_server_gone(run: FaultRun) -> Finished:
    run.proxy.plan(Stall(after=3 * MIB), Stall(after=0))  # the second: the abort's new connection
    runner = run.start()
    assert run.proxy.stalled.wait(60)
    time.sleep(0.5)
    return run.signal(runner, signal.SIGTERM)


def sigkill(run: FaultRun) -> Finished:
    if run.proxy is not None:
        run.proxy.rate = RATE
    runner = run.start()
    run.wait_until_uploading(runner)
    orphans = [pid for pid, _ in children_of(runner.pid)]
    finished = run.signal(runner, signal.SIGKILL)
    _wait_gone(orphans)  # pg_dump and gpg die of a broken pipe once their reader is gone
    return finished


def _wait_gone(pids: list[int], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while any(os.path.exists(f"/proc/{pid}") for pid in pids):
        assert time.monotonic() < deadline, f"{pids} outlived the killed runner"
        time.sleep(0.05)


def control_plane_errors(run: FaultRun) -> Finished:
    run.proxy.answer(
        Answer("storage start", None),  # the control plane started an upload the runner never hears of
        Answer("storage grant 1", 503, "Unavailable", times=2),
        Answer("storage grant 2", 502, "BadGateway"),
        Answer("storage complete", 503, "Unavailable"),
        Answer("storage manifest", 500, "InternalError"),
    )
    return run.backup()


def control_plane_unreachable(run: FaultRun) -> Finished:
    run.proxy.answer(Answer("storage grant 2", UNREACHABLE, times=ATTEMPTS))
    return run.backup()


def run_token_expired(run: FaultRun) -> Finished:
    run.proxy.answer(Hook("storage grant 2", run.helpers["expire"]))
    finished = run.backup()
    assert run.stored().unfinished, "the abort is refused with the token: the upload waits for the clock"
    run.helpers["clock"]()
    return finished


def restore_drops(run: FaultRun) -> Finished:
    finished = run.backup()
    run.proxy.plan(Cut(after=5 * MIB, down=True), Reset(after=7 * MIB, down=True))  # hit the restore
    return finished


FAULTS = [
    Fault("sftp-drops",
          "connection dropped 3 times mid-upload (FIN, RST, FIN), before and after a part was confirmed",
          ("sftp",), Restored(), sftp_drops),
    Fault("s3-drops", "connection dropped 3 times mid-part (FIN, RST, FIN)", ("s3",), Restored(), s3_drops),
    Fault("stall", "connection stalls mid-upload: no byte moves for longer than REMORA_STORAGE_TIMEOUT",
          NETWORK, Restored(), stall, env={"REMORA_STORAGE_TIMEOUT": "2"}),
    Fault("refused", "new connections refused 3 times (for SFTP, after a drop)", NETWORK, Restored(), refusals),
    Fault("s3-errors", "S3 answers 503 ServiceUnavailable, 503 SlowDown and 500 InternalError on the "
          "upload's start, several parts, its completion and the manifest", ("s3",), Restored(), s3_errors,
          http=True),
    Fault("lost-replies", "S3's replies to the upload's start, a part and the completion are lost "
          "(the server acted, the runner never heard)", ("s3",), Restored(), lost_replies, http=True),
    Fault("restore-drops", "connection dropped twice while a restore downloads", NETWORK, Restored(),
          restore_drops),
    Fault("slowdown-forever", f"S3 answers 503 SlowDown to a part {ATTEMPTS} times in a row",
          ("s3",), Failed(6, f"gave up after {ATTEMPTS} attempts", retries=ATTEMPTS - 1), slowdown_forever,
          http=True),
    Fault("denied-part", "S3 answers 403 AccessDenied to part 2", ("s3",),
          Failed(6, "access denied", retries=0), denied_part, http=True),
    Fault("wrong-secret", "wrong AWS secret key (S3 says SignatureDoesNotMatch)", ("s3",),
          Failed(6, "SignatureDoesNotMatch", retries=0), wrong_secret, http=True,
          env={"AWS_SECRET_ACCESS_KEY": "not-the-secret-key-0123456789"}),
    Fault("host-key-changed", "after a drop, the server shows another host key (refused at once, no further try)",
          ("sftp",),
          Failed(6, "not the pinned one", retries=1), changed_host_key),
    Fault("unreachable", "after a drop, the server stays unreachable through every retry", ("sftp",),
          Failed(6, f"gave up after {ATTEMPTS} attempts", retries=ATTEMPTS - 1), unreachable),
    Fault("control-plane-errors", "the add-on's storage: the control plane's answer to the upload's start is lost "
          "(it started one), and it answers 503, 502 and 500 to parts' grants, the completion and the manifest",
          ("managed",), Restored(), control_plane_errors, http=True),
    Fault("control-plane-unreachable", f"the add-on's storage: the control plane cannot be reached for a part's "
          f"grant, {ATTEMPTS} times in a row", ("managed",),
          Failed(6, f"gave up after {ATTEMPTS} attempts", retries=ATTEMPTS - 1), control_plane_unreachable,
          http=True),
    Fault("run-token-expired", "the add-on's storage: the run outlives its token mid-upload; its abort is refused "
          "too, so the upload waits for the clock, whose next pass aborts it", ("managed",),
          Failed(6, "outlived its time to live", retries=0), run_token_expired, http=True),
    Fault("dump-backend-terminated", "pg_dump's server process terminated mid-dump", ALL,
          Failed(4, "pg_dump failed"), dump_backend_terminated, database="big"),
    Fault("gpg-killed", "gpg killed mid-stream (blamed, not pg_dump's SIGPIPE)", ALL,
          Failed(5, "gpg could not encrypt"), gpg_killed, database="big"),
    Fault("sigterm", "the runner gets SIGTERM mid-upload", ALL, Failed(143, "stopped by SIGTERM"), sigterm,
          database="big"),
    Fault("sigterm-stalled", "the runner gets SIGTERM while a part is stuck on a stalled connection",
          NETWORK, Failed(143, "stopped by SIGTERM"), sigterm_stalled, env={"REMORA_STORAGE_TIMEOUT": "60"}),
    Fault("sigterm-server-gone", "the runner gets SIGTERM while the server answers nothing, not even a new "
          "connection: the cleanup gives up at the deadline", ("sftp",),
          Failed(143, "cleanup did not finish", left_unfinished=True), sigterm_server_gone,
          env={"REMORA_STORAGE_TIMEOUT": "60"}),
    Fault("sigkill", "the runner gets SIGKILL mid-upload", ALL, Failed(-9, left_unfinished=True), sigkill,
          database="big"),
]
