"""export and serve: the exported model against `predict` in every format, its `.keras` file loaded without this
package, and the HTTP service under a burst of concurrent good and bad uploads (real uvicorn on 127.0.0.1).

One tiny Lite0 x logreg export (32 px, the smallest input size) is converted to every format once, by the
`export` command; the server and the interpreter that loads model.keras without this package start right after
it, in the background, while the in-process checks run. Set PLAIN_KERAS_PYTHON to the interpreter of a
virtualenv holding only TensorFlow and Keras to also load model.keras there (docs/deploy.md)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from functools import cached_property
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.core.config import BackboneConfig, FeaturizeConfig
from pipeline.core.errors import MissingInputError
from pipeline.deploy.formats import FILES, decode, keras_runner
from pipeline.deploy.stage import TOLERANCES, check, export
from pipeline.stages.featurize import featurize
from pipeline.stages.predict import predict
from pipeline.stages.train import train
from pipeline.store.index import FeatureStore
from pipeline.tools.serve_bench import (
    bench_row,
    burst,
    free_port,
    launch_server,
    request,
    stop_server,
    wait_until_healthy,
)
from tests.conftest import make_split

pytestmark = pytest.mark.slow
MAX_PIXELS = 1_000_000  # the export's image gate: a 1200 x 1000 PNG is a decompression bomb to it
# (backbone, weights, input size, mirror, head): RGB with a scale, mirror-averaged, logreg; BGR offsets, dense
CASES = {
    "lite0-logreg": ("efficientnet_lite0", "imagenet", 32, True, "logreg"),
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
        """A params file whose paths, image gate and backbone settings are this case's."""
        paths = {"split": str(self.root.parent / "split"), "features": str(self.root / "features")}
        backbone = {"weights": self.backbone_config.weights, "input_size": self.backbone_config.input_size}
        params = {
            "paths": paths | {"models": str(self.root / "models")},
            "split": {"max_pixels": MAX_PIXELS},
            "backbones": {self.backbone: backbone},
        }
        (self.root / "params.yaml").write_text(json.dumps(params))  # JSON is YAML
        return self.root / "params.yaml"

    @cached_property
    def reference(self) -> np.ndarray:
        """`predict`'s probabilities for the test files, one column per class."""
        found = predict(self.paths, self.store, self.backbone_config, self.head, self.head_dir, len(self.classes))
        return np.array([[dict(p.top)[c] for c in self.classes] for p in found])

    @cached_property
    def images(self) -> np.ndarray:
        """The test files decoded (uint8 RGB; the sample's images are all 200 x 200)."""
        return np.stack([decode(p.read_bytes()) for p in self.paths])


@pytest.fixture(scope="module")
def split_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("deploy")
    make_split(root, 8, train=4, validation=1, test=3)
    return root


class Exported:
    """The Lite0 x logreg case exported in every format by the CLI, with the processes that use it starting."""

    def __init__(self, trained: Trained, stdout: str) -> None:
        self.trained, self.stdout, self.port = trained, stdout, free_port()
        self.server = launch_server(trained.out, self.port, "--max-bytes", "200000", "--max-batch", "8")
        np.save(trained.root / "images.npy", trained.images)
        script = [sys.executable, "-I", "-c", LOAD_WITHOUT_PIPELINE, str(trained.out / FILES["keras"]), "images.npy"]
        self.loader = subprocess.Popen(script, cwd=trained.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def lite0(split_root):
    """Mirror-averaged EfficientNet-Lite0 x logreg, exported once by `export --tflite --onnx`."""
    trained = Trained(split_root, "lite0-logreg")
    command = ["export", trained.backbone, "logreg", "--out", str(trained.out), "--tflite", "--onnx", "--no-check"]
    result = CliRunner().invoke(app, [*command, "--params", str(trained.params())])
    assert result.exit_code == 0, result.output
    exported = Exported(trained, result.stdout)
    yield exported
    stop_server(exported.server)
    exported.loader.kill()
    exported.loader.wait()


@pytest.fixture(scope="module")
def vgg(split_root) -> Trained:
    """VGG16 (BGR offsets, random weights, 32 px) x a dense head."""
    return Trained(split_root, "vgg16-dense")


def test_export_command_prints_only_its_own_lines(lite0: Exported) -> None:
    """The converters' own output (Keras' "Saved artifact at ..." and TensorSpec lines, tf2onnx's log) is not
    the command's: stdout is the list of files written."""
    out = lite0.trained.out
    sizes = {name: (out / file).stat().st_size / 1e6 for name, file in FILES.items()}
    assert lite0.stdout.splitlines() == [
        f"keras                 {out}/model.keras  ({sizes['keras']:.2f} MB)",
        f"tflite                {out}/model.tflite  ({sizes['tflite']:.2f} MB)",
        f"tflite-dynamic-range  {out}/model.dynamic-range.tflite  ({sizes['tflite-dynamic-range']:.2f} MB)",
        f"onnx                  {out}/model.onnx  ({sizes['onnx']:.2f} MB)",
        f"metadata              {out}/model.json  (classes ['cat', 'dog'], recipe, image gate)",
    ]


def test_every_format_matches_predict_within_its_tolerance(lite0: Exported) -> None:
    trained = lite0.trained
    results = check(trained.out, trained.paths, trained.labels, trained.reference, "test")
    assert [r.format for r in results] == ["keras", "tflite", "tflite-dynamic-range", "onnx"]
    for r in results:
        assert r.max_abs_diff <= TOLERANCES[r.format], r
        assert r.images == len(trained.paths) == 6
        assert r.bytes == (trained.out / FILES[r.format]).stat().st_size
    exact = [r for r in results if r.format != "tflite-dynamic-range"]
    accuracy = (trained.reference.argmax(1) == trained.labels).mean()
    assert all(r.top1_agreement == 1.0 and r.accuracy == accuracy for r in exact)
    report = json.loads((trained.out / "check.json").read_text())
    assert [f["ok"] for f in report["formats"]] == [True] * 4
    metadata = json.loads((trained.out / "model.json").read_text())
    assert metadata["classes"] == ["cat", "dog"] and metadata["image_gate"] == {"max_pixels": MAX_PIXELS}
    assert metadata["recipe"] | {"weights_sha256": "", "fingerprint": ""} == {
        "backbone": "efficientnet_lite0",
        "input_size": 32,
        "resize": "bilinear",
        "channel_order": "RGB",
        "offset": [127.0, 127.0, 127.0],
        "scale": 1 / 128,
        "mirror": True,
        "weights": "imagenet",
        "weights_sha256": "",
        "fingerprint": "",
    }


def test_bgr_dense_head_matches_predict(vgg: Trained) -> None:
    export(vgg.store, vgg.backbone_config, "dense", vgg.head_dir, vgg.out)
    exported = keras_runner(vgg.out / FILES["keras"])(vgg.images[:3])
    np.testing.assert_allclose(exported, vgg.reference[:3], atol=TOLERANCES["keras"])


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


def test_keras_file_loads_in_safe_mode_without_this_package(lite0: Exported) -> None:
    """A clean interpreter (-I: no cwd, no PYTHONPATH on sys.path) that can import keras but not `pipeline`."""
    trained = lite0.trained
    config = json.loads(zipfile.ZipFile(trained.out / FILES["keras"]).read("config.json"))
    modules = {m for m in find_values(config, "module") if m}
    assert modules and all(m.split(".")[0] == "keras" for m in modules), modules
    stdout, stderr = lite0.loader.communicate(timeout=300)
    assert lite0.loader.returncode == 0, stderr.decode()[-3000:]
    probabilities, imported = (json.loads(line) for line in stdout.decode().strip().splitlines()[-2:])
    assert imported == []
    np.testing.assert_allclose(probabilities, trained.reference, atol=TOLERANCES["keras"])


LOAD_IN_PLAIN_KERAS = """
import importlib.util, json, sys
import keras, numpy as np
model = keras.saving.load_model(sys.argv[1], safe_mode=True)
print(json.dumps(model.predict(np.load(sys.argv[2]), verbose=0).tolist()))
print(json.dumps(importlib.util.find_spec("pipeline") is not None))
"""


@pytest.mark.skipif(not os.environ.get("PLAIN_KERAS_PYTHON"), reason="PLAIN_KERAS_PYTHON: a TF-only venv's python")
def test_keras_file_loads_in_a_virtualenv_with_only_tensorflow_and_keras(lite0: Exported) -> None:
    """The interpreter PLAIN_KERAS_PYTHON names (e.g. `python -m venv /tmp/tfonly && /tmp/tfonly/bin/pip install
    tensorflow==<pyproject's pin>`) has no `pipeline` to find; it loads model.keras and predicts as predict does."""
    trained = lite0.trained
    script = [os.environ["PLAIN_KERAS_PYTHON"], "-c", LOAD_IN_PLAIN_KERAS, str(trained.out / FILES["keras"])]
    result = subprocess.run([*script, "images.npy"], cwd=trained.root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    probabilities, pipeline_found = (json.loads(line) for line in result.stdout.strip().splitlines()[-2:])
    assert pipeline_found is False
    np.testing.assert_allclose(probabilities, trained.reference, atol=TOLERANCES["keras"])


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


def test_server_answers_a_burst_like_predict_and_refuses_bad_uploads_with_4xx(lite0: Exported) -> None:
    trained, port = lite0.trained, lite0.port
    reference = trained.reference
    good = [(p.name, p.read_bytes()) for p in trained.paths]
    bad = bad_uploads(good[0][1])
    uploads = good * 2 + [(name, data) for name, (data, _, _) in bad.items()]
    order = np.random.default_rng(0).permutation(len(uploads))
    wait_until_healthy(lite0.server, port)
    replies = burst(port, [uploads[i] for i in order], clients=8)
    raw = request(port, "POST", "/predict?top_k=2", good[0][1], "image/jpeg")
    metadata = request(port, "GET", "/metadata").body
    rows = [bench_row(port, good, clients, 8, 60) for clients in (1, 8)]
    health = request(port, "GET", "/health").body
    by_upload = {int(i): reply for i, reply in zip(order, replies, strict=True)}
    for i, (name, _) in enumerate(uploads):
        reply = by_upload[i]
        if i < len(good) * 2:
            expected = reference[i % len(good)]
            assert reply.status == 200, (name, reply)
            assert reply.body["class"] == trained.classes[int(expected.argmax())]
            assert abs(reply.body["probability"] - expected.max()) <= TOLERANCES["keras"]
        else:
            _, status, error = bad[name]
            assert (reply.status, reply.body["error"]) == (status, error), (name, reply)
    assert raw.status == 200 and [t["class"] for t in raw.body["top_k"]] == [
        trained.classes[int(i)] for i in np.argsort(-reference[0])
    ]
    assert metadata["classes"] == trained.classes and metadata["server"]["max_bytes"] == 200_000
    assert [(r["requests"], r["errors"]) for r in rows] == [(8, 0), (8, 0)]
    assert 0 < health["batches"] < len(good) * 2 + 1 + 16  # concurrent requests shared a batch


def test_export_without_a_trained_head_names_it_and_writes_nothing(vgg: Trained, tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match=r"No trained 'logreg' head at .*nothing/head.npz\. Run `dvc repro`"):
        export(vgg.store, vgg.backbone_config, "logreg", tmp_path / "nothing", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_command_line_never_imports_the_server() -> None:
    """FastAPI and uvicorn are an extra: every other command must run without them."""
    code = "import sys, pipeline.cli; print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"


def test_export_command_writes_the_model_and_prints_the_check(vgg: Trained, tmp_path: Path) -> None:
    out, metrics = tmp_path / "cli-export", tmp_path / "metrics" / "export.json"
    command = ["export", "vgg16", "dense", "--out", str(out), "--limit", "4", "--metrics", str(metrics)]
    result = CliRunner().invoke(app, [*command, "--params", str(vgg.params())])
    assert result.exit_code == 0, result.output
    check_rows = json.loads((out / "check.json").read_text())["formats"]
    size, row = (out / "model.keras").stat().st_size / 1e6, check_rows[0]
    accuracy = f"{json.loads(metrics.read_text())['predict_accuracy']:.4f}"
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        f"keras                 {out}/model.keras  ({size:.2f} MB)",
        f"metadata              {out}/model.json  (classes ['cat', 'dog'], recipe, image gate)",
        "",
        f"check on the test split (4 images, one image a call; {out}/check.json):",
    ]
    assert [line.split() for line in lines[4:]] == [  # the table's columns are as wide as their widest cell
        ["format", "size", "accuracy", "max", "|diff|", "top-1", "agree", "ms/image", "within"],
        ["predict", "-", accuracy, "-", "-", "-", "-"],
        ["keras", f"{size:.2f}", "MB", f"{row['accuracy']:.4f}", f"{row['max_abs_diff']:.1e}", "1.0000"]
        + [f"{row['ms_per_image']:.1f}", "yes", "(0.0001)"],
    ]
    assert json.loads(metrics.read_text())["keras"]["within_tolerance"] is True


def test_export_command_errors_are_one_line_and_exit_2(vgg: Trained, tmp_path: Path) -> None:
    """Bad arguments and bad deploy params stop the command before any TensorFlow work, naming what is wrong."""
    command = [sys.executable, "-m", "pipeline", "export", "vgg16", "dense", "--params", str(vgg.params())]
    result = subprocess.run([*command, "--split", "tset"], capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == (
        2,
        "",
        "error: --split must be one of ['train', 'validation', 'test']. Received: split='tset'\n",
    )
    no_check = [*command, "--no-check", "--metrics", "m.json"]
    result = subprocess.run(no_check, capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == (
        2,
        "",
        "error: --metrics m.json writes the check's figures: drop --no-check, or drop --metrics.\n",
    )
    params = json.loads(vgg.params().read_text()) | {"deploy": {"backbones": ["vgg16"], "heads": ["svm"]}}
    (tmp_path / "params.yaml").write_text(json.dumps(params))
    command[-1] = str(tmp_path / "params.yaml")
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == (
        2,
        "",
        f"error: {tmp_path / 'params.yaml'}: deploy.heads[0]: received 'svm'; allowed: 'dense' or 'logreg'\n",
    )
