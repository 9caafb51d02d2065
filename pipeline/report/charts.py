"""Vega-Lite v5 specs for the report's interactive charts: accuracy by backbone x head, learning curves (train
and validation on one chart), confusion matrices and per-class precision/recall/F1. Hover shows the numbers;
clicking a legend entry highlights that series."""

from __future__ import annotations

from typing import Any

SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"  # an identifier only: nothing is fetched
Spec = dict[str, Any]


def legend_highlight(name: str, field: str) -> tuple[dict, dict]:
    """A selection bound to the legend (click an entry; shift-click adds) and the opacity that shows it."""
    param = {"name": name, "select": {"type": "point", "fields": [field]}, "bind": "legend"}
    opacity = {"condition": {"param": name, "value": 1}, "value": 0.15}
    return param, opacity


def accuracy_chart(rows: list[dict[str, Any]]) -> Spec:
    """Test accuracy per result (backbone/head or method), one bar each, coloured by kind."""
    return {
        "$schema": SCHEMA,
        "title": "Test accuracy",
        "data": {"values": rows},
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "y": {"field": "result", "type": "nominal", "sort": "-x", "title": None},
            "x": {"field": "accuracy", "type": "quantitative", "scale": {"domain": [0, 1]}, "title": "test accuracy"},
            "color": {"field": "kind", "type": "nominal", "title": None},
            "tooltip": [
                {"field": "result", "type": "nominal"},
                {"field": "accuracy", "type": "quantitative", "format": ".4f"},
                {"field": "loss", "type": "quantitative", "format": ".4f"},
                {"field": "images", "type": "quantitative"},
            ],
        },
        "width": 420,
    }


def curves_chart(points: list[dict[str, Any]], x_name: str, title: str) -> Spec:
    """One panel per metric (accuracy, loss), train and validation as two lines on each."""
    param, opacity = legend_highlight("split_pick", "split")
    return {
        "$schema": SCHEMA,
        "title": title,
        "data": {"values": points},
        "facet": {"column": {"field": "metric", "type": "nominal", "title": None}},
        "resolve": {"scale": {"y": "independent"}},
        "spec": {
            "width": 260,
            "height": 180,
            "params": [param],
            "mark": {"type": "line", "point": True, "tooltip": True},
            "encoding": {
                "x": {"field": "x", "type": "quantitative", "title": x_name},
                "y": {"field": "value", "type": "quantitative", "scale": {"zero": False}, "title": None},
                "color": {"field": "split", "type": "nominal", "sort": ["train", "validation"]},
                "opacity": opacity,
                "tooltip": [
                    {"field": "split", "type": "nominal"},
                    {"field": "x", "type": "quantitative", "title": x_name},
                    {"field": "value", "type": "quantitative", "format": ".4f"},
                ],
            },
        },
    }


def confusion_chart(cells: list[dict[str, Any]], title: str) -> Spec:
    """Rows: true class; columns: predicted; each cell's count written in it."""
    size = max(160, 36 * len({c["actual"] for c in cells}))
    darkest = max((c["count"] for c in cells), default=0)
    encoding = {
        "x": {"field": "predicted", "type": "nominal"},
        "y": {"field": "actual", "type": "nominal", "title": "true"},
    }
    return {
        "$schema": SCHEMA,
        "title": title,
        "data": {"values": cells},
        "width": size,
        "height": size,
        "encoding": encoding,
        "layer": [
            {
                "mark": {"type": "rect", "tooltip": True},
                "encoding": {
                    "color": {"field": "count", "type": "quantitative", "scale": {"scheme": "blues"}},
                    "tooltip": [
                        {"field": "actual", "type": "nominal", "title": "true"},
                        {"field": "predicted", "type": "nominal"},
                        {"field": "count", "type": "quantitative"},
                    ],
                },
            },
            {
                "mark": {"type": "text"},
                "encoding": {
                    "text": {"field": "count", "type": "quantitative"},
                    "color": {
                        "condition": [
                            {"test": "datum.count == 0", "value": "#999"},
                            {"test": f"datum.count > {darkest / 2}", "value": "white"},
                        ],
                        "value": "black",
                    },
                },
            },
        ],
    }


def per_class_chart(rows: list[dict[str, Any]], title: str) -> Spec:
    """Precision, recall and F1 side by side for each class; click a measure in the legend to pick it out."""
    values = [
        {"class": row["class"], "measure": measure, "value": row[measure], "support": row["support"]}
        for row in rows
        for measure in ("precision", "recall", "f1")
    ]
    param, opacity = legend_highlight("measure_pick", "measure")
    return {
        "$schema": SCHEMA,
        "title": title,
        "data": {"values": values},
        "params": [param],
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "x": {"field": "class", "type": "nominal", "title": None},
            "xOffset": {"field": "measure", "type": "nominal", "sort": ["precision", "recall", "f1"]},
            "y": {"field": "value", "type": "quantitative", "scale": {"domain": [0, 1]}, "title": None},
            "color": {"field": "measure", "type": "nominal", "sort": ["precision", "recall", "f1"]},
            "opacity": opacity,
            "tooltip": [
                {"field": "class", "type": "nominal"},
                {"field": "measure", "type": "nominal"},
                {"field": "value", "type": "quantitative", "format": ".4f"},
                {"field": "support", "type": "quantitative"},
            ],
        },
        "width": max(200, 60 * len(rows)),
        "height": 180,
    }
