"""featurize on real JPEGs with random weights: the store's schema, alignment and atomicity."""

from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import make_split

from pipeline.core.atomic import partial_path
from pipeline.core.config import SPLITS, BackboneConfig, FeaturizeConfig
from pipeline.images.decode import image_batches
from pipeline.stages.featurize import featurize
from pipeline.store.index import FeatureStore
from pipeline.store.manifest import read_manifest


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return make_split(tmp_path_factory.mktemp("fz"), 8, train=4, validation=2, test=2)


@pytest.fixture(scope="module")
def store(manifest: Path) -> Path:
    out = manifest.parent.parent / "features" / "vgg16.h5"
    config = FeaturizeConfig(batch_size=3, precision="float32")
    report = featurize("vgg16", BackboneConfig("none", 48), config, manifest, out)
    assert report.images == 16 and report.feature_shape == (1, 1, 512)
    return out


def test_store_schema_and_alignment(store: Path, manifest: Path) -> None:
    rows = read_manifest(manifest)
    with h5py.File(store, "r") as handle:
        for split_name in SPLITS:
            group = handle[split_name]
            expected = [r for r in rows if r.split == split_name]
            assert group["features"].shape == (len(expected), 1, 1, 512)
            assert [i.decode() for i in group["ids"][...]] == [r.path for r in expected]
            assert list(group["labels"][...]) == [["cat", "dog"].index(r.cls) for r in expected]
            assert np.isfinite(group["features"][...]).all()
    attrs = FeatureStore(store).attrs
    assert attrs["backbone"] == "vgg16" and attrs["weights"] == "none" and attrs["input_size"] == 48
    assert attrs["classes"] == ["cat", "dog"] and attrs["feature_shape"] == [1, 1, 512]
    assert {"tensorflow", "keras", "numpy", "h5py"} <= set(attrs["versions"])
    assert not partial_path(store).exists()


def test_features_are_deterministic_and_match_a_direct_pass(store: Path, manifest: Path) -> None:
    """Batching and streaming do not change the numbers: compare with one direct model call."""
    from pipeline.backbones import get_backbone

    spec = get_backbone("vgg16")
    model = spec.conv_base(48, spec.resolve_weights("none"))
    rows = [r for r in read_manifest(manifest) if r.split == "validation"]
    batch = next(iter(image_batches([str(manifest.parent / r.path) for r in rows], 48, "bilinear", 8, spec.preprocess)))
    direct = model.predict_on_batch(batch)
    stored = FeatureStore(store).split("validation").features
    np.testing.assert_allclose(stored, direct, rtol=1e-4, atol=1e-4)


def test_failure_leaves_no_store_and_keeps_the_old_one(store: Path, manifest: Path, tmp_path: Path) -> None:
    before = store.read_bytes()
    broken = manifest.parent / "broken.csv"
    rows = manifest.read_text().splitlines()
    broken.write_text("\n".join(rows[:3] + ["train/cat/cat.999.jpg,cat,train," + "0" * 64]) + "\n")
    with pytest.raises(FileNotFoundError, match=r"1 image\(s\) listed in .*broken.csv are missing.*cat.999.jpg"):
        featurize("vgg16", BackboneConfig("none", 48), FeaturizeConfig(), broken, store)
    assert store.read_bytes() == before
    assert not partial_path(store).exists()


def test_bfloat16_and_float16_storage_stay_close_to_float32(store: Path, manifest: Path, tmp_path: Path) -> None:
    """Reduced precision is a recipe of its own (new fingerprint) and stays within a few percent of fp32."""
    reference = FeatureStore(store).split("train").features
    config = FeaturizeConfig(batch_size=4, precision="bfloat16", storage_dtype="float16")
    out = tmp_path / "bf16" / "vgg16.h5"
    featurize("vgg16", BackboneConfig("none", 48), config, manifest, out)
    reduced = FeatureStore(out)
    assert (
        reduced.attrs["precision"] == "bfloat16"
        and reduced.attrs["fingerprint"] != FeatureStore(store).attrs["fingerprint"]
    )
    with h5py.File(out, "r") as handle:
        assert handle["train"]["features"].dtype == np.float16
    features = reduced.split("train").features
    assert features.dtype == np.float32
    relative = np.linalg.norm(features - reference) / np.linalg.norm(reference)
    assert 0 < relative < 0.03


def test_precision_and_storage_are_checked() -> None:
    from pipeline.backbones.registry import compute_policy

    with pytest.raises(ValueError, match="precision must be one of"):
        compute_policy("int8")
    with pytest.raises(ValueError, match=r"storage_dtype\n.*'float32' or 'float16'"):
        featurize("vgg16", BackboneConfig("none", 48), FeaturizeConfig(storage_dtype="int8"), Path("m.csv"), Path("x"))
