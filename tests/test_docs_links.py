"""Every relative link of the README and the pages under docs/ leads somewhere: the file exists, and an anchor
names a heading of the page it points to (GitHub's heading slugs). Moving a section, or renaming a heading, must
not leave readers at a dead link."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
# A page the README carries word for word (docs/integrations.md, tests/test_docs_snippets.py) is read there, where
# its anchors point; it is checked as part of the README.
PAGES = [ROOT / "README.md",
         *(page for page in sorted((ROOT / "docs").glob("*.md")) if page.read_text().strip() not in README)]
FENCE = re.compile(r"^```.*?^```$", re.S | re.M)
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#+ (.+)$", re.M)


def prose(page: Path) -> str:
    """The page without its fenced code blocks, where brackets are code, not links."""
    return FENCE.sub("", page.read_text())


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for the page's headings: lower case, punctuation dropped, spaces as hyphens, and a -1, -2
    ... suffix on repeats."""
    seen: dict[str, int] = {}
    names = set()
    for heading in HEADING.findall(prose(page)):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        names.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return names


def test_github_slugs_of_headings_with_punctuation(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Results: every learner\n## On today's MAPPO\n### RLlib (Ray): `pip install -e \".[rllib]\"`\n"
                    "## On today's MAPPO\n")
    assert anchors(page) == {"results-every-learner", "on-todays-mappo", "rllib-ray-pip-install--e-rllib",
                             "on-todays-mappo-1"}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_resolve(page):
    dead = []
    for target in LINK.findall(prose(page)):
        if re.match(r"[a-z]+:", target):  # https:, mailto: ...: not ours to check offline
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            dead.append(f"{target} (no file {linked.relative_to(ROOT) if linked.is_relative_to(ROOT) else linked})")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            dead.append(f"{target} (no heading #{anchor} in {linked.relative_to(ROOT)})")
    assert not dead, f"{page.relative_to(ROOT)} has dead links: {dead}"
