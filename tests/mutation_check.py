"""Does the suite fail when the product breaks? Plant chosen bugs, one at a time, and run the tests that guard
that code: each mutation must make at least one of them fail.

Run: `python -m tests.mutation_check` (a few minutes; `-k NAME` for the mutations whose name holds NAME).
Every mutation is made in a scratch copy of the project (never in this tree), whose code the tests and their
subprocesses import (PYTHONPATH). The guarding tests are first run on the unmutated copy: they must pass there,
or a "caught" would mean nothing. Exit status 1 when a mutation survives.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# what tests/conftest.py's make_project copies into a test's project, plus the tests and the pages they read
COPIED = (  # what the tests read, and every file of conftest.PROJECT_FILES (make_project copies them)
    *("pipeline", "tests", "dvc.yaml", "params.yaml", "pyproject.toml", "README.md", "docs", "Makefile", "weights"),
    *(".dvc/config", ".dvc/plots.html", ".dvcignore", "data/raw/.gitignore", ".gitignore", "plots/README.md"),
)


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # relative to the project root
    old: str  # must occur exactly once in the file
    new: str
    tests: tuple[str, ...]  # pytest node ids (or files) that must catch it
    more: tuple[tuple[str, str], ...] = ()  # further (old, new) edits in the same file, planted together


MUTATIONS = [
    Mutation(
        "chunks written without fletcher32 (reads fall back to the sha256)",
        "pipeline/store/chunks.py",
        "fletcher32=True)",
        "fletcher32=False)",
        ("tests/test_store.py::test_a_flipped_byte_in_a_chunk_stops_every_read_and_featurize_heals_it",),
    ),
    Mutation(
        "a chunk's keys not checked against its name",
        "pipeline/store/chunks.py",
        "if path.name != chunk_name(fingerprint, keys):",
        "if False:",
        ("tests/test_store.py::test_a_valid_chunk_copied_over_another_is_caught_by_reads_and_verify",),
    ),
    Mutation(
        "a chunk with fewer feature rows than keys passes",
        "pipeline/store/chunks.py",
        "problem = count_problem(dataset.shape[0] if dataset.ndim else 0, keys) or layout_problem(",
        "problem = None or layout_problem(",
        ("tests/test_store.py::test_a_malformed_chunk_is_not_adopted",),
    ),
    Mutation(
        "verify skips the sha256 of each chunk",
        "pipeline/store/verify.py",
        "                checksum=True,\n",
        "                checksum=False,\n",
        ("tests/test_store.py::test_verify_catches_corruption",),
    ),
    Mutation(
        "verify does not report a missing chunk file",
        "pipeline/store/verify.py",
        'problems = [f"chunk file missing: {folder / name}" for name in missing]',
        "problems = []",
        ("tests/test_store.py::test_verify_catches_missing_chunk_and_nan",),
    ),
    Mutation(
        "the image gate allows twice split.max_pixels",
        "pipeline/images/gate.py",
        "if width * height > max_pixels:",
        "if width * height > 2 * max_pixels:",
        ("tests/test_bad_input.py::test_the_pixel_limit_is_checked_before_decoding",),
    ),
    Mutation(
        "the image gate calls every damaged image corrupt",
        "pipeline/images/gate.py",
        'return "truncated" if "truncated" in str(err).lower() else "corrupt"',
        'return "corrupt"',
        ("tests/test_bad_input.py::test_truncated_images_are_rejected_even_where_pillow_was_told_to_load_them",),
    ),
    Mutation(
        "the split gives train one image more",
        "pipeline/stages/split.py",
        "if position < sizes[name]:",
        "if position <= sizes[name]:",
        ("tests/test_split.py",),
    ),
    Mutation(
        "logreg keeps the C of the worst validation accuracy",
        "pipeline/heads/logreg.py",
        "head = max(heads, key=lambda h: (accuracies[h.C], -h.C))",
        "head = min(heads, key=lambda h: (accuracies[h.C], -h.C))",
        ("tests/test_results.py::test_logreg_curve_is_validation_accuracy_against_every_c_tried",),
    ),
    Mutation(
        "logreg's curves log train accuracy as validation and back",
        "pipeline/heads/logreg.py",
        "log_fit_quality(live, c, train_quality, val_quality)",
        "log_fit_quality(live, c, val_quality, train_quality)",
        ("tests/test_results.py::test_logreg_curve_is_validation_accuracy_against_every_c_tried",),
    ),
    Mutation(
        "a binary logreg head swaps its two probabilities",
        "pipeline/heads/logreg.py",
        "return np.stack([1.0 - positive, positive], axis=1)",
        "return np.stack([positive, 1.0 - positive], axis=1)",
        ("tests/test_heads.py::test_head_learns_saves_and_loads[logreg-2]",),
    ),
    Mutation(
        "logreg's L2 penalty is not scaled by the rows (scikit-learn's C * sum of losses)",
        "pipeline/heads/logistic.py",
        "self.l2 = 1.0 / (C * len(rows))",
        "self.l2 = 1.0 / C",
        ("tests/test_logreg_fit.py::test_the_fit_is_scikit_learns_logistic_regression_on_the_same_rows",),
    ),
    Mutation(
        "logreg's standardization forgets the spread between blocks' means",
        "pipeline/heads/row_blocks.py",
        "squares += block_squares + delta**2 * (count * n / total)",
        "squares += block_squares",
        ("tests/test_logreg_fit.py::test_the_block_size_does_not_change_the_fit",),
    ),
    Mutation(
        "a streamed logreg writes each block's rows at the start of the scratch file",
        "pipeline/heads/row_blocks.py",
        "int(block.order[start]) * row_bytes",
        "start * row_bytes",
        ("tests/test_logreg_fit.py::test_a_streamed_flatten_fit_is_the_in_memory_fit",),
    ),
    Mutation(
        "extract's stream no longer counts what it writes",
        "pipeline/stages/extract.py",
        "if written > self.cap(key):",
        "if False:",
        ("tests/test_bad_input.py::test_the_stream_is_cut_at_the_entry_limit_whatever_was_declared",),
    ),
    Mutation(
        "featurize deletes only the first stale chunk",
        "pipeline/stages/featurize.py",
        "for path in pool.unreferenced({pool.refs[key].chunk for key in wanted}):",
        "for path in pool.unreferenced({pool.refs[key].chunk for key in wanted})[:1]:",
        ("tests/test_store.py::test_removing_images_drops_their_rows",),
    ),
    Mutation(
        "extract unpacks a nested train.zip beside the output, not in its staging folder",
        "pipeline/stages/extract.py",
        "zip_sources(archive, raw, budget, staging)",
        "zip_sources(archive, raw, budget, out_dir.parent)",
        ("tests/test_bad_input.py::test_a_bomb_inside_a_nested_train_zip_is_refused",),
    ),
    Mutation(
        "featurize imports TensorFlow before it checks its params",
        "pipeline/cli/stages.py",
        "    config = load_config(params)  # a bad param is refused before TensorFlow is imported\n",
        "    import tensorflow  # noqa: F401\n\n    config = load_config(params)\n",
        ("tests/test_store.py::test_chunk_rows_zero_through_the_cli_stops_before_any_work",),
    ),
    Mutation(
        "an empty contact sheet says nothing",
        "pipeline/reporting/contact_sheet.py",
        '"(nothing to show)", fill=TEXT',
        '"", fill=TEXT',
        ("tests/test_contact_sheet.py::test_empty_sheet_says_so",),
    ),
    Mutation(
        "evaluate scores the predictions against the labels shifted one row",
        "pipeline/stages/evaluate.py",
        "result = score(probabilities, data.labels, len(store.classes))",
        "result = score(probabilities, np.roll(data.labels, 1), len(store.classes))",
        ("tests/test_three_classes.py::test_repro_three_classes",),
    ),
    Mutation(
        "the API's pooled features are shifted one row against their labels and ids",
        "pipeline/api.py",
        "return SplitArrays(data.features, data.labels.astype(np.int64), [str(i) for i in data.ids], opened.classes)",
        "return SplitArrays(\n            np.roll(data.features, 1, axis=0), data.labels.astype(np.int64), "
        "[str(i) for i in data.ids], opened.classes\n        )",
        ("tests/test_api.py::test_the_documented_api_snippet_runs",),
    ),
    Mutation(
        "predict ranks the classes least probable first",
        "pipeline/stages/predict.py",
        'order = np.argsort(-row, kind="stable")',
        'order = np.argsort(row, kind="stable")',
        ("tests/test_dvc_pipeline.py::test_predict_cli",),
    ),
    Mutation(
        "featurize recomputes the images its chunks already hold (a killed run does not resume)",
        "pipeline/stages/featurize.py",
        "missing = pool.missing(shard.select(wanted) if shard else wanted)",
        "missing = shard.select(wanted) if shard else wanted",
        ("tests/test_reliability.py::test_sigkill_leaves_no_store_and_the_rerun_resumes",),
    ),
    Mutation(
        "featurize deletes the previous index before it computes an update",
        "pipeline/stages/featurize.py",
        "    pool.remove_partials()\n",
        "    pool.remove_partials()\n    out_path.unlink(missing_ok=True)\n",
        ("tests/test_reliability.py::test_sigkill_during_an_update_keeps_the_previous_store",),
    ),
    Mutation(
        "an interrupted featurize leaves the first chunk of its run out of the rows it says it kept",
        "pipeline/stages/featurize.py",
        "rows = sum(pool.rows_per_chunk[name] for name in new)",
        "rows = sum(pool.rows_per_chunk[name] for name in new[1:])",
        ("tests/test_reliability.py::test_an_interrupt_says_what_was_kept_and_the_rerun_resumes",),
    ),
    Mutation(
        # Function and recipe data swapped together, so the recipe test (tests/test_recipe.py) agrees with the
        # code; the zero-shot floors pass it too (73 / 96 of 100): only the per-image golden classes catch it.
        "EfficientNet-Lite feeds its ImageNet weights BGR instead of RGB (its recipe says BGR too)",
        "pipeline/backbones/efficientnet_lite.py",
        "return (tf.cast(x, tf.float32) - 127.0) / 128.0",
        "return (tf.cast(x, tf.float32)[..., ::-1] - 127.0) / 128.0",
        ("tests/test_efficientnet_lite.py::test_lite0_top1_classes_match_the_golden_file_image_by_image",),
        more=(
            (
                'Preprocessing("RGB", (127.0, 127.0, 127.0), 1 / 128)',
                'Preprocessing("BGR", (127.0, 127.0, 127.0), 1 / 128)',
            ),
        ),
    ),
]


def scratch_copy(tmp: Path) -> Path:
    """tmp/project, a copy of the project's code and tests (their data is in tests/data)."""
    folder = tmp / "project"
    for name in COPIED:
        source, target = ROOT / name, folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
        elif source.exists():
            shutil.copy2(source, target)
    return folder


def run_tests(project: Path, tests: tuple[str, ...]) -> tuple[bool, float, str]:
    """(passed, seconds, first assertion line and summary) of pytest on `tests` in `project`, its code first."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(project), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, check=False)
    lines = (result.stdout + result.stderr).strip().splitlines()
    why = [line for line in lines if line.startswith("E ")][:1] + lines[-1:]
    return result.returncode == 0, time.perf_counter() - start, "\n".join(why)


def mutate(project: Path, mutation: Mutation) -> str:
    """Plant the mutation (every edit of it); returns the file's original text."""
    path = project / mutation.path
    original = text = path.read_text()
    for old, new in ((mutation.old, mutation.new), *mutation.more):
        if text.count(old) != 1:
            raise SystemExit(f"{mutation.name}: {old!r} occurs {text.count(old)} times in {path}")
        text = text.replace(old, new)
    path.write_text(text)
    return original


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", action="append", help="only the mutations whose name holds this text (repeatable)")
    wanted = parser.parse_args().k or [""]
    chosen = [m for m in MUTATIONS if any(text in m.name for text in wanted)]
    survived = []
    with tempfile.TemporaryDirectory(prefix="mutation-check-") as tmp:
        project = scratch_copy(Path(tmp))
        guards = tuple(dict.fromkeys(test for m in chosen for test in m.tests))
        passed, seconds, tail = run_tests(project, guards)
        if not passed:
            print(f"the guarding tests fail without any mutation ({seconds:.0f} s):\n{tail}")
            return 2
        print(f"unmutated: {len(guards)} guarding test(s) pass ({seconds:.0f} s)")
        for mutation in chosen:
            original = mutate(project, mutation)
            try:
                passed, seconds, tail = run_tests(project, mutation.tests)
            finally:
                (project / mutation.path).write_text(original)
            verdict = "SURVIVED" if passed else "caught"
            print(f"{verdict:8}  {mutation.name}  [{mutation.path}; {seconds:.0f} s]")
            if passed:
                survived.append(mutation.name)
            else:
                print("\n".join("          " + line[:150] for line in tail.splitlines()))
    print(f"{len(chosen) - len(survived)} of {len(chosen)} mutations caught")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
