"""Heads that read the full maps (flatten) stream them chunk by chunk: memory stays about a chunk, every chunk is
checked as it is read, results match the in-memory fit; `max` pools from the pooled view.

The stores here are written with the store's own writer (real HDF5 chunks, views and index) from made-up maps
whose classes differ, so a head has something to learn in a second.
"""

import shutil
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from pipeline.core.config import validate
from pipeline.core.errors import ConfigError, StoreError
from pipeline.heads import dense as dense_module
from pipeline.heads import get_head, load_head
from pipeline.stages.evaluate import evaluate
from pipeline.stages.train import train, training_data
from pipeline.store import stream as stream_module
from pipeline.store.chunks import ChunkPool, fingerprint
from pipeline.store.index import FeatureStore, SplitIndex, chunk_folder, write_index
from pipeline.store.stream import MapStream
from tests.conftest import ROOT

CLASSES = ["cat", "dog"]


def made_up_maps(n: int, shape: tuple[int, ...], seed: int, by_class: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Noise maps; class 1 has a weak bump on its first 8 channels (learnable, not trivial). `by_class`: rows
    sorted by class, as featurize writes a manifest's (train/cat/..., then train/dog/...)."""
    rng = np.random.default_rng(seed)
    labels = np.sort(np.arange(n) % 2) if by_class else rng.permutation(np.arange(n) % 2)
    maps = rng.normal(size=(n, *shape)).astype(np.float32)
    maps[..., :8] += 0.6 * labels.reshape(-1, 1, 1, 1)
    return maps, labels


def write_store(
    root: Path, rows: dict[str, int], shape: tuple[int, ...], chunk_rows: int, by_class: bool = False
) -> Path:
    """A store of `rows` made-up rows per split, `chunk_rows` to a chunk, as featurize lays it out."""
    path = root / "features" / "made_up.h5"
    recipe = {"backbone": "made_up", "shape": list(shape)}
    pool = ChunkPool(chunk_folder(path), fingerprint(recipe), "float32")
    splits = {}
    for number, (split, n) in enumerate(rows.items()):
        maps, labels = made_up_maps(n, shape, number, by_class)
        keys = [f"{split}-{i:06d}" for i in range(n)]
        for start in range(0, n, chunk_rows):
            pool.add(maps[start : start + chunk_rows], keys[start : start + chunk_rows], "float32")
        ids = [f"{split}/{CLASSES[y]}/{CLASSES[y]}.{i}.jpg" for i, y in enumerate(labels)]
        splits[split] = SplitIndex(ids, labels.tolist(), keys)
    attrs = {
        **recipe,
        "fingerprint": fingerprint(recipe),
        "storage_dtype": "float32",
        "feature_shape": list(shape),
        "classes": CLASSES,
        "default_pooling": "flatten",
    }
    write_index(path, attrs, splits, pool, shape, "float32")
    return path


@pytest.fixture(scope="module")
def small_store(tmp_path_factory) -> Path:
    return write_store(tmp_path_factory.mktemp("small"), {"train": 400, "validation": 100, "test": 200}, (4, 4, 32), 64)


DENSE = {"pooling": "flatten", "epochs": 6, "units": 16, "learning_rate": 1e-3, "batch_size": 20}


def test_stream_serves_every_row_once_with_a_seeded_chunk_order(small_store: Path) -> None:
    store = FeatureStore(small_store)
    whole = store.split("train")
    stream = MapStream(store, "train", block_rows=24)
    for seed in (None, 1, 2):
        seen = np.full(len(stream), -1)
        for block in stream.blocks(seed):
            assert len(block.order) <= 24
            np.testing.assert_array_equal(block.features, whole.features[block.order])
            np.testing.assert_array_equal(block.labels, whole.labels[block.order])
            seen[block.order] = 1
        assert (seen == 1).all()
    first = [tuple(b.order[:1]) for b in stream.blocks(1)]
    assert first == [tuple(b.order[:1]) for b in stream.blocks(1)]  # the same seed, the same order
    assert first != [tuple(b.order[:1]) for b in stream.blocks(2)]  # another epoch, another order
    assert [b.order[0] for b in stream.blocks()] == sorted(b.order[0] for b in stream.blocks())


def mixed_batches(store_path: Path) -> float:
    """The fraction of one shuffled epoch's batches of 20 that hold both classes."""
    batches = dense_module.stream_dataset(MapStream(FeatureStore(store_path), "train"), 20, seed=5)
    return float(np.mean([len(set(labels.numpy())) == 2 for _, labels in batches]))


def test_shuffled_streams_mix_classes_when_chunks_hold_one_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of 256 rows, each of one class (a manifest's order), a shuffle buffer of 20 rows: pieces of 4 rows
    taken across the split give batches of both classes; whole chunks through the buffer would not."""
    store_path = write_store(tmp_path, {"train": 1024, "validation": 20, "test": 20}, (4, 4, 8), 256, by_class=True)
    row_bytes = 4 * 4 * 8 * 4
    monkeypatch.setattr(dense_module, "SHUFFLE_BYTES", 20 * row_bytes)
    monkeypatch.setattr(stream_module, "PIECE_BYTES", 4 * row_bytes)
    assert mixed_batches(store_path) > 0.8
    monkeypatch.setattr(stream_module, "PIECE_BYTES", 256 * row_bytes)  # a piece is a whole chunk
    assert mixed_batches(store_path) < 0.3


@pytest.mark.parametrize("shuffle_bytes", [256 << 20, 40 * 4 * 512])  # the split fits; a buffer of 40 rows
def test_streamed_dense_head_learns_as_the_in_memory_one(
    small_store: Path, shuffle_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dense_module, "SHUFFLE_BYTES", shuffle_bytes)
    store = FeatureStore(small_store)
    test = store.split("test")
    accuracy = {}
    for stream in (True, False):
        data = training_data(store, pooling="flatten", stream=stream)
        assert isinstance(data.x_train, MapStream) is stream
        head = get_head("dense").fit(data, DENSE, seed=3, live=None)
        accuracy[stream] = float((head.predict_proba(test.features).argmax(axis=1) == test.labels).mean())
    assert accuracy[False] > 0.8, accuracy
    assert abs(accuracy[True] - accuracy[False]) <= 0.05, accuracy


def peak_traced_bytes(work) -> int:
    """The peak of memory Python and numpy allocated while `work` ran (TensorFlow's own buffers not included)."""
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_flatten_train_and_evaluate_hold_about_a_chunk_not_the_split(tmp_path: Path) -> None:
    """32 MB of training maps in 40 chunks: the streamed stages peak far below it; the in-memory read does not."""
    store_path = write_store(tmp_path, {"train": 1000, "validation": 100, "test": 1000}, (8, 8, 128), 25)
    maps_bytes = 1000 * 8 * 8 * 128 * 4
    params = {**DENSE, "epochs": 1, "units": 4, "batch_size": 50}
    head_dir = tmp_path / "head"
    for _ in range(2):  # the first round also counts what a process does once (imports, tracing, font caches)
        trained = peak_traced_bytes(lambda: train(store_path, "dense", params, 0, head_dir, None))
        evaluated = peak_traced_bytes(lambda: evaluate(store_path, "dense", head_dir, tmp_path / "metrics"))
    in_memory = peak_traced_bytes(lambda: FeatureStore(store_path).split("train"))
    assert in_memory >= maps_bytes  # the probe sees a split read whole
    assert trained < maps_bytes / 4, (trained, maps_bytes)
    assert evaluated < maps_bytes / 4, (evaluated, maps_bytes)


def test_evaluate_streams_the_same_probabilities_as_the_whole_split(small_store: Path, tmp_path: Path) -> None:
    head_dir = tmp_path / "head"
    train(small_store, "dense", {**DENSE, "epochs": 1}, 0, head_dir, None)
    head = load_head("dense", head_dir)
    assert head.pooling == "flatten"
    whole = FeatureStore(small_store).split("test")
    result = evaluate(small_store, "dense", head_dir, tmp_path / "metrics")
    expected = head.predict_proba(whole.features)
    assert result.accuracy == pytest.approx(float((expected.argmax(axis=1) == whole.labels).mean()))


def first_data_byte(chunk: Path) -> int:
    with h5py.File(chunk, "r") as handle:
        dataset = handle["features"]
        return dataset.id.get_offset() if dataset.chunks is None else dataset.id.get_chunk_info(0).byte_offset


def test_streamed_reads_check_every_chunk(tmp_path: Path) -> None:
    """A flipped byte (fletcher32) or a chunk copied over another (keys) stops streamed train and evaluate."""
    store_path = write_store(tmp_path, {"train": 40, "validation": 20, "test": 20}, (4, 4, 32), 16)
    head_dir = tmp_path / "head"
    train(store_path, "dense", {**DENSE, "epochs": 1}, 0, head_dir, None)
    train_chunks = list(dict.fromkeys(FeatureStore(store_path).split_rows("train").chunks))
    chunk = chunk_folder(store_path) / train_chunks[1]
    sound = chunk.read_bytes()
    raw = bytearray(sound)
    raw[first_data_byte(chunk) + 101] ^= 0x40
    chunk.write_bytes(bytes(raw))
    fletcher32 = rf"Damaged chunk .*{chunk.name}: damaged: its fletcher32 checksum does not match"
    with pytest.raises(StoreError, match=fletcher32):
        train(store_path, "dense", {**DENSE, "epochs": 1}, 0, tmp_path / "again", None)
    with pytest.raises(StoreError, match=fletcher32):
        evaluate(store_path, "dense", head_dir, tmp_path / "metrics", split="train")
    chunk.write_bytes((chunk_folder(store_path) / train_chunks[0]).read_bytes())
    with pytest.raises(StoreError, match=rf"{chunk.name}.*other rows"):
        train(store_path, "dense", {**DENSE, "epochs": 1}, 0, tmp_path / "again", None)
    chunk.write_bytes(sound)
    assert evaluate(store_path, "dense", head_dir, tmp_path / "metrics", split="train").accuracy >= 0


@pytest.mark.parametrize("name", ["dense", "logreg"])
def test_max_pooling_reads_the_pooled_views_max_rows(name: str, small_store: Path, tmp_path: Path) -> None:
    """A max head trains and evaluates with every chunk file gone (only the views' max rows left), and predicts
    the maps (max-pooled by the head itself) as it predicts the view's rows."""
    copy = tmp_path / "features"
    shutil.copytree(small_store.parent, copy)
    store_path = copy / small_store.name
    whole = FeatureStore(store_path).split("test")
    params = {**DENSE, "pooling": "max"} if name == "dense" else {"pooling": "max", "C": 1.0}
    data = training_data(FeatureStore(store_path), pooling="max")
    assert data.x_train.shape == (400, 32)
    np.testing.assert_array_equal(data.x_train, FeatureStore(store_path).split("train").features.max(axis=(1, 2)))
    for chunk in chunk_folder(store_path).glob("chunk-*.h5"):
        chunk.unlink()
    train(store_path, name, params, 0, tmp_path / "head", None)
    head = load_head(name, tmp_path / "head")
    assert head.pooling == "max"
    result = evaluate(store_path, name, tmp_path / "head", tmp_path / "metrics")
    rows = whole.features.max(axis=(1, 2))
    np.testing.assert_allclose(head.predict_proba(whole.features), head.predict_proba(rows), rtol=1e-5, atol=1e-6)
    assert result.accuracy == pytest.approx(float((head.predict_proba(rows).argmax(axis=1) == whole.labels).mean()))


@pytest.mark.parametrize("head", ["dense", "logreg"])
def test_params_accept_max_pooling_and_name_the_key_of_a_bad_one(head: str) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["heads"][head]["pooling"] = "max"
    assert getattr(validate(params).heads, head).pooling == "max"
    params["heads"][head]["pooling"] = "min"
    with pytest.raises(ConfigError) as raised:
        validate(params)
    assert f"heads.{head}.pooling: received 'min'; allowed: 'auto', 'flatten', 'avg' or 'max'" in str(raised.value)
