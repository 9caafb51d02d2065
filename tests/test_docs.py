"""The documentation: the MkDocs site builds strictly (a broken link or a page left out of the nav fails the
build, as `make test` runs it), and the README's relative links and pictures point at files that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, child_env

README_MAX_LINES = 200


def site_copy(tmp_path: Path) -> Path:
    """The docs sources (mkdocs.yml, docs/, and CONTRIBUTING.md, which a page includes) in a folder of their own."""
    shutil.copy2(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copy2(ROOT / "CONTRIBUTING.md", tmp_path / "CONTRIBUTING.md")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    return tmp_path


def build(project: Path) -> subprocess.CompletedProcess:
    env = child_env(NO_MKDOCS_2_WARNING="1")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(project / "site")]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=300)


def test_the_docs_site_builds_strictly(tmp_path: Path) -> None:
    result = build(site_copy(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "params" / "index.html").is_file()
    assert (tmp_path / "site" / "images" / "gradcam.png").is_file()


@pytest.mark.parametrize(
    "page, text, named",
    [
        ("index.md", "[gone](no-such-page.md)", "no-such-page.md"),
        ("index.md", "[gone](params.md#no-such-anchor)", "no-such-anchor"),
        ("orphan.md", "# A page no nav entry lists", "orphan.md"),
    ],
    ids=["broken-link", "broken-anchor", "page-not-in-nav"],
)
def test_a_docs_mistake_fails_the_strict_build(tmp_path: Path, page: str, text: str, named: str) -> None:
    project = site_copy(tmp_path)
    path = project / "docs" / page
    path.write_text((path.read_text() if path.exists() else "") + f"\n{text}\n")
    result = build(project)
    assert result.returncode != 0
    assert named in result.stderr


def readme_targets() -> list[str]:
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    return [t for t in targets if not re.match(r"[a-z]+://", t)]


def test_the_readme_links_and_pictures_exist() -> None:
    targets = readme_targets()
    assert "docs/images/gradcam.png" in targets
    missing = [t for t in targets if not (ROOT / t.split("#", 1)[0]).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"


def test_the_readme_is_a_front_page_not_a_manual() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"
    assert "![" in "\n".join(lines[:12]), "the README's first screen has no picture"
