"""The audit sees what a person sees: twelve junk images drawn the way scraped junk looks (logos and banners on
white, placeholders, screenshots, near-identical copies under both labels, a person), filed as cats and dogs among
real ones, are flagged; the real images mostly are not. EfficientNet-Lite0 ImageNet features at its default 224 px
(132 images: featurizing them costs seconds)."""

from __future__ import annotations

import csv
import re
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import make_project, run, sample_images
from planted_junk import write_planted_set

pytestmark = pytest.mark.slow

CLEAN_PER_CLASS = 60
JUNK_PARAMS = {
    "split.train": 0.7,
    "split.validation": 0.15,
    "split.test": 0.15,
    "split.shuffle": True,  # junk lands in every split
    "featurize.backbones": ["efficientnet_lite0"],
}


@pytest.fixture(scope="module")
def audited(tmp_path_factory) -> tuple[dict[str, set[str]], dict[str, str], int, Path]:
    """({image file: issue types}, {junk file: what it is}, images audited, project) after `dvc repro audit@...`."""
    base = tmp_path_factory.mktemp("junk")
    junk = write_planted_set(base / "raw", sample_images(CLEAN_PER_CLASS), first_junk=CLEAN_PER_CLASS)
    root = make_project(base / "project", base / "raw", JUNK_PARAMS)
    run(["dvc", "repro", "audit@efficientnet_lite0"], root)
    types: dict[str, set[str]] = defaultdict(set)
    with open(root / "audit" / "efficientnet_lite0" / "issues.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            types[Path(row["id"]).name].add(row["type"])
    return types, junk, 2 * CLEAN_PER_CLASS + len(junk), root


def test_at_least_90_percent_of_the_junk_is_flagged(audited) -> None:
    types, junk, _, _ = audited
    missed = {name: what for name, what in junk.items() if not types.get(name)}
    assert len(missed) <= 0.1 * len(junk), f"missed {len(missed)} of {len(junk)}: {missed}"


def test_at_most_3_percent_of_the_real_images_are_flagged(audited) -> None:
    types, junk, images, _ = audited
    clean = {name: sorted(kinds) for name, kinds in types.items() if name not in junk}
    assert len(clean) <= 0.03 * (images - len(junk)), f"{len(clean)} real images flagged: {clean}"


def test_the_copies_under_both_labels_are_flagged_as_near_duplicates(audited) -> None:
    types, junk, _, _ = audited
    copies = [name for name, what in junk.items() if what.startswith("coming-soon")]
    assert len(copies) == 4 and all("near_duplicate" in types[name] or "leakage" in types[name] for name in copies)


def test_bench_times_the_stage_from_the_store_file_with_image_checks_and_peak_memory(audited) -> None:
    root = audited[3]
    store = "features/efficientnet_lite0.h5"
    lines = run([sys.executable, "-m", "pipeline", "audit", "bench", store, "--rows", "200"], root).stdout.splitlines()
    assert lines[0].startswith(f"{store}: 132 rows of 1280 pooled features")
    timed = re.fullmatch(r"200 rows: [\d.]+ s \((.*)\); \d+ issues; peak RSS ([\d,]+) MB.*", lines[1])
    assert timed, lines[1]
    steps = [step.rsplit(" ", 1)[0] for step in timed.group(1).split(", ")]
    assert steps[0] == "load" and {"off_class", "image_checks", "sheets", "map"} <= set(steps)
    assert int(timed.group(2).replace(",", "")) > 100  # a process that read the store and ran scikit-learn
