"""The documentation holds together: every relative link and anchor leads somewhere, and it stands on its own."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`[^`\n]*`")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)\)")
_HEADING = re.compile(r"^#{1,6} +(.+?) *#*$", re.MULTILINE)


def prose(text: str) -> str:
    """The text without code blocks, inline code or comments, where a link is only an example."""
    return _CODE.sub("", _COMMENT.sub("", _FENCE.sub("", text)))


def anchors(text: str) -> set[str]:
    """The anchors GitHub makes for a document's headings: lowercase, punctuation dropped, spaces to dashes."""
    seen: dict[str, int] = {}
    found = set()
    for heading in _HEADING.findall(_FENCE.sub("", text)):
        heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def broken_links(document: Path, text: str) -> list[str]:
    """Each relative link of ``text`` (in ``document``) whose file or anchor does not exist, as 'target: why'."""
    broken = []
    for target in _LINK.findall(prose(text)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: … are not this test's to follow
            continue
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        if not linked.is_relative_to(REPO) or not linked.exists():
            broken.append(f"{target}: no such file in the repository")
        elif anchor and (linked.suffix != ".md" or anchor not in anchors(linked.read_text())):
            broken.append(f"{target}: no heading makes #{anchor} in {linked.relative_to(REPO)}")
    return broken


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: d.relative_to(REPO).as_posix())
def test_every_relative_link_and_anchor_resolves(document):
    assert broken_links(document, document.read_text()) == []


def test_the_link_check_finds_a_broken_file_an_anchor_and_a_link_out_of_the_repository():
    document = REPO / "docs" / "design.md"
    text = ("See [runner](runner.md), [its exit codes](#exit-codes), [gone](missing.md),\n"
            "[a heading that is not there](runner.md#no-such-heading), [same page](#nowhere),\n"
            "[outside](../../etc/passwd), and `[code](not-checked.md)`.\n\n## Exit codes\n")
    assert broken_links(document, text) == [
        "missing.md: no such file in the repository",
        "runner.md#no-such-heading: no heading makes #no-such-heading in docs/runner.md",
        "#nowhere: no heading makes #nowhere in docs/design.md",
        "../../etc/passwd: no such file in the repository",
    ]


def test_anchors_are_made_as_github_makes_them():
    text = "# Remora Backup\n## 4. A read-only credential, attached\n## `check`'s report\n## Runs\n## Runs\n"
    assert anchors(text) == {"remora-backup", "4-a-read-only-credential-attached", "checks-report", "runs", "runs-1"}


def test_the_readme_is_short_and_maps_every_document():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 220
    assert "make demo" in readme and "make test" in readme
    linked = {target.partition("#")[0] for target in _LINK.findall(prose(readme))}
    assert {f"docs/{d.name}" for d in DOCUMENTS[1:]} <= linked, "every page of docs/ is one click from the README"


def test_nothing_in_the_repository_points_outside_it_for_its_design():
    outside = "/".join(["..", "shared"])  # spelt in parts, so that this file does not name it
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    naming = []
    for name in tracked.decode().split("\0"):
        path = REPO / name
        if name and path.is_file() and outside.encode() in path.read_bytes():
            naming.append(name)
    assert naming == []
