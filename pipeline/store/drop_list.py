"""The audit's drop list (`audit/<backbone>/drop.csv`): training rows the heads leave out, and why.

The audit stage writes it; training reads it. A list with only its header drops nothing.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

COLUMNS = ("id", "types")


def write_drop_list(path: Path, rows: Iterable[tuple[str, list[str]]]) -> None:
    """rows: (manifest id, issue types that selected it)."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows((row_id, ";".join(types)) for row_id, types in rows)


def read_drop_list(path: Path) -> set[str]:
    """The manifest ids a drop list names; a clear error for a file that is not one."""
    if not path.is_file():
        raise FileNotFoundError(f"No audit drop list at {path}. Run the audit stage (`dvc repro audit@...`) first.")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or tuple(reader.fieldnames) != COLUMNS:
            raise ValueError(f"{path} is not an audit drop list: its header is not {','.join(COLUMNS)}.")
        return {row["id"] for row in reader}
