"""Read what the other stages wrote (metrics, per-class tables, curves, confusion pairs, mistakes, audit counts,
split rejects, store provenance, pictures) into plain records for the page. Each is a file the report stage lists
as a dependency in dvc.yaml. Missing outputs are skipped: the report shows what has been computed."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.config import Config

MISTAKES_LISTED = 10  # rows of misclassified.csv shown under the contact sheet
CSV_ROWS_LISTED = 50  # rows of rejects.csv / converted.csv shown
METHODS = ("scratch", "augment", "end_to_end", "finetune", "augmented_features", "mnist")
PROVENANCE_KEYS = (
    "weights",
    "weights_file_sha256",
    "weights_sha256",
    "recipe_version",
    "input_size",
    "resize",
    "preprocessing",
    "precision",
    "storage_dtype",
    "mirror",
    "feature_shape",
    "default_pooling",
    "fingerprint",
    "device",
    "classes",
)


@dataclass(frozen=True)
class Branch:
    """One backbone x head: its evaluate and train outputs."""

    backbone: str
    head: str
    metrics: dict[str, Any]
    per_class: list[dict[str, Any]]
    confusion: list[dict[str, Any]]  # {actual, predicted, count}
    curves: list[dict[str, Any]]  # {metric, split, x, value}
    x_name: str
    mistakes: list[dict[str, str]]
    mistakes_sheet: Path | None
    pictures: dict[str, list[Path]]  # visualize's PNGs by kind (sub-folder)

    @property
    def name(self) -> str:
        return f"{self.backbone}/{self.head}"


@dataclass(frozen=True)
class Audit:
    backbone: str
    counts: dict[str, Any]
    pictures: list[Path]


@dataclass(frozen=True)
class Store:
    backbone: str
    path: Path
    attrs: dict[str, Any]
    rows: dict[str, int]


@dataclass(frozen=True)
class Method:
    name: str  # e.g. scratch@42
    metrics: dict[str, Any]
    pictures: list[Path]


@dataclass(frozen=True)
class SplitSummary:
    counts: dict[str, Any]
    rejects: list[dict[str, str]]
    converted: list[dict[str, str]]
    rejects_total: int = 0
    converted_total: int = 0


@dataclass(frozen=True)
class Results:
    branches: list[Branch] = field(default_factory=list)
    audits: list[Audit] = field(default_factory=list)
    stores: list[Store] = field(default_factory=list)
    methods: list[Method] = field(default_factory=list)
    split: SplitSummary | None = None
    experiments: list[dict[str, Any]] = field(default_factory=list)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t" if path.suffix == ".tsv" else ","))


def pngs(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.png")) if folder.is_dir() else []


def number(text: str | None) -> float | None:
    return float(text) if text not in (None, "") else None


def per_class_rows(path: Path) -> list[dict[str, Any]]:
    return [
        {
            "class": row["class"],
            **{k: float(row[k]) for k in ("precision", "recall", "f1")},
            "support": int(row["support"]),
        }
        for row in read_csv(path)
    ]


def confusion_counts(path: Path) -> list[dict[str, Any]]:
    """dvclive's confusion plot (one {actual, predicted} per image) as one count per cell, zeros included."""
    data = json.loads(path.read_text()) if path.is_file() else []
    pairs = next((v for v in data.values() if isinstance(v, list)), []) if isinstance(data, dict) else data
    classes = sorted({p["actual"] for p in pairs} | {p["predicted"] for p in pairs})
    counts = {(a, p): 0 for a in classes for p in classes}
    for pair in pairs:
        counts[pair["actual"], pair["predicted"]] += 1
    return [{"actual": a, "predicted": p, "count": n} for (a, p), n in counts.items()]


def curve_points(folder: Path) -> tuple[list[dict[str, Any]], str]:
    """train's `<metric>.tsv` files (x, train, validation) as long rows, and the x axis's name."""
    points: list[dict[str, Any]] = []
    x_name = "epoch"
    for tsv in sorted(folder.glob("*.tsv")) if folder.is_dir() else []:
        for row in read_csv(tsv):
            x_name = next(iter(row))
            for split in ("train", "validation"):
                value = number(row.get(split))
                if value is not None:
                    points.append({"metric": tsv.stem, "split": split, "x": float(row[x_name]), "value": value})
    return points, x_name


def pictures_by_kind(folder: Path) -> dict[str, list[Path]]:
    """visualize's PNGs grouped by their sub-folder (e.g. 1_gradcam, 2_filters)."""
    kinds: dict[str, list[Path]] = {}
    for png in pngs(folder):
        kind = png.parent.name if png.parent != folder else "pictures"
        kinds.setdefault(kind, []).append(png)
    return dict(sorted(kinds.items()))


def branch(config: Config, backbone: str, head: str) -> Branch | None:
    folder = config.paths.metrics_dir(backbone, head)
    metrics = read_json(folder / "metrics.json")
    if not metrics:
        return None
    curves, x_name = curve_points(config.paths.curves_dir(backbone, head))
    sheet = folder / "plots" / "misclassified.png"
    return Branch(
        backbone,
        head,
        metrics,
        per_class_rows(folder / "per_class.csv"),
        confusion_counts(folder / "plots" / "sklearn" / "confusion_matrix.json"),
        curves,
        x_name,
        read_csv(folder / "misclassified.csv")[:MISTAKES_LISTED],
        sheet if sheet.is_file() else None,
        pictures_by_kind(config.paths.plots / backbone / head),
    )


def store(config: Config, backbone: str) -> Store | None:
    """The store as featurize summarized it (metrics/<backbone>/store.json): the report opens no store."""
    summary = read_json(config.paths.store_summary(backbone))
    if not summary:
        return None
    attrs = {key: summary["attrs"][key] for key in PROVENANCE_KEYS if summary["attrs"].get(key) is not None}
    return Store(backbone, Path(summary["path"]), attrs, summary["rows"])


def audit(config: Config, backbone: str) -> Audit | None:
    folder = config.paths.audit_dir(backbone)
    counts = read_json(folder / "counts.json")
    pictures = sorted(pngs(folder / "plots"), key=lambda p: (p.name != "map.png", p.name))  # the map first
    return Audit(backbone, counts, pictures) if counts else None


def methods(config: Config) -> list[Method]:
    found = []
    for method in METHODS:
        for item in getattr(config.methods.run, method):
            metrics_dir = config.paths.metrics / "methods" / method / str(item)
            pictures = pngs(config.paths.curves / "methods" / method / str(item) / "figures")
            metrics = read_json(metrics_dir / "metrics.json")
            if metrics:
                found.append(Method(f"{method}@{item}", metrics, pictures))
    return found


def split_summary(config: Config) -> SplitSummary | None:
    counts = read_json(config.paths.split_counts) or read_json(config.paths.split_metrics)
    if not counts:
        return None
    rejects = read_csv(config.paths.split / "rejects.csv")
    converted = read_csv(config.paths.split / "converted.csv")
    return SplitSummary(counts, rejects[:CSV_ROWS_LISTED], converted[:CSV_ROWS_LISTED], len(rejects), len(converted))


def collect(config: Config, experiments: list[dict[str, Any]] | None = None) -> Results:
    """Everything the page shows, for the backbones and heads params.yaml names."""
    backbones, heads = config.featurize.backbones, config.train.heads
    found = [branch(config, b, h) for b in backbones for h in heads]
    return Results(
        branches=[b for b in found if b is not None],
        audits=[a for a in (audit(config, b) for b in backbones) if a is not None],
        stores=[s for s in (store(config, b) for b in backbones) if s is not None],
        methods=methods(config),
        split=split_summary(config),
        experiments=experiments or [],
    )
