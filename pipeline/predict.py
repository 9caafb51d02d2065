"""Classify image files with a conv base and a trained head, made the way the feature store was made."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from pipeline.backbones import BackboneSpec, get_backbone
from pipeline.config import BackboneConfig
from pipeline.featurize import image_batches
from pipeline.store import FeatureStore, StoreError
from pipeline.train import load_head


@dataclass(frozen=True)
class Prediction:
    image: Path
    label: str
    probability: float


def conv_base_of_store(
    store_path: Path, backbone_config: BackboneConfig, as_recorded: bool = True
) -> tuple[FeatureStore, BackboneSpec, keras.Model]:
    """The conv base that made a store: its backbone, input size and weights (checked by sha256).

    With `as_recorded` (predict) it is mirror-averaged if the store's rows are; without it, the plain
    conv base (pictures look inside its layers, one image at a time)."""
    store = FeatureStore(store_path)
    spec = get_backbone(store.attrs["backbone"])
    weights = spec.resolve_weights(backbone_config.weights)
    if weights.fingerprint_id != store.attrs["weights_sha256"]:
        raise StoreError(
            f"The weights in params ({backbone_config.weights}) differ from those that made {store_path} "
            f"({store.attrs['weights']}); re-run `dvc repro` so the head matches the conv base."
        )
    precision = store.attrs.get("precision", "float32")
    mirror = as_recorded and bool(store.attrs.get("mirror", False))
    return store, spec, spec.inference_base(int(store.attrs["input_size"]), weights, precision, mirror)


def predict(
    images: list[Path], store_path: Path, backbone_config: BackboneConfig, head: str, head_dir: Path
) -> list[Prediction]:
    """The most probable class of each image, and its probability."""
    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"Image file(s) not found: {', '.join(missing)}")
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
