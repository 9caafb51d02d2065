"""Learning curves as people read them: one table and one PNG per metric, train and validation side by side.

`CurveRecorder` takes what a head logs (dvclive's `log_metric`/`next_step`, so heads log the same way to
either) and writes `<metric>.tsv` (columns: the x axis, train, validation) for `dvc plots`, plus
`<metric>.png` for readers offline (`dvc plots show`'s HTML loads its charting library from a CDN).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

SERIES = ("train", "validation")


class CurveRecorder:
    """Rows of logged values, one per step. A name without a split prefix (e.g. `log10_C`) is an x value."""

    def __init__(self, x_name: str = "epoch") -> None:
        self.x_name = x_name
        self.rows: list[dict[str, float]] = [{}]
        self.summary: dict[str, Any] = {}

    def log_metric(self, name: str, value: float) -> None:
        self.rows[-1][name] = float(value)

    def next_step(self) -> None:
        self.rows.append({})

    def steps(self) -> list[dict[str, float]]:
        return [row for row in self.rows if row]

    def metrics(self) -> list[str]:
        names = {name.split("/", 1)[1] for row in self.steps() for name in row if "/" in name}
        return sorted(names)

    def table(self, metric: str) -> list[tuple[float, float | None, float | None]]:
        """(x, train, validation) per step; x is the logged x value, else the 1-based step (epoch)."""
        return [
            (row.get(self.x_name, number), row.get(f"train/{metric}"), row.get(f"validation/{metric}"))
            for number, row in enumerate(self.steps(), start=1)
        ]

    def write(self, out_dir: Path, title: str, tables: bool = True) -> list[Path]:
        """`<metric>.tsv` (unless tables=False) and `<metric>.png` for every metric logged; returns the files."""
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for metric in self.metrics():
            rows = self.table(metric)
            if tables:
                written.append(out_dir / f"{metric}.tsv")
                with open(written[-1], "w", newline="") as handle:
                    writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
                    writer.writerow((self.x_name, *SERIES))
                    writer.writerows(("" if v is None else round(v, 6) for v in row) for row in rows)
            written.append(plot_curves(rows, self.x_name, metric, f"{title}: {metric}", out_dir / f"{metric}.png"))
        return written


def plot_curves(rows: list[tuple], x_name: str, metric: str, title: str, path: Path) -> Path:
    """Train and validation of one metric on one set of axes, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
    for index, (series, style) in enumerate(zip(SERIES, ("o-", "s--"), strict=True), start=1):
        points = [(row[0], row[index]) for row in rows if row[index] is not None]
        if points:
            axes.plot(*zip(*points, strict=True), style, label=series, markersize=4)
    axes.set_xlabel(x_name)
    axes.set_ylabel(metric)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def confusion_png(matrix, classes: list[str], title: str, path: Path) -> Path:
    """The confusion matrix (rows: actual, columns: predicted) with its counts, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    size = max(3.5, 1.0 + 0.9 * len(classes))
    figure, axes = plt.subplots(figsize=(size, size), dpi=100)
    axes.imshow(matrix, cmap="Blues")
    peak = matrix.max() if matrix.size else 0
    for (row, column), count in _cells(matrix):
        color = "white" if peak and count > peak / 2 else "black"
        axes.text(column, row, str(count), ha="center", va="center", color=color)
    axes.set_xticks(range(len(classes)), classes)
    axes.set_yticks(range(len(classes)), classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    axes.set_title(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def _cells(matrix):
    for row in range(matrix.shape[0]):
        for column in range(matrix.shape[1]):
            yield (row, column), int(matrix[row, column])
