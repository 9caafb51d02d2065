"""featurize.mirror: rows averaged over each image and its left-right mirror, as part of the recipe."""

from pathlib import Path

import numpy as np
import pytest
from conftest import make_split

from pipeline.backbones import get_backbone
from pipeline.core.config import BackboneConfig, FeaturizeConfig, validate
from pipeline.core.errors import ConfigError
from pipeline.images.decode import image_batches
from pipeline.stages.featurize import feature_recipe, featurize
from pipeline.store.index import FeatureStore
from pipeline.store.manifest import read_manifest


def test_mirror_average_is_the_mean_of_the_map_and_the_mirrored_map_flipped_back() -> None:
    spec = get_backbone("efficientnet_lite0")
    weights = spec.resolve_weights("none")
    plain = spec.inference_base(96, weights)
    mirrored = spec.inference_base(96, weights, mirror=True)
    images = np.random.default_rng(0).uniform(-1, 1, (2, 96, 96, 3)).astype("float32")
    expected = (plain(images).numpy() + plain(images[:, :, ::-1]).numpy()[:, :, ::-1]) / 2
    np.testing.assert_allclose(mirrored(images).numpy(), expected, atol=1e-5)
    assert mirrored.output_shape == plain.output_shape == (None, 3, 3, 1280) and not mirrored.trainable
    symmetric = np.concatenate([images[:, :, :48], images[:, :, :48][:, :, ::-1]], axis=2)
    out = mirrored(symmetric).numpy()
    np.testing.assert_allclose(out, out[:, :, ::-1], atol=1e-5)  # a symmetric image gives a symmetric map


def test_mirror_is_in_the_recipe_only_when_on() -> None:
    spec = get_backbone("vgg16")
    weights = spec.resolve_weights("none")
    off = feature_recipe(spec, weights, 48, FeaturizeConfig(precision="float32"), "float32")
    on = feature_recipe(spec, weights, 48, FeaturizeConfig(precision="float32", mirror=True), "float32")
    assert "mirror" not in off and on == {**off, "mirror": True}  # stores made before the key keep their rows
    with pytest.raises(ConfigError, match="featurize.mirror: received 'yes'; allowed: a valid boolean"):
        validate({"featurize": {"mirror": "yes"}})


def test_mirrored_store_records_it_and_holds_the_mirror_average(tmp_path: Path) -> None:
    manifest = make_split(tmp_path, 4, train=2, validation=1, test=1)
    spec = get_backbone("vgg16")
    out = tmp_path / "features" / "vgg16.h5"
    config = FeaturizeConfig(batch_size=4, precision="float32", mirror=True)
    featurize("vgg16", BackboneConfig("none", 48), config, manifest, out)
    store = FeatureStore(out)
    assert bool(store.attrs["mirror"])
    rows = [r for r in read_manifest(manifest) if r.split == "test"]
    batch = next(iter(image_batches([str(manifest.parent / r.path) for r in rows], 48, "bilinear", 8, spec.preprocess)))
    base = spec.inference_base(48, spec.resolve_weights("none"))
    expected = (base(batch).numpy() + base(batch.numpy()[:, :, ::-1]).numpy()[:, :, ::-1]) / 2
    np.testing.assert_allclose(store.split("test").features, expected, rtol=1e-4, atol=1e-4)
