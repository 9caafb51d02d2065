"""The DVC experiments table (`dvc exp show --csv --only-changed`) for the report's results section."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from typing import Any

from pipeline.core.errors import PipelineError

DROPPED_COLUMNS = ("typ", "parent", "State", "Executor")


class ExperimentsError(PipelineError, RuntimeError):
    """`dvc exp show` failed (e.g. run inside `dvc repro`, which holds the repository's lock)."""


def parse_experiments(text: str) -> list[dict[str, Any]]:
    """CSV rows without DVC's bookkeeping columns and without the columns that are empty in every row."""
    rows = list(csv.DictReader(io.StringIO(text)))
    kept = [c for c in (rows[0] if rows else {}) if c not in DROPPED_COLUMNS and any(r.get(c) for r in rows)]
    return [{column: row[column] for column in kept} for row in rows]


def dvc_experiments() -> list[dict[str, Any]]:
    """The workspace, its commit and every experiment on it: name, metrics and the params that differ."""
    command = [sys.executable, "-m", "dvc", "exp", "show", "--csv", "--only-changed"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise ExperimentsError(f"`dvc exp show` failed (exit {result.returncode}): {message}")
    return parse_experiments(result.stdout)
