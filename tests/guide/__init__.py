"""The guides, read as steps and run in bash as a reader would, one block after another.

A guide is a document (docs/local.md, docs/heroku.md) or a section of one (the README's quick
start) whose shell blocks (```sh) run in order in one working folder, each
block in a fresh `bash` that starts where the previous one ended: the same variables (exported
or not), functions and folder. An HTML comment on the line before a block says how to take it:

    (none)                           run it; it must exit 0
    <!-- guide: yours -->            NAME=value lines for the reader to change: the test gives its own
    <!-- guide: expect "TEXT" -->    run it; its output must hold TEXT
    <!-- guide: until "TEXT" -->     run it again, up to a minute, until its output holds TEXT
    <!-- guide: server: ACTION -->   commands for the reader's own server: the test does ACTION instead
    <!-- guide: not run: REASON -->  not run here, and REASON says why
    <!-- guide: deploy button -->    (before a table of form fields) the test deploys from app.json
    <!-- guide: scheduler -->        (before a table of Heroku Scheduler jobs) the test runs each job as the
                                     Scheduler would, from then on

A block the test cannot take fails the test: nothing in a guide goes unexercised by accident.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from tests.helpers import REPO

_MARKER = re.compile(
    r"<!-- guide: (?P<kind>yours|expect|until|server|not run|deploy button|scheduler)(?::? (?P<detail>.*?))? -->")
TABLES = ("deploy button", "scheduler")  # the markers that stand before a table rather than a block
_FENCE = re.compile(r"^```(\w*)\s*$")
_ASSIGNMENT = re.compile(r"^(?P<export>export )?(?P<name>[A-Z_][A-Z0-9_]*)=\S*(?:\s+#.*)?$")


@dataclasses.dataclass(frozen=True)
class Step:
    kind: str  # "run", "yours", "expect", "until", "server", "not run", "deploy button", "scheduler"
    detail: str  # the TEXT, ACTION or REASON; for a table's marker, the table
    code: str  # the block's text ("" for a table)
    line: int  # where it starts in its document, for messages
    document: str = ""  # the document's path in the repository

    def where(self) -> str:
        return f"{self.document} line {self.line}"


@dataclasses.dataclass(frozen=True)
class Guide:
    """A whole document, or the section of it under ``heading`` (to the next heading of its level)."""

    path: Path
    heading: str | None = None

    def text(self) -> tuple[str, int]:
        """The guide's text, and the line of the document it starts on."""
        lines = self.path.read_text().splitlines()
        if self.heading is None:
            return "\n".join(lines), 1
        level = self.heading.split(" ", 1)[0]
        start = lines.index(self.heading)
        end = next((i for i in range(start + 1, len(lines))
                    if lines[i].startswith("#") and lines[i].split(" ", 1)[0] == level), len(lines))
        return "\n".join(lines[start:end]), start + 1

    def steps(self) -> list[Step]:
        """The guide's shell blocks and markers, in order."""
        return _steps(*self.text(), document=self.path.relative_to(REPO).as_posix())


def _steps(text: str, first_line: int, *, document: str) -> list[Step]:
    lines = text.splitlines()
    found, marker, i = [], None, 0
    while i < len(lines):
        line = lines[i]
        if m := _MARKER.fullmatch(line.strip()):
            marker = (m["kind"], (m["detail"] or "").strip().strip('"'), first_line + i)
            if m["kind"] in TABLES:
                table = []
                while i + 1 < len(lines) and (lines[i + 1].startswith("|") or not lines[i + 1].strip()):
                    i += 1
                    table.append(lines[i])
                found.append(Step(m["kind"], "\n".join(table), "", first_line + i, document))
                marker = None
        elif m := _FENCE.match(line):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            if m[1] == "sh":
                kind, detail, _ = marker or ("run", "", 0)
                found.append(Step(kind, detail, "\n".join(lines[i + 1:end]) + "\n", first_line + i, document))
            marker = None
            i = end
        elif line.strip():
            marker = None  # a marker belongs to the block right after it
        i += 1
    return found


def yours(step: Step, values: Mapping[str, str]) -> str:
    """The block with the test's value in each NAME=value line; every name must have one."""
    out = []
    for line in step.code.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _ASSIGNMENT.match(line)
        assert m, f"{step.where()}: a `yours` block holds only NAME=value lines, not {line!r}"
        assert m["name"] in values, f"{step.where()}: the guide asks the reader for {m['name']}; give the test a value"
        out.append(f"{m['export'] or ''}{m['name']}={shlex.quote(values[m['name']])}")
    return "\n".join(out) + "\n"


def form(step: Step) -> dict[str, str]:
    """The deploy button's form: {variable: "$VAR" or a file name}, from the table's backticked cells."""
    fields = {}
    for row in step.detail.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) >= 2 and (name := re.fullmatch(r"`([A-Z_][A-Z0-9_]*)`", cells[0])):
            source = re.search(r"`([^`]+)`", cells[1])
            assert source, f"{step.where()}: the form row for {name[1]} names no `$VARIABLE` or `file`"
            fields[name[1]] = source[1]
    assert fields, f"{step.where()}: the deploy button's table has no rows"
    return fields


def jobs(step: Step) -> list[str]:
    """The Scheduler's jobs: the backticked command that starts each row of the table."""
    found = [m[1] for row in step.detail.splitlines() if (m := re.match(r"\|\s*`([^`]+)`", row.strip()))]
    assert found, f"{step.where()}: the Scheduler's table has no jobs"
    return found


# Variables bash makes itself, or that change on their own: never carried from block to block.
_BASH_OWN = ("BASH BASHOPTS BASHPID BASH_ALIASES BASH_ARGC BASH_ARGV BASH_ARGV0 BASH_CMDS BASH_COMMAND "
             "BASH_LINENO BASH_LOADABLES_PATH BASH_REMATCH BASH_SOURCE BASH_SUBSHELL BASH_VERSINFO "
             "BASH_VERSION COLUMNS COMP_WORDBREAKS DIRSTACK EPOCHREALTIME EPOCHSECONDS EUID FUNCNAME "
             "GROUPS HISTCMD HISTFILE HOSTNAME HOSTTYPE IFS LINENO LINES MACHTYPE OLDPWD OPTARG OPTERR "
             "OPTIND OSTYPE PIPESTATUS PPID PS4 PWD RANDOM SECONDS SHELLOPTS SHLVL SRANDOM UID _")


class Shell:
    """Runs blocks as a reader's terminal would: state carries over, each block under `set -euo pipefail`."""

    def __init__(self, workdir: Path, env: Mapping[str, str], *, typed: str = ""):
        self.workdir = workdir
        self.env = dict(env)
        self.typed = typed  # what the reader types, for a block that reads the terminal
        self.state = workdir / ".guide-state.sh"
        self.state.write_text(f"cd {shlex.quote(str(workdir))}\n")

    def run(self, code: str, *, timeout: float = 300) -> subprocess.CompletedProcess:
        script = "\n".join([
            "set -euo pipefail",
            f". {shlex.quote(str(self.state))}",
            code,
            "__guide_own=' " + _BASH_OWN + " '",
            "{ for __n in $(compgen -v); do",
            '    case "$__guide_own" in *" $__n "*) continue;; esac',
            '    case "$__n" in __*) continue;; esac',
            '    declare -p "$__n" | grep -v "^declare -[a-zA-Z]*r"',
            "  done",
            "  declare -f",
            '  printf "cd %q\\n" "$PWD"',
            f"}} > {shlex.quote(str(self.state))}.new || true",
            f"mv {shlex.quote(str(self.state))}.new {shlex.quote(str(self.state))}",
        ])
        return subprocess.run(["bash", "-c", script], env=self.env, cwd=self.workdir, capture_output=True,
                              text=True, timeout=timeout, input=self.typed, check=False)

    def variable(self, name: str) -> str:
        """A variable's value at the end of the last block, as bash has it."""
        result = self.run(f'printf %s "${{{name}}}"')
        assert result.returncode == 0, f"the guide never set {name}: {result.stderr}"
        return result.stdout


def take(step: Step, shell: Shell, *, values: Mapping[str, str],
         actions: Mapping[str, Callable[[Shell], None]], deploy: Callable[[Shell, dict], None],
         schedule: Callable[[Shell, list[str]], None] | None = None) -> str:
    """Do one step; return what it printed. Fails with the step's place and output when it goes wrong."""
    if step.kind == "not run":
        assert step.detail, f"{step.where()}: a block that is not run must say why"
        return ""
    if step.kind == "server":
        assert step.detail in actions, f"{step.where()}: the test knows no server action {step.detail!r}"
        actions[step.detail](shell)
        return ""
    if step.kind == "deploy button":
        deploy(shell, form(step))
        return ""
    if step.kind == "scheduler":
        assert schedule is not None, f"{step.where()}: this guide's test runs no Scheduler jobs"
        schedule(shell, jobs(step))
        return ""
    code = yours(step, values) if step.kind == "yours" else step.code
    deadline = time.monotonic() + 60
    while True:
        result = shell.run(code)
        output = result.stdout + result.stderr
        told = f"{step.where()}:\n{step.code}\nexit {result.returncode}, output:\n{output}"
        if step.kind == "until" and (result.returncode != 0 or step.detail not in output):
            assert time.monotonic() < deadline, f"never printed {step.detail!r} in a minute; last try at {told}"
            time.sleep(1)
            continue
        assert result.returncode == 0, f"failed at {told}"
        if step.kind == "expect":
            assert step.detail in output, f"expected {step.detail!r} at {told}"
        return output
