"""The README, the changelog and docs/: every link stays inside the repository and
resolves, and no page refers to an issue tracker's numbers (it is not in the repo)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]
# [text](target) and ![alt](target); the target ends at the first space or ')'.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
ISSUE = re.compile(r"\bissues? #?\d+|\bissue #", re.IGNORECASE)


def links(page: Path) -> list[str]:
    return LINK.findall(page.read_text(encoding="utf-8"))


def test_the_pages_exist() -> None:
    assert (REPO / "docs" / "development.md") in PAGES
    assert len(PAGES) >= 10


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_links_stay_in_the_repository_and_resolve(page: Path) -> None:
    for target in links(page):
        assert "://" not in target, f"{page.name} links outside the repository: {target}"
        path = target.split("#", 1)[0]
        if path:
            assert (page.parent / path).exists(), f"{page.name}: {target} does not exist"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_page_cites_an_issue_number(page: Path) -> None:
    found = ISSUE.findall(page.read_text(encoding="utf-8"))
    assert not found, f"{page.name} cites {found}"


def test_the_link_checker_sees_links_and_issue_numbers() -> None:
    """The checks above can fail: the patterns match what they look for."""
    assert LINK.findall("see [a](docs/a.md#x) and ![p](../p.png)") == ["docs/a.md#x", "../p.png"]
    assert ISSUE.findall("as issue 12 asked, and issue #3") == ["issue 12", "issue #3"]
    assert links(REPO / "README.md")
