"""The chunked feature store: incremental updates, shards + merge, verification, readers during writes."""

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from conftest import make_split, tool_env

from pipeline.core.config import BackboneConfig, FeaturizeConfig, validate
from pipeline.core.errors import ConfigError, StoreError
from pipeline.stages.featurize import Shard, featurize, merge
from pipeline.store.chunks import ChunkError, write_chunk
from pipeline.store.index import FeatureStore, chunk_folder, repair_hint
from pipeline.store.verify import verify
from pipeline.store.views import view_name

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
    pool = sorted(chunk_folder(store).glob("chunk-*.h5"))
    assert [p.name for p in pool] == referenced_chunks(store)  # every chunk no split uses was deleted
    # cat.0-7 and dog.0-7 sit in the first three chunks of 8 (cat.0-7 | cat.8-9, dog.0-5 | dog.6-9, 4 cats)
    assert len(pool) == 3 and sum(h5py.File(p, "r")["keys"].shape[0] for p in pool) == 24


def referenced_chunks(store: Path) -> list[str]:
    """The chunk files the store's index points at, over every split."""
    with h5py.File(store, "r") as handle:
        splits = ("train", "validation", "test")
        return sorted({name.decode() for split in splits for name in handle[split]["chunk"][...]})


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
    assert sorted(p.name for p in chunk_folder(store).glob("chunk-*.h5")) == referenced_chunks(store)
    views = sorted(p.name for p in chunk_folder(store).glob("pooled-*.h5"))
    assert views == [view_name(name) for name in referenced_chunks(store)]  # each chunk's pooled view, none stale
    assert len(referenced_chunks(store)) == 5  # 40 rows in chunks of 8: the 5 old ones gone
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


# Faults: every read is checked, a damaged chunk is never served, featurize recomputes its rows.


def first_data_byte(chunk: Path) -> int:
    """The file offset of the first byte of a chunk's features (chunked or contiguous layout)."""
    with h5py.File(chunk, "r") as handle:
        dataset = handle["features"]
        return dataset.id.get_offset() if dataset.chunks is None else dataset.id.get_chunk_info(0).byte_offset


def all_splits(store: Path) -> dict[str, np.ndarray]:
    return {name: FeatureStore(store).split(name).features for name in ("train", "validation", "test")}


def used_chunks(store: Path) -> list[Path]:
    with h5py.File(store, "r") as handle:
        names = sorted({name.decode() for split in ("train", "test") for name in handle[split]["chunk"][...]})
    return [chunk_folder(store) / name for name in names]


def assert_healed(manifest: Path, store: Path, before: dict[str, np.ndarray], rows: int) -> None:
    """featurize finds the damage, recomputes exactly the damaged chunk's rows, and the store is whole again."""
    report = run(manifest, store)
    assert report.computed == rows and len(report.damaged) == 1
    assert verify(store, manifest) == []
    for name, features in all_splits(store).items():
        np.testing.assert_allclose(features, before[name], rtol=1e-5, atol=1e-5)


def test_a_flipped_byte_in_a_chunk_stops_every_read_and_featurize_heals_it(featurized) -> None:
    manifest, store = featurized
    before = all_splits(store)
    chunk = used_chunks(store)[0]
    data = bytearray(chunk.read_bytes())
    data[first_data_byte(chunk) + 101] ^= 0x40
    chunk.write_bytes(bytes(data))
    fletcher32 = "damaged: its fletcher32 checksum does not match"  # HDF5's own check, not the sha256 fallback
    with pytest.raises(StoreError, match=rf"Damaged chunk .*{chunk.name}: {fletcher32}.*dvc repro.*dvc checkout"):
        all_splits(store)
    assert [p for p in verify(store, manifest) if chunk.name in p and fletcher32 in p], verify(store, manifest)
    assert_healed(manifest, store, before, rows=8)


def test_a_valid_chunk_copied_over_another_is_caught_by_reads_and_verify(featurized) -> None:
    manifest, store = featurized
    before = all_splits(store)
    source, target = used_chunks(store)[:2]
    target.write_bytes(source.read_bytes())
    with pytest.raises(StoreError, match=rf"{target.name}.*(other rows|other images)"):
        all_splits(store)
    problems = verify(store, manifest)
    assert any(target.name in p and "other" in p for p in problems), problems
    assert_healed(manifest, store, before, rows=8)


def test_a_chunk_truncated_to_half_is_a_readable_problem_and_is_healed(featurized) -> None:
    manifest, store = featurized
    before = all_splits(store)
    chunk = used_chunks(store)[1]
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    problems = verify(store, manifest)
    assert any(chunk.name in p and "unreadable" in p for p in problems), problems
    with pytest.raises(StoreError, match=rf"Damaged chunk .*{chunk.name}"):
        all_splits(store)
    assert_healed(manifest, store, before, rows=8)


def test_a_malformed_chunk_is_not_adopted(featurized, tmp_path: Path) -> None:
    """As `chunk_rows: -1` once wrote: fewer feature rows than keys, under the name its keys give."""
    manifest, store = featurized
    chunk = used_chunks(store)[0]
    with h5py.File(chunk, "r") as handle:
        keys, features, attrs = handle["keys"].asstr()[()], handle["features"][...], dict(handle.attrs)
    chunk.unlink()
    with h5py.File(chunk, "w") as handle:
        handle.create_dataset("features", data=features[:3])
        handle.create_dataset("keys", data=np.array(keys, dtype=object), dtype=h5py.string_dtype())
        handle.attrs.update(attrs)
    assert any(chunk.name in p and "3 feature row(s) for 8 key(s)" in p for p in verify(store, manifest))
    report = run(manifest, store)
    assert report.computed == 8 and "3 feature row(s) for 8 key(s)" in report.damaged[0].problem
    assert verify(store, manifest) == []


@pytest.mark.parametrize(
    ("raw", "key", "least"),
    [
        ({"featurize": {"chunk_rows": -1}}, "featurize.chunk_rows", 1),
        ({"featurize": {"chunk_rows": 0}}, "featurize.chunk_rows", 1),
        ({"featurize": {"batch_size": 0}}, "featurize.batch_size", 1),
        ({"backbones": {"vgg16": {"input_size": 0}}}, "backbones.vgg16.input_size", 32),
    ],
)
def test_chunk_rows_below_one_is_refused_before_any_work(raw: dict, key: str, least: int) -> None:
    """chunk_rows -1 once wrote a malformed chunk and hung, 0 looped forever: the schema refuses them (and the
    featurize CLI checks params first: test_chunk_rows_zero_through_the_cli_stops_before_any_work)."""
    with pytest.raises(ConfigError, match=rf"{key}: received .*greater than or equal to {least}"):
        validate(raw)


def test_chunks_are_checked_before_they_are_written(tmp_path: Path) -> None:
    keys = [f"{i:064x}" for i in range(4)]
    with pytest.raises(ChunkError, match="3 feature row"):
        write_chunk(tmp_path, "fp", np.zeros((3, 2, 2, 1)), keys, "float32")
    with pytest.raises(ChunkError, match="NaN or infinite"):
        write_chunk(tmp_path, "fp", np.full((4, 2, 2, 1), np.nan), keys, "float32")
    with pytest.raises(ChunkError, match="recipe makes"):
        write_chunk(tmp_path, "fp", np.zeros((4, 2, 2, 1)), keys, "float32", feature_shape=(2, 2, 2))
    assert not list(tmp_path.iterdir())


def test_a_garbage_index_is_an_error_naming_the_file_for_train_and_evaluate(featurized, tmp_path: Path) -> None:
    from pipeline.stages.evaluate import evaluate
    from pipeline.stages.train import train

    _, store = featurized
    head_dir = tmp_path / "models" / "logreg"
    train(store, "logreg", {"pooling": "avg", "C": 1.0, "max_iter": 100, "standardize": True}, 0, head_dir, None)
    store.write_bytes(np.random.default_rng(0).bytes(store.stat().st_size))
    expected = rf"{store}.*unreadable or malformed.*dvc checkout"
    with pytest.raises(StoreError, match=expected):
        train(store, "logreg", {"pooling": "avg", "C": 1.0, "max_iter": 100}, 0, tmp_path / "again", None)
    with pytest.raises(StoreError, match=expected):
        evaluate(store, "logreg", head_dir, tmp_path / "metrics")
    assert verify(store, None) and "unreadable" in verify(store, None)[0]


def pipeline_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m pipeline ...` as a user runs it; the timeout is the deadline of a hang."""
    command = [sys.executable, "-m", "pipeline", *args]
    return subprocess.run(command, cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=300)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The CLI's answer to a known error: exit 2 and one `error: ` line on stderr, no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_chunk_rows_zero_through_the_cli_stops_before_any_work(tmp_path: Path) -> None:
    """The stage itself, not only the schema: featurize with chunk_rows 0 (which once looped forever) exits
    before any work, TensorFlow not even imported, with the param named, and writes nothing."""
    manifest = make_split(tmp_path, 2, 1, 1, 0)
    params = {"featurize": {"chunk_rows": 0}, "paths": {"split": str(manifest.parent), "features": "features"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('tensorflow' in sys.modules))\n"
        "sys.argv = ['pipeline', 'featurize', 'vgg16']\n"
        "from pipeline.cli import main\n"
        "main()\n"
    )
    command = [sys.executable, "-c", code]
    result = subprocess.run(command, cwd=tmp_path, env=tool_env(), capture_output=True, text=True, timeout=300)
    line = one_error_line(result)
    assert "featurize.chunk_rows: received 0" in line and "greater than or equal to 1" in line, line
    assert result.stdout.strip() == "False"  # TensorFlow never imported
    assert not (tmp_path / "features").exists()


def test_a_truncated_chunk_through_the_cli_is_one_error_line(featurized) -> None:
    manifest, store = featurized
    chunk = used_chunks(store)[1]
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    line = one_error_line(pipeline_cli(store.parent.parent, "store", "export", str(store), "-o", "out", "-f", "npy"))
    assert line.startswith(f"error: Damaged chunk {chunk}: unreadable or damaged (OSError: "), line
    assert line.endswith(f"{repair_hint(store)}"), line
    assert not list((store.parent.parent / "out").glob("test_*"))  # the split with the damaged chunk: not written


def test_a_garbage_index_through_the_cli_is_one_error_line(tmp_path: Path) -> None:
    store = tmp_path / "features" / "vgg16.h5"
    store.parent.mkdir()
    store.write_bytes(np.random.default_rng(0).bytes(20_000))
    line = one_error_line(pipeline_cli(store.parent.parent, "store", "info", str(store)))
    assert line.startswith(f"error: Feature store index {store} is unreadable or malformed (OSError: "), line
    assert line.endswith(f"Restore it (`dvc checkout {store}` or `dvc pull`) or rerun featurize (`dvc repro`)."), line
