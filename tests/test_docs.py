"""The docs hang together: the event catalog lists exactly the event types the code has,
and every relative link in README.md and docs/ points at a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from eventsrc.events import CURRENT_SCHEMA_VERSIONS

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_the_event_catalog_lists_every_event_type_and_no_other() -> None:
    text = (REPO / "docs" / "events.md").read_text()
    types_section = text.split("## Types", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(\w+)` \|", types_section, re.M))
    assert documented == set(CURRENT_SCHEMA_VERSIONS)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_point_at_existing_files(page: Path) -> None:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
