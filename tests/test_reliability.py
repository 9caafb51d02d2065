"""Crash safety of featurize (SIGKILL) and team sharing through a real DVC remote."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import yaml
from conftest import TINY_PARAMS, make_project, make_split, run, sample_images, tool_env, write_zip

from pipeline.store.index import chunk_folder
from pipeline.store.verify import verify

pytestmark = pytest.mark.slow


def computed(output: str) -> int:
    return int(re.search(r"computed (\d+) of", output)[1])


def featurize_until_chunks(root: Path, store: Path, chunks: int, **popen) -> subprocess.Popen:
    """Start featurize and return it, still running, once `chunks` chunk files are complete."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "featurize", "vgg16"], cwd=root, env=tool_env(), **popen
    )
    deadline = time.monotonic() + 300
    while len(list(chunk_folder(store).glob("chunk-*.h5"))) < chunks:
        assert process.poll() is None, "featurize ended before it could be stopped"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return process


def kill_after_chunks(root: Path, store: Path, chunks: int) -> None:
    """Start featurize and SIGKILL it once `chunks` chunk files are complete; the kill must land mid-run (a run
    that had already finished would exit 0, not -SIGKILL, and fail here instead of passing by luck)."""
    process = featurize_until_chunks(root, store, chunks, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "featurize finished before the kill landed"


def featurize_project(root: Path, per_class: int, input_size: int) -> Path:
    """`per_class` images of each class split half / quarter / quarter, VGG16 in chunks of 8 rows."""
    make_split(root / "data", per_class, per_class // 2, per_class // 4, per_class // 4)
    params = {
        "featurize": {"backbones": ["vgg16"], "batch_size": 8, "chunk_rows": 8},
        "backbones": {"vgg16": {"weights": "none", "input_size": input_size}},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """120 images at 64 px: 15 chunks."""
    return featurize_project(tmp_path, 60, 64)


def test_sigkill_leaves_no_store_and_the_rerun_resumes(project: Path) -> None:
    store = project / "features" / "vgg16.h5"
    kill_after_chunks(project, store, 1)  # 14 of 15 chunks still to compute: seconds, against a 20 ms poll
    assert not store.exists()
    done = sum(h5py.File(p, "r")["keys"].shape[0] for p in chunk_folder(store).glob("chunk-*.h5"))
    assert 8 <= done < 120 and done % 8 == 0  # whole chunks only
    result = run([sys.executable, "-m", "pipeline", "featurize", "vgg16"], project)
    assert computed(result.stdout) == 120 - done
    assert verify(store, project / "data" / "split" / "manifest.csv") == []


def test_sigkill_during_an_update_keeps_the_previous_store(project: Path) -> None:
    store = project / "features" / "vgg16.h5"
    manifest = project / "data" / "split" / "manifest.csv"
    run([sys.executable, "-m", "pipeline", "featurize", "vgg16"], project)
    old_manifest, old_index = manifest.read_bytes(), store.read_bytes()
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["backbones"]["vgg16"]["input_size"] = 48  # a new recipe: every row is recomputed
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    kill_after_chunks(project, store, len(list(chunk_folder(store).glob("chunk-*.h5"))) + 1)
    assert store.read_bytes() == old_index
    assert manifest.read_bytes() == old_manifest
    assert verify(store, manifest) == []


FEATURES = "featurize@vgg16"
UP_TO_DATE = "Data and pipelines are up to date."
STATUS_SECONDS = 30  # generous: measured at a few seconds on a loaded 2-core machine


def du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_team_shares_features_through_a_dvc_remote(tmp_path: Path, sample_zip_40) -> None:
    """The feature store and the stages it needs travel through a DVC remote byte for byte, and 10 more images
    push about 10 rows of chunks. The heads' stages are left out here: tests/test_team.py runs docs/team.md's whole
    team flow."""
    raw = Path(shutil.copy2(sample_zip_40, tmp_path / "train.zip"))  # this test grows it: not the shared fixture
    a = make_project(tmp_path / "a", raw, TINY_PARAMS)
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-d", "team", str(remote)], a)
    run(["dvc", "repro", FEATURES], a)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], a)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "features"], a)
    run(["dvc", "push"], a)

    b = tmp_path / "b"
    run(["git", "clone", "-q", str(a), str(b)], tmp_path)
    run(["dvc", "pull", "--with-deps", FEATURES], b)
    assert run(["dvc", "status", "--with-deps", FEATURES], b).stdout.strip() == UP_TO_DATE
    assert "Running stage" not in run(["dvc", "repro", FEATURES], b).stdout
    for path in [Path("features/vgg16.h5"), *sorted(p.relative_to(a) for p in (a / "features/vgg16.chunks").iterdir())]:
        assert (b / path).read_bytes() == (a / path).read_bytes(), path

    # Adding 10 images uploads about 10 rows' worth of chunks, not the whole store.
    write_zip(raw, sample_images(45))
    params = yaml.safe_load((a / "params.yaml").read_text())
    params["split"].update(train=25)
    (a / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = run(["dvc", "repro", FEATURES], a)
    assert "computed 10 of 90 images" in result.stdout
    start = time.perf_counter()
    status = run(["dvc", "status", "--with-deps", FEATURES], a).stdout
    status_seconds = time.perf_counter() - start
    assert status.strip() == UP_TO_DATE
    assert status_seconds < STATUS_SECONDS, "dvc status must stay cheap: it hashes only changed files"
    before = du(remote)
    run(["dvc", "push", FEATURES], a)  # the feature store alone
    pushed = du(remote) - before
    store_bytes = du(a / "features")
    print(f"\n[team] dvc status {status_seconds:.2f} s; push after +10 images: {pushed} bytes of {store_bytes}")
    assert pushed < store_bytes * 0.5


INTERRUPT_IMAGES = 24  # 3 chunks of 8


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_says_what_was_kept_and_the_rerun_resumes(tmp_path: Path, sig: int, code: int) -> None:
    """Ctrl-C (SIGINT) or SIGTERM: featurize names the whole chunks and rows it kept, and how to resume."""
    # The signal is sent once the first chunk file is complete, with 2 chunks still to compute. At 192 px
    # each takes seconds (VGG16, 8 images: 3 s on a loaded 2-core AMD EPYC), against a 20 ms poll, so the signal
    # lands while featurize is still computing; a run that had already finished would exit 0 and fail here.
    project = featurize_project(tmp_path, INTERRUPT_IMAGES // 2, 192)
    store = project / "features" / "vgg16.h5"
    process = featurize_until_chunks(
        project,
        store,
        1,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell without job control (CI, nohup, `cmd &`) starts jobs with SIGINT ignored, and a child keeps
        # that: Ctrl-C's default disposition is put back, as a terminal gives it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    kept = re.search(r"kept (\d+) whole chunk\(s\) written in this run \((\d+) rows\)", stderr)
    assert kept, stderr
    assert "Traceback" not in stderr and "to resume" in stderr
    rows_on_disk = sum(h5py.File(p, "r")["keys"].shape[0] for p in chunk_folder(store).glob("chunk-*.h5"))
    assert int(kept[2]) == rows_on_disk and int(kept[1]) >= 1
    assert rows_on_disk < INTERRUPT_IMAGES  # stopped mid-run
    result = run([sys.executable, "-m", "pipeline", "featurize", "vgg16"], project)
    assert computed(result.stdout) == INTERRUPT_IMAGES - rows_on_disk
    assert verify(store, project / "data" / "split" / "manifest.csv") == []
