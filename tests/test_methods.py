"""The book's other methods: exact models, augmentation, each method end to end on a tiny split, and the real
`dvc repro` running them only when params ask."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from conftest import TINY_PARAMS, check_test_metrics, make_project, run, sample_images

from pipeline.backbones import get_backbone
from pipeline.core.config import (
    BackboneConfig,
    Config,
    FeaturizeConfig,
    MethodsConfig,
    Paths,
    SplitConfig,
    TrainConfig,
)
from pipeline.core.errors import StoreError
from pipeline.methods import augment, augmented_heads, end_to_end, finetune, scratch
from pipeline.methods.augmented_features import write_augmented_features
from pipeline.methods.end_to_end import build_end_to_end
from pipeline.methods.finetune import unfreeze_from
from pipeline.stages.split import split
from pipeline.training import convnet
from pipeline.training.augmented_store import augmented_path, read_augmented
from pipeline.training.common import (
    compile_model,
    evaluate_model,
    image_dataset,
    load_model,
    method_dirs,
    preprocessor,
    read_split,
)
from pipeline.training.convnet import build_scratch_model, warn_emulated_bf16

SEED_LAYER_PARAMS = [896, 18_496, 73_856, 147_584, 3_211_776, 513]


def trainable(model: keras.Model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def test_scratch_model_is_the_seeds() -> None:
    model = build_scratch_model(150, 2)
    assert model.count_params() == 3_453_121 and type(model.layers[0]).__name__ == "Rescaling"
    assert [layer.count_params() for layer in model.layers if layer.count_params()] == SEED_LAYER_PARAMS
    assert model.output_shape == (None, 1) and model.layers[-1].activation.__name__ == "sigmoid"
    with_dropout = build_scratch_model(150, 2, dropout=0.5)
    assert with_dropout.count_params() == 3_453_121
    assert [type(layer).__name__ for layer in with_dropout.layers[-4:]] == ["Flatten", "Dropout", "Dense", "Dense"]
    assert build_scratch_model(150, 3).count_params() == 3_453_121 - 513 + 3 * 513
    with pytest.raises(ValueError, match="46 px or more"):
        build_scratch_model(45)


def test_bfloat16_scratch_convnet_trains_saves_and_reloads(tmp_path: Path) -> None:
    """precision bfloat16: convolutions and dense layers compute in bf16 on float32 weights, the classifier and
    the loss stay float32, a training step moves the weights, the model reloads in safe mode with its policy and
    predicts what it predicted, and the global policy is float32 again after building."""
    model = build_scratch_model(48, 2, dropout=0.5, precision="bfloat16")
    assert keras.mixed_precision.global_policy().name == "float32"
    conv = model.get_layer("conv1")
    assert (conv.compute_dtype, conv.kernel.dtype) == ("bfloat16", "float32")
    assert model.get_layer("predictions").compute_dtype == "float32" and model.count_params() == 307_393
    images = np.random.default_rng(0).uniform(0, 255, (8, 48, 48, 3)).astype("float32")
    assert model(images).dtype == "float32"
    before = conv.kernel.numpy().copy()
    compile_model(model, 1e-3, 2)
    model.fit(images, np.array([0, 1] * 4), epochs=1, verbose=0)
    assert not np.allclose(before, conv.kernel.numpy())
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert loaded.get_layer("conv1").compute_dtype == "bfloat16"
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), model.predict(images, verbose=0))
    with pytest.raises(ValueError, match="precision must be one of"):
        build_scratch_model(48, precision="float16")


@pytest.mark.parametrize("native", [True, False])
def test_bfloat16_where_it_is_emulated_warns_with_the_key_and_the_fix(monkeypatch, capsys, native: bool) -> None:
    """A CPU without AVX512_BF16/AMX (this session's AMD EPYC) emulates bf16: the scratch convnets would train
    11-16x slower than in float32, so the method says so on stderr, naming the param; float32 is quiet."""
    monkeypatch.setattr(convnet, "native_bf16", lambda: native)
    warn_emulated_bf16("methods.augment.precision", "bfloat16")
    warn_emulated_bf16("methods.scratch.precision", "float32")
    err = capsys.readouterr().err
    if native:
        assert err == ""
    else:
        assert err.count("warning:") == 1 and "methods.augment.precision is bfloat16" in err
        assert "Fix: set methods.augment.precision: float32" in err


def test_end_to_end_model_and_finetune_unfreezing_vgg16() -> None:
    spec = get_backbone("vgg16")
    model = build_end_to_end(spec.conv_base(150, spec.resolve_weights("none")), 2, 256)
    assert (model.count_params(), trainable(model)) == (16_812_353, 2_097_665)
    unfreeze_from(model, spec.finetune_from)
    assert trainable(model) == 2_097_665 + 3 * 2_359_808  # block5_conv1..3
    with pytest.raises(ValueError, match="no layer 'block9_conv1'"):
        unfreeze_from(model, "block9_conv1")


def test_finetuning_keeps_the_batch_norms_frozen(tmp_path: Path) -> None:
    """EfficientNet-Lite0 (ImageNet weights): after loading and unfreezing, a training step moves the unfrozen
    convolutions but no batch norm statistic or scale, and inference gives what the saved model gave."""
    spec = get_backbone("efficientnet_lite0")
    model = build_end_to_end(spec.conv_base(64, spec.resolve_weights("imagenet")), 2, 8)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    unfreeze_from(loaded, spec.finetune_from)
    images = np.random.default_rng(0).uniform(-1, 1, (4, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(loaded(images), model(images), atol=1e-6)
    norms = [layer for layer in loaded.layers[1].layers if isinstance(layer, keras.layers.BatchNormalization)]
    before = {w.path: w.numpy().copy() for layer in norms for w in layer.weights}
    convs = {w.path: w.numpy().copy() for w in loaded.trainable_weights if "block15" in w.path}
    assert norms and convs and not any(layer.trainable for layer in norms)
    compile_model(loaded, 1e-3, 2)
    loaded.fit(images, np.array([0, 1, 0, 1]), epochs=1, verbose=0)
    after = {w.path: w.numpy() for layer in norms for w in layer.weights}
    assert all(np.array_equal(before[path], after[path]) for path in before)
    moved = [w.path for w in loaded.trainable_weights if w.path in convs and not np.allclose(w.numpy(), convs[w.path])]
    assert moved


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Config:
    """A tiny split (8 train, 3 validation, 3 test images per class) and a config writing beside it."""
    root = tmp_path_factory.mktemp("methods")
    images = root / "images"
    images.mkdir()
    for name, data in sample_images(14).items():
        (images / name).write_bytes(data)
    split(images, root / "split", SplitConfig(train=8, validation=3, test=3))
    paths = Paths(
        split=root / "split",
        features=root / "features",
        models=root / "models",
        metrics=root / "metrics",
        curves=root / "dvclive",
    )
    methods = MethodsConfig()
    methods = replace(
        methods,
        scratch=replace(methods.scratch, input_size=48, epochs=2, batch_size=8),
        augment=replace(
            methods.augment, input_size=48, epochs=1, batch_size=4, steps_per_epoch=3, precision="bfloat16"
        ),
        end_to_end=replace(methods.end_to_end, units=16, epochs=1, batch_size=8),
        finetune=replace(methods.finetune, epochs=1, batch_size=8),
        augmented_features=replace(methods.augmented_features, passes=2, batch_size=8),
    )
    return Config(
        paths=paths,
        featurize=FeaturizeConfig(backbones=("vgg16",), batch_size=8),
        backbones={"vgg16": BackboneConfig(weights="none", input_size=48)},
        train=TrainConfig(seed=1),
        heads={"logreg": {"C": 1.0}, "dense": {"epochs": 2, "units": 8}},
        methods=methods,
    )


def check_outputs(config: Config, method: str, run_name: str, report, epochs: int) -> None:
    dirs = method_dirs(config.paths, method, run_name)
    metrics = json.loads((dirs.metrics / "metrics.json").read_text())
    assert metrics["test/images"] == 6 and metrics["test/accuracy"] == round(report.accuracy, 4)
    assert (dirs.metrics / "plots" / "sklearn" / "confusion_matrix.json").is_file()
    curve = dirs.curves / "plots" / "metrics" / "validation" / "accuracy.tsv"
    assert len(curve.read_text().splitlines()) == 1 + epochs
    assert sorted(path.name for path in (dirs.curves / "figures").iterdir()) == ["accuracy.png", "loss.png"]
    model, info = load_model(dirs.model, "the stage")
    assert info["classes"] == ["cat", "dog"] and model.count_params() == report.parameters
    test = read_split(config.paths.split, "test")  # the saved model and its sidecar reproduce the score
    images = image_dataset(test, info["input_size"], info["resize"], 4, preprocessor(info["preprocess"]))
    assert evaluate_model(model, images, test.labels, test.classes).accuracy == report.accuracy


@pytest.mark.slow
def test_scratch_and_augment_train_and_score(project: Config) -> None:
    report = scratch.run(project, 0)
    check_outputs(project, "scratch", "0", report, epochs=2)
    assert report.parameters == build_scratch_model(48).count_params()
    report = augment.run(project, 0)
    check_outputs(project, "augment", "0", report, epochs=1)
    model, info = load_model(method_dirs(project.paths, "augment", 0).model, "")
    assert info["augmented"] and info["dropout"] == 0.5 and "dropout" in [layer.name for layer in model.layers]
    assert info["precision"] == "bfloat16" and model.get_layer("conv1").compute_dtype == "bfloat16"


@pytest.mark.slow
def test_end_to_end_then_finetune(project: Config) -> None:
    with pytest.raises(FileNotFoundError, match="end_to_end@vgg16"):
        finetune.run(project, "vgg16")
    report = end_to_end.run(project, "vgg16")
    check_outputs(project, "end_to_end", "vgg16", report, epochs=1)
    assert report.trainable == 512 * 16 + 16 + 17  # the frozen base is not trained
    before = load_model(method_dirs(project.paths, "end_to_end", "vgg16").model, "")[0]
    report = finetune.run(project, "vgg16")
    check_outputs(project, "finetune", "vgg16", report, epochs=1)
    assert report.trainable == 512 * 16 + 16 + 17 + 3 * 2_359_808
    after, info = load_model(method_dirs(project.paths, "finetune", "vgg16").model, "")
    assert info["from_layer"] == "block5_conv1" and info["backbone"] == "vgg16"
    changed = [b.path for b, a in zip(before.weights, after.weights, strict=True) if not np.allclose(b, a)]
    assert changed and all("block5" in name or "dense" in name or "predictions" in name for name in changed)


@pytest.mark.slow
def test_augmented_features_store_and_heads(project: Config) -> None:
    from pipeline.stages.featurize import featurize

    store = project.paths.store("vgg16")
    featurize("vgg16", project.backbone("vgg16"), project.featurize, project.paths.manifest, store)
    path = write_augmented_features(project, "vgg16")
    assert path == augmented_path(project.paths.features, "vgg16") and path.is_file()
    rows = read_augmented(path)
    train = read_split(project.paths.split, "train")
    assert rows.features.shape == (32, 1, 1, 512) and rows.ids == train.ids * 2
    assert list(rows.pass_index) == [0] * 16 + [1] * 16 and list(rows.labels) == list(train.labels) * 2
    assert rows.attrs["passes"] == 2 and rows.attrs["augmentation"]["rotation"] == 40
    assert not np.allclose(rows.features[:16], rows.features[16:])  # each pass is a new augmentation
    results = [augmented_heads.train_head(project, "vgg16", head) for head in ("logreg", "dense")]
    assert all(r.train_rows == 48 for r in results)
    for result in results:
        dirs = method_dirs(project.paths, "augmented_features", f"vgg16/{result.head}")
        metrics = json.loads((dirs.metrics / "metrics.json").read_text())
        assert metrics["plain/test/accuracy"] == round(result.plain, 4) and metrics["train_rows"] == 48
        assert metrics["gain"] == round(result.augmented - result.plain, 4) and metrics["test/images"] == 6
        assert {p.name for p in dirs.model.iterdir()} == {"augmented", "plain"}
        assert (dirs.curves / "augmented" / "plots" / "metrics" / "train" / "accuracy.tsv").is_file()
    path.write_bytes(b"not hdf5")
    with pytest.raises(StoreError, match="not a readable HDF5 file"):
        read_augmented(path)


def ran_stages(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


@pytest.mark.slow
def test_dvc_runs_methods_only_when_listed(tmp_path: Path, sample_zip_40) -> None:
    overrides = {
        **TINY_PARAMS,
        "methods.end_to_end.epochs": 1,
        "methods.end_to_end.units": 8,
        "methods.finetune.epochs": 1,
    }
    root = make_project(tmp_path / "project", sample_zip_40, overrides)
    default_params = (root / "params.yaml").read_text()
    assert not method_stages(run(["dvc", "stage", "list", "--name-only"], root).stdout.split())
    params = yaml.safe_load(default_params)
    params["methods"]["run"].update(end_to_end=["vgg16"], finetune=["vgg16"], mnist=[0])
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    listed = run(["dvc", "stage", "list", "--name-only"], root).stdout.split()
    assert method_stages(listed) == ["end_to_end@vgg16", "finetune@vgg16", "mnist@0"]
    result = run(["dvc", "repro", "finetune@vgg16"], root)
    assert ran_stages(result.stdout) == ["extract", "split", "end_to_end@vgg16", "finetune@vgg16"]
    assert "finetune@vgg16: test accuracy" in result.stdout
    metrics = check_test_metrics(root / "metrics" / "methods" / "finetune" / "vgg16", images=20)
    assert f"finetune@vgg16: test accuracy {metrics['test/accuracy']:.4f}" in result.stdout
    assert "metrics/methods/finetune/vgg16/metrics.json" in run(["dvc", "metrics", "show"], root).stdout
    (root / "params.yaml").write_text(default_params)
    would_run = list(json.loads(run(["dvc", "status", "--json"], root).stdout))  # what `dvc repro` would run
    assert "featurize@vgg16" in would_run and not method_stages(would_run)


def method_stages(stages: list[str]) -> list[str]:
    return [stage for stage in stages if stage.split("@")[0] in METHOD_STAGES]


METHOD_STAGES = {"scratch", "augment", "end_to_end", "finetune", "augmented_features", "augmented_heads", "mnist"}
