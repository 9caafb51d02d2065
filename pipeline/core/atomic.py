"""Atomic writes: a file or folder is written under a temporary `.partial` name and renamed when complete.

Readers (and a rerun after a crash) only ever see whole files: the previous version, or the new one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARTIAL_SUFFIX = ".partial"


def partial_path(path: Path) -> Path:
    """features/vgg16.h5 -> features/vgg16.h5.partial"""
    return path.with_name(path.name + PARTIAL_SUFFIX)


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; it replaces `path` only if the block completes, else it is removed."""
    tmp = partial_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def staged_folder(out_dir: Path) -> Iterator[Path]:
    """A fresh sibling folder to fill; it replaces `out_dir` only if the block completes, else it is removed."""
    staging = partial_path(out_dir)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)


def remove_partials(folder: Path) -> None:
    """Temporary files a killed run left behind in `folder`."""
    for tmp in folder.glob(f"*{PARTIAL_SUFFIX}") if folder.is_dir() else []:
        tmp.unlink()
