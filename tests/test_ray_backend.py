"""The ray featurize backend: same store as the local path, resumes from a partial pool, leaves no processes."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import psutil
import pytest
import yaml
from conftest import sample_images

from pipeline.compute.protocol import ComputeBackend, ComputeJob
from pipeline.core.config import BackboneConfig, ConfigError, FeaturizeConfig, RayConfig, SplitConfig, load_config
from pipeline.stages.featurize import Shard, compute_backend, featurize
from pipeline.stages.split import split
from pipeline.store.chunks import CHUNK_GLOB
from pipeline.store.index import FeatureStore, chunk_folder
from pipeline.store.manifest import read_manifest
from pipeline.store.verify import verify

pytest.importorskip("ray.data")

BACKBONE = BackboneConfig(weights="none", input_size=48)
LOCAL = FeaturizeConfig(batch_size=32, chunk_rows=32, precision="float32")  # 4 chunks: 2 per actor
RAY = replace(LOCAL, backend="ray", ray=RayConfig(address="local", num_cpus=2, actors=2, cpus_per_actor=1))


@pytest.fixture(scope="module")
def local_store(tmp_path_factory) -> tuple[Path, Path]:
    """120 shared-sample images (60 per class) featurized by the local backend."""
    root = tmp_path_factory.mktemp("ray")
    images = root / "images"
    images.mkdir()
    for name, data in sample_images(60).items():
        (images / name).write_bytes(data)
    split(images, root / "split", SplitConfig(40, 10, 10))
    manifest = root / "split" / "manifest.csv"
    store = root / "local" / "vgg16.h5"
    assert featurize("vgg16", BACKBONE, LOCAL, manifest, store).computed == 120
    return manifest, store


def left_behind(marker: str) -> list[str]:
    """Live processes (zombies aside) that inherited the marker, after up to 30 s for them to exit."""
    ours = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    for _ in range(60):
        found = []
        for process in psutil.process_iter(["pid", "name", "status"]):
            if process.pid in ours or process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            try:
                if process.environ().get("PIPELINE_RAY_TEST") == marker:
                    found.append(f"{process.pid} {process.info['name']}")
            except psutil.Error:
                continue
        if not found:
            return []
        time.sleep(0.5)
    return found


@pytest.fixture(scope="module")
def ray_session():
    """A local Ray instance with 2 CPUs for this module's tests, shut down at the end, leaving no process."""
    import ray

    marker = str(time.time_ns())  # the raylet and every worker inherit it: how left_behind finds them
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PIPELINE_RAY_TEST", marker)
        # Loopback only, offline: Ray's GCS and its agents otherwise take the machine's own address, which the
        # network guard in every Ray process refuses (Ray's single-machine mode, as on macOS and Windows).
        patch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray's processes read it when they start
        patch.setattr(ray._private.ray_constants, "ENABLE_RAY_CLUSTER", False)  # this one has read it already
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()
    assert left_behind(marker) == []


def assert_same_store(local: Path, other: Path) -> None:
    a, b = FeatureStore(local), FeatureStore(other)
    ignored = ("device", "versions")
    assert {k: v for k, v in a.attrs.items() if k not in ignored} == {
        k: v for k, v in b.attrs.items() if k not in ignored
    }
    for name in ("train", "validation", "test"):
        x, y = a.split(name), b.split(name)
        assert x.ids == y.ids
        np.testing.assert_array_equal(x.labels, y.labels)
        np.testing.assert_allclose(x.features, y.features, rtol=1e-5, atol=1e-6)


def test_ray_store_equals_the_local_store(local_store, ray_session, tmp_path: Path) -> None:
    manifest, local = local_store
    store = tmp_path / "vgg16.h5"
    report = featurize("vgg16", BACKBONE, RAY, manifest, store)
    assert report.computed == 120 and report.indexed
    assert_same_store(local, store)
    assert verify(store, manifest) == []
    # Same missing-row order and chunk_rows: the actors wrote the local path's chunks, name for name.
    assert sorted(p.name for p in chunk_folder(store).glob(CHUNK_GLOB)) == sorted(
        p.name for p in chunk_folder(local).glob(CHUNK_GLOB)
    )
    assert ray_session.is_initialized()  # featurize joined the running Ray and left it running


def test_ray_computes_only_the_rows_a_partial_pool_lacks(local_store, ray_session, tmp_path: Path) -> None:
    manifest, local = local_store
    store = tmp_path / "vgg16.h5"
    assert featurize("vgg16", BACKBONE, LOCAL, manifest, store, Shard(0, 2)).computed == 60
    before = {p.name: p.read_bytes() for p in chunk_folder(store).glob(CHUNK_GLOB)}
    (chunk_folder(store) / "chunk-killed-mid-write.h5.partial").write_bytes(b"half a chunk")
    one_actor = replace(RAY, ray=replace(RAY.ray, actors=1))
    report = featurize("vgg16", BACKBONE, one_actor, manifest, store)
    assert report.computed == 60
    after = {p.name: p.read_bytes() for p in chunk_folder(store).glob(CHUNK_GLOB)}
    assert {name: after[name] for name in before} == before  # the finished chunks were not rewritten
    assert not list(chunk_folder(store).glob("*.partial"))
    written: list[str] = []
    for name in set(after) - set(before):
        with h5py.File(chunk_folder(store) / name, "r") as handle:
            written += [k.decode() for k in handle["keys"][...]]
    wanted = list(dict.fromkeys(row.sha256 for row in read_manifest(manifest)))
    assert sorted(written) == sorted(Shard(1, 2).select(wanted))  # the actors computed exactly the missing rows
    assert_same_store(local, store)


def test_ray_settings_come_from_params(tmp_path: Path) -> None:
    params = {"featurize": {"backend": "ray", "ray": {"address": "auto", "actors": 8, "gpus_per_actor": 1}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    config = load_config(tmp_path / "params.yaml").featurize
    assert config.backend == "ray" and config.ray == RayConfig(address="auto", actors=8, gpus_per_actor=1)
    params["featurize"]["ray"]["workers"] = 3
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=r"featurize\.ray"):
        load_config(tmp_path / "params.yaml")
    with pytest.raises(ConfigError, match="featurize.backend: received 'spark'"):
        compute_backend("spark")


def test_a_clear_error_without_ray(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where Ray is not installed
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[ray\]'"):
        compute_backend("ray").compute(ComputeJob(None, None, {}, BACKBONE, RAY, [], [], None))


def test_both_backends_implement_the_contract() -> None:
    for name in ("local", "ray"):
        backend = compute_backend(name)
        assert isinstance(backend, ComputeBackend) and backend.name == name
