"""The audit's pictures: a contact sheet per issue type and a 2-D map of the features."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pipeline.audit.find import ALL_TYPES, PAIR_TYPES, Findings, Issue
from pipeline.reporting.contact_sheet import contact_sheet
from pipeline.store.pooled import PooledRows

MARKERS = {
    "label_issue": ("o", "red"),
    "outlier": ("X", "black"),
    "near_duplicate": ("s", "orange"),
    "leakage": ("^", "magenta"),
    "exact_duplicate": ("D", "blue"),
    "off_class": ("P", "brown"),
}


def short(row_id: str) -> str:
    """train/cat/cat.3.jpg -> cat.3.jpg"""
    return row_id.rsplit("/", 1)[-1]


def sheet_cells(kind: str, issues: list[Issue], data: PooledRows, limit: int) -> list[tuple[str, str]]:
    """(image id, caption) cells, the most certain first; a pair shows both images, each pair once."""
    cells: list[tuple[str, str]] = []
    shown: set[tuple[int, int]] = set()
    for issue in issues:
        if len(cells) >= limit:
            break
        row = issue.row
        head = f"{short(data.ids[row])}\n{data.splits[row]} {data.classes[data.labels[row]]}"
        if kind == "label_issue":
            cells.append((data.ids[row], f"{head}->{data.classes[issue.suggested]}\nscore {issue.score:.3f}"))
        elif kind in PAIR_TYPES:
            partner = issue.nearest[0]
            pair = (min(row, partner), max(row, partner))
            if pair in shown:
                continue
            shown.add(pair)
            first, second = pair
            for member, other in ((first, second), (second, first)):
                label = data.classes[data.labels[member]]
                caption = f"{short(data.ids[member])}\n{data.splits[member]} {label}"
                caption += f"\nd={issue.distance:.3f} {short(data.ids[other])}"
                cells.append((data.ids[member], caption))
        else:
            cells.append((data.ids[row], f"{head}\nscore {issue.score:.3f}"))
    return cells


def write_sheets(findings: Findings, data: PooledRows, images: Path, out_dir: Path, limit: int) -> list[Path]:
    """One contact sheet per issue type, `limit` thumbnails at most (pairs side by side)."""
    written = []
    for kind in ALL_TYPES:
        issues = findings.of_type(kind)
        cells = sheet_cells(kind, issues, data, limit)
        title = f"{kind}: {len(issues)} rows flagged, most certain first"
        written.append(
            contact_sheet(
                [images / row_id for row_id, _ in cells],
                [caption for _, caption in cells],
                out_dir / f"{kind}.png",
                columns=8,
                thumb=160,
                title=title,
            )
        )
    return written


def project(features: np.ndarray, method: str, seed: int) -> np.ndarray:
    """(N, d) -> (N, 2): PCA, or t-SNE (PCA-initialized) on standardized features."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler

    x = StandardScaler().fit_transform(features)
    if method == "pca" or len(x) < 5:
        return PCA(2, random_state=seed).fit_transform(x) if len(x) > 2 else np.zeros((len(x), 2))
    perplexity = float(min(30.0, (len(x) - 1) / 3))
    return TSNE(2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(x)


def write_map(findings: Findings, data: PooledRows, method: str, seed: int, out: Path) -> float:
    """A scatter of the 2-D projection colored by class, flagged rows marked by type; returns its seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = time.perf_counter()
    points = project(data.features, method, seed)
    figure, axes = plt.subplots(figsize=(9, 8), dpi=100)
    palette = plt.get_cmap("tab10")
    for index, name in enumerate(data.classes):
        mask = data.labels == index
        axes.scatter(*points[mask].T, s=5, alpha=0.4, color=palette(index % 10), label=f"{name} ({mask.sum()})")
    for kind in MARKERS:
        rows = sorted({issue.row for issue in findings.issues if issue.type == kind})
        if rows:
            marker, color = MARKERS[kind]
            axes.scatter(
                *points[rows].T, s=40, marker=marker, facecolors="none", edgecolors=color, label=f"{kind} ({len(rows)})"
            )
    axes.set_title(f"{method.upper()} of the pooled features: {len(data)} images, flagged ones marked")
    axes.legend(loc="best", fontsize=8, markerscale=1.5)
    axes.set_xticks([])
    axes.set_yticks([])
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)
    return time.perf_counter() - start
