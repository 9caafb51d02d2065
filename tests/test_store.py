"""The chunked feature store: incremental updates, shards + merge, verification, readers during writes."""

from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import make_split

from pipeline.config import BackboneConfig, FeaturizeConfig
from pipeline.errors import StoreError
from pipeline.featurize import Shard, featurize, merge
from pipeline.store import FeatureStore, chunk_folder
from pipeline.verify import verify

BACKBONE = BackboneConfig(weights="none", input_size=32)
CONFIG = FeaturizeConfig(batch_size=8, chunk_rows=8)


def run(manifest: Path, store: Path, shard: Shard | None = None):
    return featurize("vgg16", BACKBONE, CONFIG, manifest, store, shard)


@pytest.fixture()
def featurized(tmp_path: Path) -> tuple[Path, Path]:
    manifest = make_split(tmp_path, 20, 10, 5, 5)
    store = tmp_path / "features" / "vgg16.h5"
    report = run(manifest, store)
    assert report.computed == 40 and report.images == 40
    return manifest, store


def test_adding_ten_images_computes_exactly_ten(featurized, tmp_path: Path) -> None:
    manifest, store = featurized
    before = FeatureStore(store).split("train")
    manifest = make_split(tmp_path, 25, 12, 6, 7)  # 5 more per class: 10 new images
    report = run(manifest, store)
    assert report.computed == 10 and report.images == 50
    after = FeatureStore(store).split("train")
    assert after.ids[:10] == before.ids[:10]
    np.testing.assert_array_equal(after.features[:10], before.features[:10])
    assert verify(store, manifest) == []


def test_removing_images_drops_their_rows(featurized, tmp_path: Path) -> None:
    manifest, store = featurized
    manifest = make_split(tmp_path, 20, 4, 2, 2)
    (tmp_path / "images" / "cat.19.jpg").unlink()
    report = run(manifest, store)
    assert report.computed == 0
    data = FeatureStore(store).split("train")
    assert len(data.ids) == 8 and len(data.features) == 8
    assert verify(store, manifest) == []
    rows_in_pool = sum(h5py.File(p, "r")["keys"].shape[0] for p in chunk_folder(store).glob("chunk-*.h5"))
    assert rows_in_pool < 40  # chunks no split uses any more were deleted


def test_rerun_computes_nothing_and_keeps_bytes(featurized) -> None:
    manifest, store = featurized
    chunks = {p.name: p.read_bytes() for p in chunk_folder(store).iterdir()}
    assert run(manifest, store).computed == 0
    assert {p.name: p.read_bytes() for p in chunk_folder(store).iterdir()} == chunks


def test_other_recipe_recomputes_and_drops_stale_chunks(featurized) -> None:
    manifest, store = featurized
    old = set(chunk_folder(store).iterdir())
    report = featurize("vgg16", BackboneConfig("none", 48), CONFIG, manifest, store)
    assert report.computed == 40
    assert not old & set(chunk_folder(store).iterdir())
    assert FeatureStore(store).attrs["input_size"] == 48


def test_shards_then_merge_equal_the_local_path(featurized, tmp_path: Path) -> None:
    manifest, local = featurized
    sharded = tmp_path / "sharded" / "vgg16.h5"
    counts = [run(manifest, sharded, Shard(i, 3)).computed for i in range(3)]
    assert sum(counts) == 40 and not sharded.exists()
    assert run(manifest, sharded, Shard(1, 3)).computed == 0  # a finished shard is skipped
    merge("vgg16", BACKBONE, CONFIG, manifest, sharded)
    for name in ("train", "validation", "test"):
        a, b = FeatureStore(local).split(name), FeatureStore(sharded).split(name)
        assert a.ids == b.ids
        np.testing.assert_allclose(a.features, b.features, rtol=1e-5, atol=1e-5)


def test_merge_refuses_missing_shards(tmp_path: Path) -> None:
    manifest = make_split(tmp_path, 20, 10, 5, 5)
    store = tmp_path / "features" / "vgg16.h5"
    run(manifest, store, Shard(0, 2))
    with pytest.raises(StoreError, match=r"20 of 40 images have no features"):
        merge("vgg16", BACKBONE, CONFIG, manifest, store)


def test_shard_parsing() -> None:
    assert Shard.parse("2/5") == Shard(2, 5)
    assert [len(Shard(i, 3).select(list("abcdefg"))) for i in range(3)] == [2, 2, 3]
    for bad in ("5/5", "1", "-1/2", "a/b"):
        with pytest.raises(ValueError, match="i/n"):
            Shard.parse(bad)


def test_verify_catches_corruption(featurized) -> None:
    manifest, store = featurized
    assert verify(store, manifest) == []
    chunk = sorted(chunk_folder(store).glob("chunk-*.h5"))[0]
    with h5py.File(chunk, "r+") as handle:
        handle["features"][0, 0, 0, 0] += 1.0
    problems = verify(store, manifest)
    assert any("checksum mismatch" in p and chunk.name in p for p in problems)


def test_verify_catches_missing_chunk_and_nan(featurized) -> None:
    manifest, store = featurized
    chunks = sorted(chunk_folder(store).glob("chunk-*.h5"))
    chunks[0].unlink()
    assert any("chunk file missing" in p for p in verify(store, manifest))
    with pytest.raises(StoreError, match="dvc pull"):
        FeatureStore(store).split("train")
    with h5py.File(chunks[1], "r+") as handle:
        handle["features"][1] = np.nan
    assert any("NaN" in p for p in verify(store, manifest))


def test_verify_catches_manifest_mismatch(featurized, tmp_path: Path) -> None:
    _, store = featurized
    other = make_split(tmp_path / "other", 20, 9, 5, 6)
    problems = verify(store, other)
    assert any(p.startswith("train: ids differ") for p in problems)


def test_reader_keeps_the_previous_version_during_an_update(featurized, tmp_path: Path) -> None:
    manifest, store = featurized
    with h5py.File(store, "r") as old:
        rows_before = old["train"]["features"].shape[0]
        manifest = make_split(tmp_path, 25, 12, 6, 7)
        run(manifest, store)
        assert old["train"]["features"].shape[0] == rows_before
        assert np.isfinite(old["train"]["features"][...]).all()
    assert FeatureStore(store).split("train").features.shape[0] == 24
