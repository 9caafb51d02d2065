"""`python -m pipeline audit bench`: the audit's computation timed at several row counts on this machine.

Rows past the store's own are its rows again, each with a little Gaussian noise (1% of the features'
standard deviation) and a new content key, so the work is that of a store of that size; contact sheets
are left out (they draw a fixed number of thumbnails whatever the size).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.audit.figures import project
from pipeline.audit.stage import find
from pipeline.core.config import AuditConfig
from pipeline.store.pooled import PooledRows, load_pooled

NOISE = 0.01


def grown(data: PooledRows, rows: int, seed: int) -> PooledRows:
    """The first `rows` rows of the store, tiled (with noise on the copies) when it has fewer."""
    rng = np.random.default_rng(seed)
    index = np.arange(rows) % len(data)
    features = data.features[index].copy()
    copies = np.arange(rows) >= len(data)
    scale = NOISE * data.features.std(axis=0)
    features[copies] += rng.standard_normal((int(copies.sum()), features.shape[1])).astype(np.float32) * scale
    keys = [data.keys[i] if i == n else f"{data.keys[i]}-copy{n}" for n, i in enumerate(index)]
    ids = [data.ids[i] for i in index]
    return PooledRows(features, data.labels[index], ids, data.splits[index], keys, data.classes)


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def bench(store: Path, sizes: list[int], config: AuditConfig | None = None) -> Iterator[str]:
    """One line per size: seconds of each step of the audit and in all."""
    config = config or AuditConfig()
    data = load_pooled(store, config.pooling)
    yield f"{store}: {len(data)} rows of {data.features.shape[1]} pooled features; {load_average()}"
    for size in sizes:
        sample = grown(data, size, config.seed)
        seconds: dict[str, float] = {}
        start = time.perf_counter()
        findings = find(sample, config, seconds)
        map_start = time.perf_counter()
        project(sample.features, config.map, config.seed)
        seconds["map"] = time.perf_counter() - map_start
        total = time.perf_counter() - start
        steps = ", ".join(f"{step} {value:.1f}" for step, value in seconds.items())
        yield f"{size} rows: {total:.1f} s ({steps}); {len(findings.issues)} issues; {load_average()}"
