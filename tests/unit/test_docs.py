"""The documentation holds together: the README is the entrance (short, linking every page of docs/),
and every relative link of README.md and docs/*.md reaches an existing file and, with an anchor,
a heading of that page (GitHub's anchors)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250  # issue 21: what a newcomer needs in the first ten minutes; the rest is in docs/


def _prose(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)  # headings and links in code are not


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but ``-`` and ``_`` dropped, spaces to ``-``."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", _prose(page.read_text()), flags=re.M)}


def links(page: Path) -> list[str]:
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", _prose(page.read_text())) if not t.startswith(("http", "mailto:"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_reaches_a_file_and_a_heading(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with that anchor in {dest.name}")
    assert broken == []


def test_the_readme_is_the_entrance():
    readme = ROOT / "README.md"
    n = len(readme.read_text().splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines: move the manual part to a page of docs/ and link it"
    linked = {(readme.parent / t.partition("#")[0]).resolve() for t in links(readme)}
    assert [p.name for p in PAGES[1:] if p.resolve() not in linked] == []


def test_the_anchor_rule_matches_githubs():
    assert github_anchor("The invariants: `make check`") == "the-invariants-make-check"
    assert github_anchor("Rollbacks stick; holding automatic promotions") == "rollbacks-stick-holding-automatic-promotions"
    assert github_anchor("Celery workers on one machine: `make run EXECUTOR=celery`") == (
        "celery-workers-on-one-machine-make-run-executorcelery")
    assert github_anchor("Every run's gate decision") == "every-runs-gate-decision"
