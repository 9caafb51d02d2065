"""Floor 1, heads trained on cached features, by name, and their persistence. Imports core and libraries.
Adding a head is an entry in HEADS.

Builders are imported when asked for, so a scikit-learn head's stages never pay for importing TensorFlow.
A saved head is `head.keras` or `head.npz` (no pickles) in its folder; `save_head` and `load_head` are the
only code that knows where.
"""

from __future__ import annotations

import shutil
from importlib import import_module
from pathlib import Path

from pipeline.core.errors import InputError, MissingInputError
from pipeline.heads.base import Head, HeadBuilder, TrainingData, head_pooling

HEADS: dict[str, str] = {
    "dense": "pipeline.heads.dense:DenseHeadBuilder",
    "logreg": "pipeline.heads.logreg:LogRegHeadBuilder",
}


def get_head(name: str) -> HeadBuilder:
    if name not in HEADS:
        raise InputError(f"Unknown head. Received: head={name!r}. Known: {sorted(HEADS)}")
    module, builder = HEADS[name].split(":")
    return getattr(import_module(module), builder)()


def head_file(head_dir: Path, builder: HeadBuilder) -> Path:
    """The saved head inside its output folder: head.keras or head.npz."""
    return head_dir / f"head{builder.file_suffix}"


def save_head(model: Head, builder: HeadBuilder, head_dir: Path) -> Path:
    """Replace `head_dir` with a folder holding only the saved head; returns the file."""
    shutil.rmtree(head_dir, ignore_errors=True)
    head_dir.mkdir(parents=True)
    path = head_file(head_dir, builder)
    model.save(path)
    return path


def load_head(head: str, head_dir: Path) -> Head:
    """A saved head, loaded without unpickling."""
    builder = get_head(head)
    path = head_file(head_dir, builder)
    if not path.is_file():
        raise MissingInputError(f"No trained '{head}' head at {path}. Run `dvc repro` (the train stage) first.")
    return builder.load(path)


def is_keras_head(name: str) -> bool:
    """Whether the head saves a Keras model (which visualize stacks on the conv base)."""
    return get_head(name).file_suffix == ".keras"


__all__ = [
    "HEADS",
    "Head",
    "HeadBuilder",
    "TrainingData",
    "get_head",
    "head_file",
    "head_pooling",
    "is_keras_head",
    "load_head",
    "save_head",
]
