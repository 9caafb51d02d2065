"""A store's summary as a small JSON file: its provenance attributes and rows per split, plus the sha256 the
weights stage recorded. featurize and `store merge` write it to metrics/<backbone>/store.json, so the report
shows the store from that file (a cheap DVC dependency) instead of depending on the store and its chunks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.core.atomic import atomic_file
from pipeline.store.index import FeatureStore


def store_summary(store_path: Path, weights_record: Path) -> dict[str, Any]:
    """{path, attrs, rows}: the index's attributes (the weights file's sha256 added) and each split's row count."""
    store = FeatureStore(store_path)
    record = json.loads(weights_record.read_text()) if weights_record.is_file() else {}
    attrs = {**store.attrs, "weights_file_sha256": record.get("sha256")}
    rows = {name: len(store.keys(name)) for name in store.splits}
    return {"path": str(store_path), "attrs": attrs, "rows": rows}


def plain(value: Any) -> Any:
    """JSON for the numpy values an HDF5 attribute may hold (arrays, scalars)."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def write_store_summary(store_path: Path, weights_record: Path, out: Path) -> Path:
    """Write the store's summary to `out` (atomically); returns `out`."""
    text = json.dumps(store_summary(store_path, weights_record), indent=2, sort_keys=True, default=plain) + "\n"
    with atomic_file(out) as partial:
        partial.write_text(text)
    return out
