"""`python -m pipeline audit bench`: the audit stage timed at several row counts on this machine, as users run it.

Each size runs in a fresh process that does what `audit run` does: read the store file, find every issue type,
look at every image (the image-property checks), write issues.csv, counts, contact sheets and the map; it reports
each step's seconds and the peak resident memory of the process (and of its image-decoding workers). Rows past the
store's own are the store read again (its read counted), each copy's features with a little Gaussian noise (1% of
the features' standard deviation) and a new content key, and its images the same files again, so the work is that
of a store of that size.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from pipeline.core.config import AuditConfig
from pipeline.reporting.progress import Steps
from pipeline.store.pooled import PooledRows, load_pooled

NOISE = 0.01


def grown(parts: list[PooledRows], rows: int, seed: int) -> PooledRows:
    """The first `rows` rows of the store's reads laid end to end, with noise on the copies."""
    data = parts[0]
    rng = np.random.default_rng(seed)
    index = np.arange(rows) % len(data)
    features = np.concatenate([part.features for part in parts])[:rows]
    copies = np.arange(rows) >= len(data)
    scale = NOISE * data.features.std(axis=0)
    features[copies] += rng.standard_normal((int(copies.sum()), features.shape[1])).astype(np.float32) * scale
    keys = [data.keys[i] if i == n else f"{data.keys[i]}-copy{n}" for n, i in enumerate(index)]
    ids = [data.ids[i] for i in index]
    return PooledRows(features, data.labels[index], ids, data.splits[index], keys, data.classes)


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def peak_rss_mb() -> tuple[float, float]:
    """Peak resident memory in MB of this process and of its largest finished child (Linux reports KB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def timed_audit(store: Path, images: Path | None, rows: int, config: AuditConfig) -> str:
    """One size, in this process: the stage's steps on a store of `rows` rows; one line of seconds and memory."""
    from pipeline.audit.figures import write_map, write_sheets
    from pipeline.audit.stage import find

    seconds: dict[str, float] = {}
    overall = start = time.perf_counter()
    parts = [load_pooled(store, config.pooling)]
    while len(parts) * len(parts[0]) < rows:
        parts.append(load_pooled(store, config.pooling))
    data = grown(parts, rows, config.seed)
    del parts
    seconds["load"] = time.perf_counter() - start
    findings = find(data, config, Steps("audit", seconds), images)
    with tempfile.TemporaryDirectory() as scratch:
        if images is not None:
            start = time.perf_counter()
            write_sheets(findings, data, images, Path(scratch), config.sheet_images)
            seconds["sheets"] = time.perf_counter() - start
        seconds["map"] = write_map(findings, data, config.map, config.seed, Path(scratch) / "map.png")
    total = time.perf_counter() - overall
    own, workers = peak_rss_mb()
    steps = ", ".join(f"{step} {value:.1f}" for step, value in seconds.items())
    memory = f"peak RSS {own:,.0f} MB" + (f" (image workers {workers:,.0f} MB each)" if workers else "")
    return f"{rows} rows: {total:.1f} s ({steps}); {len(findings.issues)} issues; {memory}; {load_average()}"


def describe(store: Path, pooling: str) -> str:
    data = load_pooled(store, pooling)
    return f"{store}: {len(data)} rows of {data.features.shape[1]} pooled features; {load_average()}"


def in_fresh_process(function: Callable[..., str], *args: object) -> str:
    """`function(*args)` in a child forked from this small CLI process (not a daemon: the image checks start
    workers of theirs; forked, not spawned: cleanlab's own worker pool needs fork), so its peak memory is its own."""
    with ProcessPoolExecutor(1, mp_context=get_context("fork")) as pool:
        return pool.submit(function, *args).result()


def bench(
    store: Path, sizes: list[int], config: AuditConfig | None = None, images: Path | None = None
) -> Iterator[str]:
    """One line per size, each timed in a fresh process; `images` (the split folder) adds the image checks and
    the contact sheets, None leaves them out."""
    config = config or AuditConfig()
    yield in_fresh_process(describe, store, config.pooling)
    for size in sizes:
        yield in_fresh_process(timed_audit, store, images, size, config)
