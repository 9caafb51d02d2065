"""The store's pooled view: written with each chunk, checked like the chunks, rebuilt from a chunk without
recomputing a feature, and read by the heads, evaluate, the audit's loader and the API instead of the maps."""

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import make_split

from pipeline.api import load_split
from pipeline.core.config import BackboneConfig, FeaturizeConfig
from pipeline.core.errors import StoreError
from pipeline.heads import load_head
from pipeline.heads.pooling import pool
from pipeline.stages.evaluate import evaluate
from pipeline.stages.featurize import featurize
from pipeline.stages.train import train
from pipeline.store.chunks import CHUNK_GLOB
from pipeline.store.index import FeatureStore, chunk_folder, describe
from pipeline.store.pooled import load_pooled
from pipeline.store.verify import verify
from pipeline.store.views import VIEW_GLOB, view_name

BACKBONE = BackboneConfig(weights="none", input_size=64)  # VGG16 maps of (2, 2, 512): avg and max differ
CONFIG = FeaturizeConfig(batch_size=8, chunk_rows=8)
SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pooled")
    manifest = make_split(root, 12, 6, 3, 3)
    store = root / "features" / "vgg16.h5"
    assert featurize("vgg16", BACKBONE, CONFIG, manifest, store).computed == 24
    return manifest, store


@pytest.fixture()
def featurized(built, tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the built store (and its split), so a test may damage it."""
    manifest, store = built
    shutil.copytree(manifest.parent, tmp_path / "split")
    shutil.copytree(store.parent, tmp_path / "features")
    return tmp_path / "split" / "manifest.csv", tmp_path / "features" / store.name


def views(store: Path) -> list[Path]:
    return sorted(chunk_folder(store).glob(VIEW_GLOB))


def assert_view_pools_the_maps(store: Path) -> None:
    opened = FeatureStore(store)
    for split in SPLITS:
        maps = opened.split(split).features
        np.testing.assert_array_equal(opened.pooled(split, "avg").features, maps.mean(axis=(1, 2)))
        np.testing.assert_array_equal(opened.pooled(split, "max").features, maps.max(axis=(1, 2)))


def test_every_chunk_gets_a_view_that_pools_its_maps(featurized) -> None:
    _, store = featurized
    chunks = sorted(chunk_folder(store).glob(CHUNK_GLOB))
    assert [p.name for p in views(store)] == sorted(view_name(p.name) for p in chunks)
    assert_view_pools_the_maps(store)


def test_a_store_without_views_gains_them_computing_no_feature(featurized) -> None:
    """A store as the code before views wrote it (chunks and index only) keeps working and gains the view."""
    manifest, store = featurized
    chunks = {p.name: p.read_bytes() for p in chunk_folder(store).glob(CHUNK_GLOB)}
    for view in views(store):
        view.unlink()
    assert "pooled views (avg, max): 0 of 3 chunks" in describe(store)
    assert_view_pools_the_maps(store)  # readers pool the chunks meanwhile
    report = featurize("vgg16", BACKBONE, CONFIG, manifest, store)
    assert report.computed == 0 and report.images == 24
    assert len(views(store)) == len(chunks) == 3
    assert {p.name: p.read_bytes() for p in chunk_folder(store).glob(CHUNK_GLOB)} == chunks
    assert_view_pools_the_maps(store)
    assert verify(store, manifest) == []
    assert "pooled views (avg, max): 3 of 3 chunks" in describe(store)


def test_heads_evaluate_and_readers_use_the_view_not_the_maps(featurized, tmp_path: Path) -> None:
    """With every chunk file gone, only the view is left: avg readers work, flatten readers name the missing chunk."""
    _, store = featurized
    for chunk in chunk_folder(store).glob(CHUNK_GLOB):
        chunk.unlink()
    models = tmp_path / "models"
    for head in ("logreg", "dense"):
        params = {"pooling": "avg", "epochs": 1} if head == "dense" else {"pooling": "avg", "C": 0.1}
        train(store, head, params, 42, models / head, None)
        result = evaluate(store, head, models / head, tmp_path / "metrics" / head)
        assert 0.0 <= result.accuracy <= 1.0 and len(result.predicted) == 6
    assert load_pooled(store, "avg").features.shape == (24, 512)
    assert load_split(store, "test", pooling="max").features.shape == (6, 512)
    with pytest.raises(StoreError, match=r"chunk file\(s\) missing"):
        train(store, "logreg", {"pooling": "flatten", "C": 0.1}, 42, models / "flat", None)


def test_a_head_trained_on_the_view_predicts_maps_as_it_predicts_pooled_rows(featurized, tmp_path: Path) -> None:
    _, store = featurized
    opened = FeatureStore(store)
    maps, rows = opened.split("test").features, opened.pooled("test", "avg").features
    for head in ("logreg", "dense"):
        params = {"pooling": "avg", "epochs": 1} if head == "dense" else {"pooling": "avg", "C": 0.1}
        train(store, head, params, 42, tmp_path / head, None)
        model = load_head(head, tmp_path / head)
        assert model.pooling == "avg"
        np.testing.assert_allclose(model.predict_proba(maps), model.predict_proba(rows), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pool(maps, "avg"), rows, rtol=1e-6)


def flip_a_byte(path: Path) -> None:
    with h5py.File(path, "r") as handle:
        offset = handle["avg"].id.get_chunk_info(0).byte_offset
    data = bytearray(path.read_bytes())
    data[offset + 100] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_damaged_view_stops_reads_and_verify_and_featurize_rebuilds_it(featurized) -> None:
    manifest, store = featurized
    view = views(store)[0]
    flip_a_byte(view)
    with pytest.raises(StoreError, match=rf"Damaged pooled view .*{view.name}: damaged: its fletcher32 checksum"):
        load_pooled(store, "avg")
    assert any(line.startswith(f"{view.name}: damaged") for line in verify(store, manifest))
    report = featurize("vgg16", BACKBONE, CONFIG, manifest, store)
    assert report.computed == 0
    assert verify(store, manifest) == []
    assert_view_pools_the_maps(store)


def test_a_view_copied_over_another_is_caught(featurized) -> None:
    manifest, store = featurized
    first, second = views(store)[:2]
    shutil.copyfile(first, second)
    with pytest.raises(StoreError, match=rf"{second.name}: pools chunk chunk-"):
        load_pooled(store, "avg")
    assert any(line.startswith(f"{second.name}: pools chunk") for line in verify(store, manifest))
