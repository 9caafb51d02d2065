"""Heads trained on cached features, by name. Adding one is an entry in HEADS."""

from __future__ import annotations

from pipeline.heads.base import Head, HeadBuilder, TrainingData
from pipeline.heads.dense import DenseHeadBuilder
from pipeline.heads.logreg import LogRegHeadBuilder

HEADS: dict[str, HeadBuilder] = {"dense": DenseHeadBuilder(), "logreg": LogRegHeadBuilder()}


def get_head(name: str) -> HeadBuilder:
    try:
        return HEADS[name]
    except KeyError:
        raise ValueError(f"Unknown head. Received: head={name!r}. Known: {sorted(HEADS)}") from None


__all__ = ["HEADS", "Head", "HeadBuilder", "TrainingData", "get_head"]
