"""The documentation site builds with `mkdocs build --strict`: no warning at all (a broken
link or anchor, a page missing from the nav), and the README links to pages that exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


def test_the_site_builds_strictly_without_a_warning(repo_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    env = os.environ | {"NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        capture_output=True,
        text=True,
        cwd=repo_root,
        env=env,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert not re.search(r"^(WARNING|ERROR)\b", output, flags=re.M), output
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "client.html").is_file()


def test_every_docs_page_is_in_the_nav(repo_root: Path) -> None:
    config = yaml.safe_load((repo_root / "mkdocs.yml").read_text())
    assert config["strict"] is True
    in_nav = {page for entry in config["nav"] for page in entry.values()}
    assert in_nav == {p.name for p in (repo_root / "docs").glob("*.md")}


def test_the_readme_links_to_docs_pages_with_relative_paths(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", readme)
    docs = [link for link in links if "docs/" in link]
    assert docs, "the README links to the docs"
    pages = {p.name for p in (repo_root / "docs").glob("*.md")}
    for link in docs:
        path, _, anchor = link.partition("#")
        assert path.startswith("docs/") and not path.startswith("/"), link
        assert (repo_root / path).is_file(), link
        if anchor:
            headings = (repo_root / path).read_text()
            slugs = {slug(h) for h in re.findall(r"^#+ (.+)$", headings, flags=re.M)}
            assert anchor in slugs, link
    linked = {link.partition("#")[0].removeprefix("docs/") for link in docs}
    assert linked == pages, "the README's table links every page"


def slug(heading: str) -> str:
    """GitHub's and mkdocs' anchor for a heading (for the plain headings these pages use)."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")
