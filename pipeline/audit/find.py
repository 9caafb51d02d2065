"""Finding issues in arrays: pooled features, labels, splits and content keys in, flagged rows out.

- label_issue: cleanlab's `find_label_issues` on out-of-fold probabilities of a logistic regression over
  the pooled features (every split pooled: a wrong label in test misleads as much as one in train); the
  score is 1 - cleanlab's self-confidence label quality, the suggestion the out-of-fold prediction.
- outlier: cleanlab's feature outlier score from the mean cosine distance to the k nearest rows, flagged
  with Datalab's rule (mean distance above Q3 + (1/threshold - 1) * IQR); the score is 1 - cleanlab's.
- near_duplicate / leakage: pairs closer than a fraction of the median nearest-neighbor distance
  (cleanlab Datalab's near-duplicate rule), within one split / across splits; score 1 - distance / cutoff.
- exact_duplicate: rows with the same content key (sha256 of the image file), score 1.
- off_class: far from the class it is labelled: the cosine distance to the mean direction of its class (the
  mean taken without the class's farthest tenth), flagged above Q3 + (1/threshold - 1) * IQR of its class's
  distances (Datalab's rule again); the score grows from 0 at the cutoff towards 1. A tight group of junk is
  each other's nearest neighbours, so the k-NN outlier score misses it; it is still far from the class it claims.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pipeline.store.similarity import Neighbors

ISSUE_TYPES = ("label_issue", "outlier", "off_class", "near_duplicate", "leakage", "exact_duplicate")
PAIR_TYPES = ("near_duplicate", "leakage", "exact_duplicate")
IMAGE_TYPES = ("low_information", "light", "dark", "blurry", "odd_aspect_ratio", "odd_size", "grayscale")
ALL_TYPES = ISSUE_TYPES + IMAGE_TYPES  # the order of issues.csv, counts.json and the contact sheets


@dataclass(frozen=True)
class Issue:
    """One flagged row for one issue type. `nearest`: partner rows, nearest first (pair types)."""

    row: int
    type: str
    score: float  # in [0, 1]; higher is more certain
    suggested: int | None = None  # label_issue: the class the out-of-fold head predicts
    nearest: tuple[int, ...] = ()
    distance: float | None = None  # pair types: cosine distance to the nearest partner


@dataclass
class Findings:
    issues: list[Issue]
    probabilities: np.ndarray  # (N, classes) out-of-fold
    thresholds: dict[str, float] = field(default_factory=dict)

    def of_type(self, kind: str) -> list[Issue]:
        """Issues of one type, the most certain first."""
        return sorted((i for i in self.issues if i.type == kind), key=lambda i: (-i.score, i.row))


def out_of_fold_probabilities(
    x: np.ndarray,
    labels: np.ndarray,
    folds: int,
    c: float,
    seed: int,
    done: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Class probabilities of each row from a standardized logistic regression that never saw that row
    (scikit-learn's cross_val_predict, one fold at a time so that `done(1)` can follow each fit)."""
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    smallest = int(np.bincount(labels).min())
    if smallest < folds:
        raise ValueError(
            f"audit.folds = {folds} needs at least {folds} images of every class; the smallest class has {smallest}."
        )
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed))
    probabilities = np.empty((len(labels), int(labels.max()) + 1), dtype=np.float64)
    for train, held_out in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, labels):
        probabilities[held_out] = clone(model).fit(x[train], labels[train]).predict_proba(x[held_out])
        if done is not None:
            done(1)
    return probabilities


def label_issues(labels: np.ndarray, probabilities: np.ndarray, filter_by: str) -> list[Issue]:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    flagged = find_label_issues(labels, probabilities, filter_by=filter_by)
    quality = get_label_quality_scores(labels, probabilities, method="self_confidence")
    suggested = probabilities.argmax(axis=1)
    return [
        Issue(int(row), "label_issue", float(1.0 - quality[row]), suggested=int(suggested[row]))
        for row in np.flatnonzero(flagged)
    ]


def outliers(graph: Neighbors, threshold: float) -> tuple[list[Issue], float]:
    """Rows far from their k nearest rows, and the mean-distance cutoff that flagged them."""
    from cleanlab.outlier import transform_distances_to_scores

    mean_distance = graph.distances.mean(axis=1).astype(np.float64)
    scale = max(float(np.median(mean_distance)), 100 * np.finfo(np.float64).eps)
    scores = transform_distances_to_scores(mean_distance, t=1, scaling_factor=scale)
    q1, q3 = np.percentile(mean_distance, [25, 75])
    cutoff = float(q3 + (1.0 / threshold - 1.0) * (q3 - q1))
    issues = [Issue(int(row), "outlier", float(1.0 - scores[row])) for row in np.flatnonzero(mean_distance > cutoff)]
    return issues, cutoff


def class_distances(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each row's cosine distance to its own class's mean direction (unit vectors in), the mean taken again
    without the class's farthest tenth so that a group of junk does not pull it."""
    distances = np.zeros(len(vectors))
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        first = 1.0 - vectors[members] @ direction(vectors[members])
        core = members[first <= np.quantile(first, 0.9)]
        distances[members] = 1.0 - vectors[members] @ direction(vectors[core])
    return distances


def direction(vectors: np.ndarray) -> np.ndarray:
    mean = vectors.mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), np.finfo(np.float32).tiny)


def off_class(vectors: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[list[Issue], dict[str, float]]:
    """Rows far from their own class's mean direction; the per-class distance cutoffs that flagged them."""
    distances = class_distances(vectors, labels)
    issues, cutoffs = [], {}
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        q1, median, q3 = np.percentile(distances[members], [25, 50, 75])
        cutoff = float(q3 + (1.0 / threshold - 1.0) * (q3 - q1))
        cutoffs[f"off_class_distance_{int(label)}"] = cutoff
        for row in members[distances[members] > cutoff]:
            score = 1.0 - np.exp(-(distances[row] - cutoff) / max(cutoff - median, 1e-12))
            issues.append(Issue(int(row), "off_class", float(score)))
    return issues, cutoffs


def close_pairs(graph: Neighbors, cutoff: float) -> dict[tuple[int, int], float]:
    """{(i, j): distance} for i < j that are within `cutoff` of each other in the k-nearest graph."""
    pairs: dict[tuple[int, int], float] = {}
    rows, columns = np.nonzero(graph.distances < cutoff)
    for i, position in zip(rows.tolist(), columns.tolist(), strict=True):
        j = int(graph.indices[i, position])
        pairs[(min(i, j), max(i, j))] = float(graph.distances[i, position])
    return pairs


def near_duplicates(graph: Neighbors, splits: np.ndarray, fraction: float) -> tuple[list[Issue], float]:
    """near_duplicate (same split) and leakage (different splits) issues, and the distance cutoff used."""
    median = max(float(np.median(graph.distances[:, 0])), 1e-12)
    cutoff = fraction * median
    partners: dict[tuple[int, str], list[tuple[float, int]]] = defaultdict(list)
    for (i, j), distance in close_pairs(graph, cutoff).items():
        kind = "near_duplicate" if splits[i] == splits[j] else "leakage"
        partners[(i, kind)].append((distance, j))
        partners[(j, kind)].append((distance, i))
    return [pair_issue(row, kind, sorted(found), cutoff) for (row, kind), found in partners.items()], cutoff


def pair_issue(row: int, kind: str, found: list[tuple[float, int]], cutoff: float) -> Issue:
    distance = found[0][0]
    score = 1.0 - distance / cutoff if cutoff > 0 else 1.0
    return Issue(row, kind, float(np.clip(score, 0.0, 1.0)), nearest=tuple(j for _, j in found), distance=distance)


def exact_duplicates(keys: list[str]) -> list[Issue]:
    """Every row whose content key another row shares."""
    groups: dict[str, list[int]] = defaultdict(list)
    for row, key in enumerate(keys):
        groups[key].append(row)
    return [
        Issue(row, "exact_duplicate", 1.0, nearest=tuple(r for r in members if r != row), distance=0.0)
        for members in groups.values()
        if len(members) > 1
        for row in members
    ]


def rows_to_drop(issues: list[Issue], splits: np.ndarray, types: tuple[str, ...], min_score: float) -> set[int]:
    """Training rows to leave out of the heads: flagged with one of `types` at `min_score` or above.

    label_issue and outlier drop the row; leakage drops the training side of a cross-split pair;
    near_duplicate and exact_duplicate keep the first row of each group (store order) and drop the others.
    """
    drop: set[int] = set()
    for issue in issues:
        if issue.type not in types or issue.score < min_score or splits[issue.row] != "train":
            continue
        if issue.type in ("near_duplicate", "exact_duplicate") and min(issue.nearest) > issue.row:
            continue  # the first of its group stays
        drop.add(issue.row)
    return drop
