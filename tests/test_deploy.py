"""export and serve: the exported model against `predict` in every format, its `.keras` file loaded without this
package, and the HTTP service under a burst of concurrent good and bad uploads (real uvicorn on 127.0.0.1)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.cli import app
from pipeline.core.config import BackboneConfig, FeaturizeConfig
from pipeline.core.errors import MissingInputError
from pipeline.deploy.formats import FILES, decode, keras_runner
from pipeline.deploy.stage import TOLERANCES, check, export
from pipeline.stages.featurize import featurize
from pipeline.stages.predict import predict
from pipeline.stages.train import train
from pipeline.store.index import FeatureStore
from pipeline.tools.serve_bench import bench_row, burst, free_port, request, start_server, stop_server
from tests.conftest import make_split

pytestmark = pytest.mark.slow
MAX_PIXELS = 1_000_000  # the export's image gate: a 1200 x 1000 PNG is a decompression bomb to it
# (backbone, weights, input size, mirror, head): RGB with a scale, mirror-averaged, logreg; BGR offsets, dense
CASES = {
    "lite0-logreg": ("efficientnet_lite0", "imagenet", 48, True, "logreg"),
    "vgg16-dense": ("vgg16", "none", 32, False, "dense"),
}


class Trained:
    def __init__(self, root: Path, name: str) -> None:
        backbone, weights, size, mirror, head = CASES[name]
        self.backbone, self.backbone_config, self.root = backbone, BackboneConfig(weights, size), root / name
        self.store = self.root / "features" / f"{backbone}.h5"  # the layout params.yaml's paths describe
        self.head, self.head_dir, self.out = head, self.root / "models" / backbone / head, self.root / "export"
        config = FeaturizeConfig(batch_size=8, precision="float32", mirror=mirror)
        featurize(backbone, self.backbone_config, config, root / "split" / "manifest.csv", self.store)
        train(self.store, head, {"epochs": 1} if head == "dense" else {}, 42, self.head_dir, None)
        rows = FeatureStore(self.store).split_rows("test")
        self.paths, self.labels = [root / "split" / i for i in rows.ids], np.asarray(rows.labels)
        self.classes = FeatureStore(self.store).classes

    def params(self) -> Path:
        """A params file whose paths and backbone settings are this case's."""
        paths = {"split": str(self.root.parent / "split"), "features": str(self.root / "features")}
        backbone = {"weights": self.backbone_config.weights, "input_size": self.backbone_config.input_size}
        params = {"paths": paths | {"models": str(self.root / "models")}, "backbones": {self.backbone: backbone}}
        (self.root / "params.yaml").write_text(json.dumps(params))  # JSON is YAML
        return self.root / "params.yaml"

    def predicted(self) -> np.ndarray:
        """`predict`'s probabilities for the test files, one column per class."""
        found = predict(self.paths, self.store, self.backbone_config, self.head, self.head_dir, len(self.classes))
        return np.array([[dict(p.top)[c] for c in self.classes] for p in found])


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict[str, Trained]:
    root = tmp_path_factory.mktemp("deploy")
    make_split(root, 8, train=4, validation=1, test=3)
    return {name: Trained(root, name) for name in CASES}


@pytest.fixture(scope="module")
def lite0(project) -> Trained:
    """Every format of the mirror-averaged EfficientNet-Lite0 x logreg."""
    trained = project["lite0-logreg"]
    export(trained.store, trained.backbone_config, "logreg", trained.head_dir, trained.out, True, True, MAX_PIXELS)
    return trained


def test_every_format_matches_predict_within_its_tolerance(lite0: Trained) -> None:
    reference = lite0.predicted()
    results = check(lite0.out, lite0.paths, lite0.labels, reference, "test")
    assert [r.format for r in results] == ["keras", "tflite", "tflite-dynamic-range", "onnx"]
    for r in results:
        assert r.max_abs_diff <= TOLERANCES[r.format], r
        assert r.images == len(lite0.paths) == 6
        assert r.bytes == (lite0.out / FILES[r.format]).stat().st_size
    exact = [r for r in results if r.format != "tflite-dynamic-range"]
    assert all(r.top1_agreement == 1.0 and r.accuracy == (reference.argmax(1) == lite0.labels).mean() for r in exact)
    report = json.loads((lite0.out / "check.json").read_text())
    assert [f["ok"] for f in report["formats"]] == [True] * 4
    metadata = json.loads((lite0.out / "model.json").read_text())
    assert metadata["classes"] == ["cat", "dog"] and metadata["image_gate"] == {"max_pixels": MAX_PIXELS}
    assert metadata["recipe"] | {"weights_sha256": "", "fingerprint": ""} == {
        "backbone": "efficientnet_lite0",
        "input_size": 48,
        "resize": "bilinear",
        "channel_order": "RGB",
        "offset": [127.0, 127.0, 127.0],
        "scale": 1 / 128,
        "mirror": True,
        "weights": "imagenet",
        "weights_sha256": "",
        "fingerprint": "",
    }


def test_bgr_dense_head_matches_predict(project) -> None:
    vgg = project["vgg16-dense"]
    export(vgg.store, vgg.backbone_config, "dense", vgg.head_dir, vgg.out)
    images = np.stack([decode(p.read_bytes()) for p in vgg.paths[:3]])  # the sample's images are all 200 x 200
    exported = keras_runner(vgg.out / FILES["keras"])(images)
    np.testing.assert_allclose(exported, vgg.predicted()[:3], atol=TOLERANCES["keras"])


LOAD_WITHOUT_PIPELINE = """
import json, sys
class Refuse:  # any attempt to import this project's package fails
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pipeline":
            raise ImportError(f"{name} is not installed here")
sys.meta_path.insert(0, Refuse())
import keras, numpy as np
model = keras.saving.load_model(sys.argv[1], safe_mode=True)
print(json.dumps(model.predict(np.load(sys.argv[2]), verbose=0).tolist()))
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in ("pipeline", "tests")})))
"""


def test_keras_file_loads_in_safe_mode_without_this_package(lite0: Trained, tmp_path: Path) -> None:
    """A clean interpreter (-I: no cwd, no PYTHONPATH on sys.path) that can import keras but not `pipeline`."""
    config = json.loads(zipfile.ZipFile(lite0.out / FILES["keras"]).read("config.json"))
    modules = {m for m in find_values(config, "module") if m}
    assert modules and all(m.split(".")[0] == "keras" for m in modules), modules
    images = np.stack([decode(p.read_bytes()) for p in lite0.paths])
    np.save(tmp_path / "images.npy", images)
    script = [sys.executable, "-I", "-c", LOAD_WITHOUT_PIPELINE, str(lite0.out / FILES["keras"]), "images.npy"]
    result = subprocess.run(script, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    probabilities, imported = (json.loads(line) for line in result.stdout.strip().splitlines()[-2:])
    assert imported == []
    np.testing.assert_allclose(probabilities, lite0.predicted(), atol=TOLERANCES["keras"])


def find_values(tree, key: str) -> list:
    if isinstance(tree, dict):
        return ([tree[key]] if key in tree else []) + [v for value in tree.values() for v in find_values(value, key)]
    if isinstance(tree, list):
        return [v for value in tree for v in find_values(value, key)]
    return []


def bad_uploads(good: bytes) -> dict[str, tuple[bytes, int, str]]:
    """name -> (bytes, expected status, expected error)."""
    bomb = io.BytesIO()
    Image.new("L", (1200, 1000)).save(bomb, "PNG")  # 1.2 million pixels in about 1 KB
    return {
        "empty.jpg": (b"", 400, "empty"),
        "notes.jpg": (b"not an image at all\n" * 20, 415, "not an image"),
        "truncated.jpg": (good[: len(good) // 2], 422, "truncated"),
        "bomb.png": (bomb.getvalue(), 413, "too large"),
        "huge.jpg": (good + b"\0" * 300_000, 413, "too large"),  # over --max-bytes
    }


def test_server_answers_a_burst_like_predict_and_refuses_bad_uploads_with_4xx(lite0: Trained) -> None:
    reference = lite0.predicted()
    good = [(p.name, p.read_bytes()) for p in lite0.paths]
    bad = bad_uploads(good[0][1])
    uploads = good * 2 + [(name, data) for name, (data, _, _) in bad.items()]
    order = np.random.default_rng(0).permutation(len(uploads))
    port = free_port()
    server = start_server(lite0.out, port, "--max-bytes", "200000", "--max-batch", "8")
    try:
        replies = burst(port, [uploads[i] for i in order], clients=8)
        raw = request(port, "POST", "/predict?top_k=2", good[0][1], "image/jpeg")
        metadata = request(port, "GET", "/metadata").body
        rows = [bench_row(port, good, clients, 12, 60) for clients in (1, 8)]
        health = request(port, "GET", "/health").body
    finally:
        stop_server(server)
    by_upload = {int(i): reply for i, reply in zip(order, replies, strict=True)}
    for i, (name, _) in enumerate(uploads):
        reply = by_upload[i]
        if i < len(good) * 2:
            expected = reference[i % len(good)]
            assert reply.status == 200, (name, reply)
            assert reply.body["class"] == lite0.classes[int(expected.argmax())]
            assert abs(reply.body["probability"] - expected.max()) <= TOLERANCES["keras"]
        else:
            _, status, error = bad[name]
            assert (reply.status, reply.body["error"]) == (status, error), (name, reply)
    assert raw.status == 200 and [t["class"] for t in raw.body["top_k"]] == [
        lite0.classes[int(i)] for i in np.argsort(-reference[0])
    ]
    assert metadata["classes"] == lite0.classes and metadata["server"]["max_bytes"] == 200_000
    assert [(r["requests"], r["errors"]) for r in rows] == [(12, 0), (12, 0)]
    assert 0 < health["batches"] < len(good) * 2 + 1 + 24  # concurrent requests shared a batch


def test_export_without_a_trained_head_names_it_and_writes_nothing(project, tmp_path: Path) -> None:
    lite0 = project["lite0-logreg"]
    with pytest.raises(MissingInputError, match=r"No trained 'dense' head at .*nothing/head.keras\. Run `dvc repro`"):
        export(lite0.store, lite0.backbone_config, "dense", tmp_path / "nothing", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_command_line_never_imports_the_server() -> None:
    """FastAPI and uvicorn are an extra: every other command must run without them."""
    code = "import sys, pipeline.cli; print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"


def test_export_command_writes_the_model_and_prints_the_check(project, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    vgg = project["vgg16-dense"]
    out = tmp_path / "cli-export"
    command = ["export", "vgg16", "dense", "--out", str(out), "--limit", "4", "--params", str(vgg.params())]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:2] == ["keras", str(out / "model.keras")]
    assert "check on the test split (4 images, one image a call" in result.output
    table = lines[next(i for i, line in enumerate(lines) if line.startswith("check on")) + 1 :]
    assert [line.split()[0] for line in table] == ["format", "predict", "keras"]
    row = table[-1]
    assert row.split()[-2:] == ["yes", "(0.0001)"]
    assert json.loads((out / "check.json").read_text())["images"] == 4
