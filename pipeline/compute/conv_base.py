"""The conv base that made a feature store, rebuilt to run on new images (predict, visualize)."""

from __future__ import annotations

from pathlib import Path

import keras

from pipeline.backbones import BackboneSpec, get_backbone
from pipeline.core.config import BackboneConfig
from pipeline.store.index import FeatureStore, check_weights


def conv_base_of_store(
    store_path: Path, backbone_config: BackboneConfig, as_recorded: bool = True, precision: str | None = None
) -> tuple[FeatureStore, BackboneSpec, keras.Model]:
    """The conv base that made a store: its backbone, input size and weights (checked by sha256).

    With `as_recorded` (predict) it is mirror-averaged if the store's rows are; without it, the plain
    conv base (the pictures look inside its layers). `precision` overrides the store's (export: float32)."""
    store = FeatureStore(store_path)
    spec = get_backbone(store.attrs["backbone"])
    weights = spec.resolve_weights(backbone_config.weights)
    check_weights(store.attrs, weights, str(store_path), "Re-run `dvc repro` so the head matches the conv base.")
    precision = precision or store.attrs.get("precision", "float32")
    mirror = as_recorded and bool(store.attrs.get("mirror", False))
    return store, spec, spec.inference_base(int(store.attrs["input_size"]), weights, precision, mirror)
