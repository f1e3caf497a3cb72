"""The front page stays a front page, and the docs hold together: README.md is at most 250 lines, its first 40
lines hold the two set-up commands (the one ``.ci/run`` runs among them), and every relative link in README.md and
docs/*.md points at a file that exists (and, with ``#anchor``, at a heading of it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
BUILD_COMMAND = "pip install -c ci-constraints.txt -e . && yamlllm-export build models/tiny-llama.yaml -o out/tiny-llama --overwrite"
TEST_COMMAND = 'pip install -c ci-constraints.txt -e ".[test]" && python -m pytest -n 2 -q'
# [text](target) and ![alt](target); a target with a scheme (https:, mailto:) is not relative
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def test_readme_is_short_and_starts_with_the_two_commands():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move reference material to docs/"
    head = "\n".join(lines[:40])
    assert BUILD_COMMAND in head and TEST_COMMAND in head


def test_ci_runs_the_checks_then_the_readme_test_command():
    """``.ci/run`` installs as the README says, runs ruff and mypy, then the README's pytest command."""
    ci = (ROOT / ".ci" / "run").read_text()
    steps = [
        'pip install -q -c ci-constraints.txt -e ".[test]"',
        "ruff check .",
        "ruff format --check .",
        "mypy",
        "python -m pytest -n 2 -q",
    ]
    where = [m.start() if (m := re.search(rf"^(exec )?{re.escape(s)}( |$)", ci, re.M)) else -1 for s in steps]  # line starts, in order
    assert -1 not in where and where == sorted(where), dict(zip(steps, where, strict=True))


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    heads = re.findall(r"^#+\s+(.*)$", page.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code holds no links
    text = re.sub(r"`[^`\n]*`", "", text)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def _broken(page: Path) -> list[str]:
    broken = []
    for target in _links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(target)
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    assert not _broken(page), f"{page.relative_to(ROOT)}: broken links {_broken(page)}"


def test_the_link_checker_sees_a_broken_link(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# Top\n[ok](p.md#top) [gone](missing.md) [nohead](p.md#nope) [web](https://x.org) `[c](c.md)`\n```\n[x](y.md)\n```\n")
    assert _links(page) == ["p.md#top", "missing.md", "p.md#nope"]
    assert _broken(page) == ["missing.md", "p.md#nope"]
