"""Heads trained on cached features, by name. Adding one is an entry in HEADS.

Builders are imported when asked for, so a scikit-learn head's stages never pay for importing TensorFlow.
"""

from __future__ import annotations

from importlib import import_module

from pipeline.heads.base import Head, HeadBuilder, TrainingData

HEADS: dict[str, str] = {
    "dense": "pipeline.heads.dense:DenseHeadBuilder",
    "logreg": "pipeline.heads.logreg:LogRegHeadBuilder",
}


def get_head(name: str) -> HeadBuilder:
    if name not in HEADS:
        raise ValueError(f"Unknown head. Received: head={name!r}. Known: {sorted(HEADS)}")
    module, builder = HEADS[name].split(":")
    return getattr(import_module(module), builder)()


def is_keras_head(name: str) -> bool:
    """Whether the head saves a Keras model (which visualize stacks on the conv base)."""
    return get_head(name).file_suffix == ".keras"


__all__ = ["HEADS", "Head", "HeadBuilder", "TrainingData", "get_head", "is_keras_head"]
