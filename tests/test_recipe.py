"""The feature recipe is data, and `precision: auto` never throws away a store made on another machine."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import make_split

from pipeline.backbones import backbone_names, get_backbone, registry
from pipeline.core.config import BackboneConfig, FeaturizeConfig
from pipeline.stages.featurize import featurize
from pipeline.store.chunks import CHUNK_GLOB
from pipeline.store.index import FeatureStore, chunk_folder


@pytest.mark.parametrize("name", backbone_names())
def test_preprocessing_data_is_what_the_function_does(name: str) -> None:
    """The recipe hashes the numbers, so they must describe the code that runs: checked on random pixels."""
    spec = get_backbone(name)
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    data = spec.preprocessing
    ordered = pixels[..., ::-1] if data.channel_order == "BGR" else pixels
    expected = (ordered - np.array(data.offset, dtype="float32")) * data.scale
    np.testing.assert_allclose(spec.preprocess(tf.constant(pixels)).numpy(), expected, rtol=1e-6, atol=1e-4)


def cpuinfo(path: Path, flags: str) -> Path:
    path.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    return path


@pytest.mark.slow
def test_a_teammate_without_bf16_extends_the_team_store(tmp_path: Path, monkeypatch) -> None:
    """The team's store was made in bfloat16 on a bf16 CPU; a teammate's CPU lacks bf16, adds images and runs
    featurize with `precision: auto`: only the new images are computed (in bfloat16, with a note saying so),
    and every pushed chunk is kept. The CPU is simulated where the pipeline reads it (its cpuinfo file)."""
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU means native bf16 whatever the CPU says")
    config, backbone = FeaturizeConfig(batch_size=8, chunk_rows=8), BackboneConfig("none", 32)  # precision: auto

    monkeypatch.setattr(
        registry, "CPUINFO", cpuinfo(tmp_path / "team-cpuinfo", "fpu sse2 avx512f avx512_bf16 amx_bf16")
    )
    team = make_split(tmp_path / "team", 8, train=4, validation=2, test=2)
    team_store = team.parent.parent / "features" / "vgg16.h5"
    made = featurize("vgg16", backbone, config, team, team_store)
    assert made.computed == 16 and FeatureStore(team_store).attrs["precision"] == "bfloat16" and not made.notes
    pushed = {p.name: p.read_bytes() for p in chunk_folder(team_store).glob(CHUNK_GLOB)}

    monkeypatch.setattr(registry, "CPUINFO", cpuinfo(tmp_path / "mate-cpuinfo", "fpu sse2 avx2 avx512f"))
    assert registry.resolve_precision("auto") == "float32"  # what this machine alone would choose
    mate = make_split(tmp_path / "mate", 10, train=6, validation=2, test=2)  # the same 16 images and 4 more
    mate_store = mate.parent.parent / "features" / "vgg16.h5"
    shutil.copytree(team_store.parent, mate_store.parent)  # `dvc pull`
    extended = featurize("vgg16", backbone, config, mate, mate_store)

    assert extended.computed == 4 and extended.images == 20
    assert FeatureStore(mate_store).attrs["precision"] == "bfloat16"
    assert len(extended.notes) == 1 and "holds bfloat16 features" in extended.notes[0]
    assert "emulated on this CPU" in extended.notes[0] and "featurize.precision: float32" in extended.notes[0]
    kept = {p.name: p.read_bytes() for p in chunk_folder(mate_store).glob(CHUNK_GLOB)}
    assert all(kept.get(name) == data for name, data in pushed.items())  # every pushed chunk, byte for byte
    assert len(kept) == len(pushed) + 1  # plus one chunk of the 4 new images

    explicit = featurize(
        "vgg16", backbone, FeaturizeConfig(batch_size=8, chunk_rows=8, precision="float32"), mate, mate_store
    )
    assert explicit.computed == 20 and not explicit.notes  # asked for explicitly: float32 recomputes everything
