"""A clone of the repository in a folder with no `shared` folder anywhere above it passes the tests that read
data: the suite needs nothing beside the repository (tests/data holds the photos and digits it reads)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run

pytestmark = pytest.mark.slow

# The tests that read tests/data directly (the fixture zip, whole; the MNIST t10k files; the PetImages layout).
SUBSET = [
    "tests/test_extract.py",
    "tests/test_mnist.py",
    "tests/test_layouts.py",
    "-m",
    "not slow",
    "-k",
    "not round_trip",
]


def test_a_clone_elsewhere_passes_the_data_tests(tmp_path: Path) -> None:
    if not (ROOT / ".git").exists():
        pytest.skip(f"{ROOT} is not a git checkout: nothing to clone")
    clone = tmp_path / "elsewhere" / "project"
    assert not [folder for folder in clone.parents if (folder / "shared").exists()]
    run(["git", "clone", "-q", str(ROOT), str(clone)], tmp_path)  # the committed HEAD, nothing uncommitted
    imported = run([sys.executable, "-c", "import pipeline, sys; print(pipeline.__file__)"], clone).stdout
    assert Path(imported.strip()).parent == clone / "pipeline"  # the clone's code, not this checkout's
    result = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUBSET], clone, check=False)
    summary = result.stdout.strip().splitlines()[-1]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed[1]) >= 30 and "skipped" not in summary and "error" not in summary, summary
