"""Stage audit@<backbone>: read the cached features once, find issues, look at every image once (CleanVision's
image-property checks), write the CSV, counts, sheets and map.

Outputs under `audit/<backbone>/`: issues.csv (one row per flagged image and issue type), counts.json
(every count), metrics.json (the headline counts, DVC metrics), plots/<type>.png contact sheets and
plots/map.png (DVC image plots), and drop.csv, the training rows `audit.drop` leaves out of the heads
(header only by default).
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.audit.figures import write_map, write_sheets
from pipeline.audit.find import (
    ALL_TYPES,
    Findings,
    exact_duplicates,
    label_issues,
    near_duplicates,
    off_class,
    out_of_fold_probabilities,
    outliers,
    rows_to_drop,
)
from pipeline.audit.looks import image_issues, measure
from pipeline.core.config import AuditConfig
from pipeline.reporting.progress import Steps
from pipeline.store.drop_list import write_drop_list
from pipeline.store.pooled import PooledRows, load_pooled
from pipeline.store.similarity import knn_graph, unit_vectors

ISSUE_COLUMNS = ("id", "split", "label", "type", "score", "suggested", "nearest", "distance")


@dataclass
class AuditReport:
    rows: int
    counts: dict[str, int]
    dropped: int
    seconds: dict[str, float] = field(default_factory=dict)
    out_dir: Path | None = None


def find(data: PooledRows, config: AuditConfig, steps: Steps, images: Path | None = None) -> Findings:
    """Every issue type on the audit's arrays, and the image checks on the files under `images` (None: no image
    checks); `steps.seconds` receives each step's wall time, and each step prints a line with it on stderr (the
    long ones, the folds, the neighbor graph and the image checks, their progress too)."""
    with steps.step("out_of_fold"), steps.progress("out_of_fold", config.folds, "folds") as bar:
        probabilities = out_of_fold_probabilities(
            data.features, data.labels, config.folds, config.C, config.seed, bar.update
        )
    with steps.step("cleanlab"):
        issues = label_issues(data.labels, probabilities, config.label_filter)
    with steps.step("neighbors"), steps.progress("neighbors", len(data), "rows") as bar:
        vectors = unit_vectors(data.features, "flatten")
        graph = knn_graph(vectors, config.neighbors, bar.update)
    with steps.step("flag"):
        found_outliers, outlier_cutoff = outliers(graph, config.outlier)
        found_pairs, pair_cutoff = near_duplicates(graph, data.splits, config.near_duplicate)
        issues += found_outliers + found_pairs + exact_duplicates(data.keys)
    with steps.step("off_class"):
        found_off_class, class_cutoffs = off_class(vectors, data.labels, config.off_class)
        issues += found_off_class
    if images is not None and config.image_checks:
        with steps.step("image_checks"), steps.progress("image_checks", len(data), "img") as bar:
            values = measure([images / row_id for row_id in data.ids], config.image_workers, bar.update)
            issues += image_issues(values, config.image_checks, config.low_information)
    thresholds = {"outlier_mean_distance": outlier_cutoff, "near_duplicate_distance": pair_cutoff, **class_cutoffs}
    return Findings(issues, probabilities, thresholds)


HEADLINE_METRICS = ("flagged_images", "out_of_fold_accuracy")  # metrics.json: `dvc metrics show` stays short


def counts_of(findings: Findings, data: PooledRows, dropped: int) -> dict[str, int | float]:
    counts: dict[str, int | float] = {kind: len(findings.of_type(kind)) for kind in ALL_TYPES}
    counts["flagged_images"] = len({issue.row for issue in findings.issues})
    counts["rows"] = len(data)
    counts["dropped_train_rows"] = dropped
    counts["out_of_fold_accuracy"] = round(float((findings.probabilities.argmax(1) == data.labels).mean()), 4)
    return counts


def write_issues(findings: Findings, data: PooledRows, path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(ISSUE_COLUMNS)
        for kind in ALL_TYPES:
            for issue in findings.of_type(kind):
                writer.writerow(
                    (
                        data.ids[issue.row],
                        data.splits[issue.row],
                        data.classes[data.labels[issue.row]],
                        kind,
                        f"{issue.score:.6f}",
                        "" if issue.suggested is None else data.classes[issue.suggested],
                        ";".join(data.ids[j] for j in issue.nearest),
                        "" if issue.distance is None else f"{issue.distance:.6f}",
                    )
                )


def write_drops(findings: Findings, data: PooledRows, config: AuditConfig, path: Path) -> int:
    """drop.csv: the training rows audit.drop selects, with the issue types that selected each."""
    drop = rows_to_drop(findings.issues, data.splits, config.drop.types, config.drop.min_score)
    reasons: dict[int, list[str]] = {row: [] for row in sorted(drop)}
    for issue in findings.issues:
        selects = issue.type in config.drop.types and issue.score >= config.drop.min_score
        if issue.row in reasons and selects and issue.type not in reasons[issue.row]:
            reasons[issue.row].append(issue.type)
    write_drop_list(path, ((data.ids[row], types) for row, types in reasons.items()))
    return len(drop)


def audit(store_path: Path, images: Path, config: AuditConfig, out_dir: Path) -> AuditReport:
    """Audit one backbone's store; images (the split folder) are read only for the contact sheets."""
    seconds: dict[str, float] = {}
    steps = Steps(f"audit {store_path.stem}", seconds)
    overall = time.perf_counter()
    with steps.step("load"):
        data = load_pooled(store_path, config.pooling)
    findings = find(data, config, steps, images)
    shutil.rmtree(out_dir, ignore_errors=True)
    (out_dir / "plots").mkdir(parents=True)
    write_issues(findings, data, out_dir / "issues.csv")
    dropped = write_drops(findings, data, config, out_dir / "drop.csv")
    counts = counts_of(findings, data, dropped)
    (out_dir / "counts.json").write_text(json.dumps(counts, indent=2) + "\n")
    headline = {key: counts[key] for key in HEADLINE_METRICS}
    (out_dir / "metrics.json").write_text(json.dumps(headline, indent=2) + "\n")
    with steps.step("sheets"):
        write_sheets(findings, data, images, out_dir / "plots", config.sheet_images)
    with steps.step("map"):
        write_map(findings, data, config.map, config.seed, out_dir / "plots" / "map.png")
    seconds["total"] = time.perf_counter() - overall
    return AuditReport(len(data), {k: int(v) for k, v in counts.items() if k in ALL_TYPES}, dropped, seconds, out_dir)
