"""The team page (docs/team.md), command for command: an author tracks the raw archive with DVC, computes and
pushes to a local folder remote; a teammate clones, pulls, and `dvc repro` recomputes nothing."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, TINY_PARAMS, make_project, sample_images, tool_env, write_zip

pytestmark = pytest.mark.slow

PAGE_CLONE_URL = "https://example.com/team/convnet-feature-store.git"
RAW = "data/raw/dogs-vs-cats.zip"
TEAM_PARAMS = {
    **TINY_PARAMS,
    "paths.raw": RAW,
    "train.heads": ["logreg"],
    "visualize.heads": [],
}  # no TensorFlow in train


def team_commands() -> tuple[list[str], list[str]]:
    """The author's and the teammate's commands of docs/team.md's block (comments stripped)."""
    page = (ROOT / "docs" / "team.md").read_text()
    section = page[page.index("# Sharing the feature cache with a team") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S)[1]
    author, teammate, current = [], [], None
    current = author
    for line in block.splitlines():
        if line.startswith("# a teammate"):
            current = teammate
            continue
        command = re.split(r"\s+#\s", line, maxsplit=1)[0].strip()
        if command:
            current.append(command)
    return author, teammate


def shell(command: str, cwd: Path) -> tuple[str, Path]:
    """Run one line of the page in bash; returns its output and the folder it ended in (for `cd`)."""
    env = tool_env() | {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    result = subprocess.run(
        ["bash", "-c", f"{command} && echo __CWD__ && pwd"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, f"{command!r} failed in {cwd}:\n{result.stdout}\n{result.stderr}"
    output, _, where = result.stdout.rpartition("__CWD__\n")
    return output + result.stderr, Path(where.strip())


def git_untracked(cwd: Path) -> list[str]:
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=cwd,
                            capture_output=True, text=True, check=True)  # fmt: skip
    return [line[3:] for line in status.stdout.splitlines()]


def tree_bytes(root: Path, *parts: str) -> dict[str, bytes]:
    files = {}
    for part in parts:
        base = root / part
        paths = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        files.update({str(p.relative_to(root)): p.read_bytes() for p in paths})
    return files


def test_readme_team_section_as_written(tmp_path: Path) -> None:
    author_commands, teammate_commands = team_commands()
    assert any(c.startswith("dvc add data/raw/") for c in author_commands)
    page_remote = next(c.split()[-1] for c in author_commands if c.startswith("dvc remote add"))  # a team folder
    remote, origin = tmp_path / "remote", tmp_path / "origin.git"
    author = make_project(tmp_path / "author", Path(RAW), TEAM_PARAMS)
    write_zip(author / RAW, sample_images(40))  # the archive inside the project, where users put it
    assert not any("dogs-vs-cats.zip" in path for path in git_untracked(author))  # git never offers it
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    subprocess.run(["git", "remote", "add", "origin", str(origin)], cwd=author, check=True)
    subprocess.run(["git", "push", "-q", "-u", "origin", "HEAD"], cwd=author, check=True, capture_output=True)

    cwd, log = author, ""
    for command in author_commands:
        output, cwd = shell(command.replace(page_remote, str(remote)), cwd)
        log += output
    assert "Running stage 'featurize@vgg16'" in log
    assert git_untracked(author) == [], "everything the run made is in git or ignored"
    assert "dogs-vs-cats.zip.dvc" in subprocess.run(["git", "ls-files", "data/raw"], cwd=author,
                                                    capture_output=True, text=True).stdout  # fmt: skip

    cwd, outputs = tmp_path, []
    for command in teammate_commands:
        output, cwd = shell(command.replace(PAGE_CLONE_URL, str(origin)), cwd)
        outputs.append((command, output))
    teammate = cwd
    assert teammate == tmp_path / "project"
    repro = next(output for command, output in outputs if command == "dvc repro")
    assert "Running stage" not in repro, repro
    status = next(output for command, output in outputs if command == "dvc status")
    assert status.strip() == "Data and pipelines are up to date."
    assert git_untracked(teammate) == []
    shared = (RAW, "data/split", "features", "models", "metrics")
    mine, theirs = tree_bytes(author, *shared), tree_bytes(teammate, *shared)
    assert sorted(mine) == sorted(theirs) and mine == theirs, "the teammate's data is byte for byte the author's"
