"""`python -m pipeline bench-heads`: what swapping a head costs, beside a plain script on the same features.

On one featurized project (the current folder, or a scratch copy whose split repeats every image `repeat`
times under new names, so the store's index lists that many rows without a feature computed), it times:

(a) `dvc exp run -S <param>=<value>` (default heads.logreg.C=0.1), end to end (DVC's status, then the
    stages the param reruns: the head's train and evaluate, its visualize stage if it is in visualize.heads,
    and the report);
(b) `python -m pipeline train` + `evaluate` by hand;
(c) a plain script that loads `store export --pooling avg`'s .npy files and fits the same standardized
    LogisticRegression (C, max_iter 1000), then scores the test split: the peer a user compares with.

Each row: wall seconds and the peak RSS of the largest process the step ran (getrusage of its children).
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from pipeline.core.config import KERAS_HEADS
from pipeline.core.errors import InputError

PEER = """
import sys
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
folder, c = sys.argv[1], float(sys.argv[2])
x, y = np.load(f"{folder}/train_features.npy"), np.load(f"{folder}/train_labels.npy")
scaler = StandardScaler().fit(x)
model = LogisticRegression(C=c, max_iter=1000, random_state=42).fit(scaler.transform(x), y)
x_test, y_test = np.load(f"{folder}/test_features.npy"), np.load(f"{folder}/test_labels.npy")
print(f"test accuracy {(model.predict(scaler.transform(x_test)) == y_test).mean():.4f}")
"""

# Runs a command and reports the peak RSS (KiB) of the largest process it started, itself included.
MEASURE = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(f'peak_rss_kib={usage.ru_maxrss} cpu_s={usage.ru_utime + usage.ru_stime}', file=sys.stderr)\n"
    "sys.exit(code)\n"
)
SPLIT_RECORDS = ("counts.json", "rejects.csv", "converted.csv")
PROJECT_FILES = (
    "pipeline",
    "dvc.yaml",
    "params.yaml",
    ".dvc/config",
    ".dvcignore",
    "pyproject.toml",
    "plots/README.md",  # the report depends on the pictures folder, which a logreg-only scratch never fills
    ".gitignore",
    "weights",
)


@dataclass(frozen=True)
class Timing:
    label: str
    seconds: float
    peak_rss_mb: float
    cpu_seconds: float  # user + system of every process it ran: what a busy machine's wall clock hides


def measured(label: str, cmd: list[str], cwd: Path, expect: str = "") -> Timing:
    """Run `cmd` in `cwd`, timing its wall clock, CPU and peak RSS; an error unless it succeeds and prints `expect`."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, *cmd], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0 or expect not in result.stdout:
        output = (result.stdout + result.stderr)[-2000:]
        raise InputError(
            f"bench-heads: `{' '.join(cmd)}` failed or did not print {expect!r} ({result.returncode}):\n{output}"
        )
    usage = next(line for line in result.stderr.splitlines() if line.startswith("peak_rss_kib="))
    rss, cpu = (field.split("=")[1] for field in usage.split())
    return Timing(label, seconds, int(rss) / 1024, float(cpu))


def tool(name: str) -> str:
    """A console script of this interpreter's environment (dvc), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else name


def repeated_project(project: Path, repeat: int, backbone: str, head: str, scratch: Path) -> Path:
    """A copy of `project` whose split lists each image `repeat` times (hard links under new names, same
    content key) and whose params run only `backbone` and `head`; reproduced once (featurize computes none)."""
    for name in PROJECT_FILES:
        source, target = project / name, scratch / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.is_file():
            shutil.copy2(source, target)
    params = yaml.safe_load((scratch / "params.yaml").read_text())
    paths = params["paths"]
    pipeline = yaml.safe_load((scratch / "dvc.yaml").read_text())
    for stage in ("extract", "split"):  # the repeated split stands in for their outputs
        pipeline["stages"].pop(stage, None)
    (scratch / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    params["featurize"]["backbones"] = [backbone]
    params["train"]["heads"] = [head]
    params["visualize"]["heads"] = [head] if head in KERAS_HEADS else []  # visualize pictures trained Keras heads
    (scratch / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    repeat_split(project / paths["split"], scratch / paths["split"], repeat)
    chunks = f"{backbone}.chunks"
    shutil.copytree(project / paths["features"] / chunks, scratch / paths["features"] / chunks, copy_function=os.link)
    shutil.copy2(project / paths["features"] / f"{backbone}.weights.json", scratch / paths["features"])
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    setup = (
        ["git", "init", "-q"],
        [tool("dvc"), "config", "--local", "cache.type", "reflink,hardlink,copy"],  # no copy of 25,000 images
        [*git, "add", "-A"],
        [*git, "commit", "-qm", "bench"],
    )
    for cmd in setup:
        subprocess.run(cmd, cwd=scratch, check=True, capture_output=True)
    return scratch


def reproduce(project: Path) -> Timing:
    """`dvc repro` of a fresh scratch project, measured (its peak RSS is the largest stage's), then committed."""
    timing = measured("(setup) dvc repro, every stage; featurize computes none", [tool("dvc"), "repro", "-q"], project)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run([*git, "add", "-A"], cwd=project, check=True, capture_output=True)  # dvc.lock is new
    subprocess.run([*git, "commit", "-qm", "reproduced"], cwd=project, check=True, capture_output=True)
    return timing


def repeat_split(source: Path, target: Path, repeat: int) -> None:
    """Each manifest row `repeat` times, copy i named `<stem>.r<i><suffix>` and hard-linked to the original."""
    with open(source / "manifest.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames or [], list(reader)
    out = []
    for row in rows:
        for i in range(repeat):
            path = Path(row["path"])
            name = path.with_name(f"{path.stem}.r{i}{path.suffix}").as_posix() if i else row["path"]
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            os.link(source / row["path"], target / name)
            out.append({**row, "path": name})
    with open(target / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(out)
    for name in SPLIT_RECORDS:  # the report's deps: the split's counts and lists, as the split stage wrote them
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)


def bench_heads(project: Path, backbone: str, head: str, setting: str, c: float, repeat: int) -> list[str]:
    """Time (a) the DVC swap, (b) train + evaluate by hand, (c) the plain script; the table as lines."""
    with tempfile.TemporaryDirectory(prefix="bench-heads-") as tmp:
        where = project if repeat <= 1 else repeated_project(project, repeat, backbone, head, Path(tmp) / "project")
        setup = [] if where == project else [reproduce(where)]
        paths = yaml.safe_load((where / "params.yaml").read_text())["paths"]
        export = Path(tmp) / "export"
        store = str(Path(paths["features"]) / f"{backbone}.h5")
        pipeline = [sys.executable, "-m", "pipeline"]
        export_cmd = [*pipeline, "store", "export", store, "-o", str(export), "-f", "npy", "--pooling", "avg"]
        subprocess.run(export_cmd, cwd=where, check=True, capture_output=True)
        by_hand = " && ".join(
            f"{sys.executable} -m pipeline {stage} {backbone} {head}" for stage in ("train", "evaluate")
        )
        timings = [
            measured(
                f"(a) dvc exp run -S {setting}",
                [tool("dvc"), "exp", "run", "-S", setting],
                where,
                f"Running stage 'train@{backbone}-",  # not printed when the param already has that value
            ),
            measured(f"(b) train + evaluate {backbone} {head}", ["sh", "-c", by_hand], where),
            measured(
                f"(c) plain LogisticRegression(C={c}) on .npy", [sys.executable, "-c", PEER, str(export), str(c)], where
            ),
        ]
        rows = len(np.load(export / "train_labels.npy")) + len(np.load(export / "validation_labels.npy"))
        rows += len(np.load(export / "test_labels.npy"))
    return table(timings, rows, backbone, setup)


def table(timings: list[Timing], rows: int, backbone: str, setup: list[Timing]) -> list[str]:
    peer = timings[-1]
    lines = [
        f"bench-heads: {rows} rows of {backbone}; wall and CPU seconds, peak RSS of the largest process, "
        "and each as a multiple of the plain script's",
        "| step | wall s | CPU s | peak RSS (MB) | x plain (wall) | x plain (CPU) | x plain (RSS) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for t in setup + timings:
        ratios = (t.seconds / peer.seconds, t.cpu_seconds / peer.cpu_seconds, t.peak_rss_mb / peer.peak_rss_mb)
        cells = [
            t.label,
            f"{t.seconds:.1f}",
            f"{t.cpu_seconds:.1f}",
            f"{t.peak_rss_mb:.0f}",
            *(f"{r:.2f}" for r in ratios),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
