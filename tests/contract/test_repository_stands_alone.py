"""The repository stands alone: no tracked file points at documents outside it (the brief's folder
that sat beside the project during its making), and every relative link of its Markdown leads to a
file of the repository. The HTTP contract is docs/api.md, the events contract docs/events.md with
docs/events/ and docs/asyncapi.yaml."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from shared.config import REPO_ROOT

# The sibling folder, its specification and seed files, and the upper-case names of the documents
# that lived there (this file names them, and is the one file not searched).
OUTSIDE = re.compile(
    r"\.\./shared\b"
    r"|\bshared/(spec|seed|research|hooks)/"
    r"|\b(DESIGN|API|EVENTS)\.md\b"
    r"|tasks-api-overview\.fr"
)
# [text](target) in Markdown, the target up to a space or the closing parenthesis
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")


def tracked_files() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    return [REPO_ROOT / name for name in listed.decode().split("\0") if name]


def text_of(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
        return None  # binary (images), or deleted in the work tree and not yet committed


def test_no_tracked_file_points_outside_the_repository() -> None:
    found = []
    for path in tracked_files():
        text = text_of(path)
        if text is None or path.resolve() == Path(__file__).resolve():
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if match := OUTSIDE.search(line):
                found.append(f"{path.relative_to(REPO_ROOT)}:{number}: {match.group(0)}")
    assert not found, "files pointing outside the repository:\n" + "\n".join(found)


def test_every_relative_markdown_link_leads_to_a_file_of_the_repository() -> None:
    root = REPO_ROOT.resolve()
    broken = []
    for path in tracked_files():
        if path.suffix != ".md" or (text := text_of(path)) is None:
            continue
        for target in MARKDOWN_LINK.findall(text):
            if re.match(r"[a-z][a-z0-9+.-]*:|#", target):
                continue  # a URL (https:, mailto:) or an anchor of the same page
            resolved = (path.parent / target.split("#")[0]).resolve()
            if not resolved.is_relative_to(root) or not resolved.exists():
                broken.append(f"{path.relative_to(REPO_ROOT)}: {target}")
    assert not broken, "links that leave the repository or lead nowhere:\n" + "\n".join(broken)


def test_the_pattern_catches_what_it_is_for() -> None:
    for pointer in ("../shared/spec/API.md", "see DESIGN.md", "EVENTS.md §2", "shared/seed/x.md"):
        assert OUTSIDE.search(pointer), pointer
    for fine in ("docs/api.md §1", "docs/events.md", "shared/events/catalog.py", "shared/tests/"):
        assert not OUTSIDE.search(fine), fine
