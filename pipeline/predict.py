"""Classify image files with a conv base and a trained head, made the way the feature store was made."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import BackboneConfig
from pipeline.conv_base import conv_base_of_store
from pipeline.errors import MissingInputError
from pipeline.heads import load_head
from pipeline.image_input import image_batches


@dataclass(frozen=True)
class Prediction:
    image: Path
    label: str
    probability: float


def predict(
    images: list[Path], store_path: Path, backbone_config: BackboneConfig, head: str, head_dir: Path
) -> list[Prediction]:
    """The most probable class of each image, and its probability."""
    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        raise MissingInputError(f"Image file(s) not found: {', '.join(missing)}")
    store, spec, base = conv_base_of_store(store_path, backbone_config)
    size = int(store.attrs["input_size"])
    batches = image_batches([str(p) for p in images], size, store.attrs["resize"], 32, spec.preprocess)
    features = np.concatenate([base.predict_on_batch(batch) for batch in batches])
    probabilities = load_head(head, head_dir).predict_proba(features)
    classes = store.classes
    return [
        Prediction(path, classes[int(row.argmax())], float(row.max()))
        for path, row in zip(images, probabilities, strict=True)
    ]
