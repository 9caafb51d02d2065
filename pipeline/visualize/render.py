"""Stage visualize: activations, filter patterns and Grad-CAM of one backbone's trained head, as PNGs for DVC."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.config import Config, VisualizeConfig
from pipeline.core.errors import InputError
from pipeline.store.manifest import read_manifest
from pipeline.visualize.activations import activation_figure, activations
from pipeline.visualize.figures import save, slug
from pipeline.visualize.filters import filter_patterns, filters_figure
from pipeline.visualize.gradcam import grad_cam, heatmap_figure
from pipeline.visualize.models import ImageClassifier, load_classifier


@dataclass(frozen=True)
class RenderReport:
    files: list[Path]
    seconds: float


def chosen_images(manifest: Path, config: VisualizeConfig) -> list[str]:
    """The manifest ids to picture: `ids` if given, else the first `images` test images of each class."""
    rows = read_manifest(manifest)
    known = {row.path for row in rows}
    if config.ids:
        missing = [i for i in config.ids if i not in known]
        if missing:
            raise InputError(f"visualize.ids not in {manifest}: {missing}. Ids look like 'test/cat/cat.1500.jpg'.")
        return list(config.ids)
    chosen: list[str] = []
    for cls in sorted({row.cls for row in rows}):
        chosen += [row.path for row in rows if row.split == "test" and row.cls == cls][: config.images]
    return chosen


def render_activations(
    classifier: ImageClassifier, image: Path, config: VisualizeConfig, out_dir: Path, name: str | None = None
) -> list[Path]:
    """One PNG per conv/pool layer: the activation grid of `image` (files named after `name`, default its stem)."""
    _, batch = classifier.load_image(image)
    grids = activations(classifier.model, batch, config.layers, config.per_row)
    return [
        save(
            activation_figure(grid, f"{classifier.name} on {image.name}"),
            out_dir / f"activations_{slug(name or image.stem)}_{number:02d}_{slug(grid.layer)}.png",
        )
        for number, grid in enumerate(grids, start=1)
    ]


def render_gradcam(
    classifier: ImageClassifier,
    image: Path,
    config: VisualizeConfig,
    out_dir: Path,
    target: str | None = None,
    name: str | None = None,
) -> Path:
    """The Grad-CAM figure of `image` for the predicted class, or `target` (a class name or index)."""
    original, batch = classifier.load_image(image)
    cam = grad_cam(classifier.model, batch, classifier.gradcam_layer, class_index(classifier.classes, target))
    figure = heatmap_figure(cam, original, classifier.classes, f"{classifier.name} on {image.name}", config.alpha)
    suffix = "" if target is None else f"_{slug(classifier.classes[cam.class_index])}"
    return save(figure, out_dir / f"gradcam_{slug(name or image.stem)}{suffix}.png")


def picture_name(image: Path) -> str:
    """cat.1500 for Kaggle names; <class>_<stem> otherwise, since class folders may share file names."""
    return image.stem if image.stem.startswith(f"{image.parent.name}.") else f"{image.parent.name}_{image.stem}"


def class_index(classes: list[str], target: str | None) -> int | None:
    if target is None:
        return None
    if target in classes:
        return classes.index(target)
    if target.isdigit() and int(target) < len(classes):
        return int(target)
    raise InputError(f"Unknown class. Received: class={target!r}. Known: {classes} (or their index)")


def render_filters(backbone: str, weights: str, config: VisualizeConfig, out_dir: Path) -> Path:
    layer = config.filter_layer(backbone)
    result = filter_patterns(
        backbone, weights, layer, config.filters, config.filter_size, config.steps, config.step_size
    )
    title = (
        f"{backbone} (weights: {weights}), {layer}: what filters {result.filters[0]}-{result.filters[-1]} respond to\n"
        f"{config.steps} steps of gradient ascent from gray + noise at {config.filter_size} px; "
        f"mean activation {result.start_activation.mean():.3g} -> {result.end_activation.mean():.3g}"
    )
    return save(filters_figure(result, title), out_dir / f"filters_{slug(layer)}.png")


def render(backbone: str, head: str, config: Config, out_dir: Path) -> RenderReport:
    """Every picture of one backbone's trained Keras head into `out_dir` (emptied first), in numbered folders so that
    `dvc plots show`, which lists them by path, shows Grad-CAM first, then the filters, then the activations."""
    start = time.perf_counter()
    settings = config.visualize
    images = [config.paths.split / image for image in chosen_images(config.paths.manifest, settings)]
    classifier = load_classifier(f"{backbone}/{head}", config)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    names = [picture_name(image) for image in images]
    files = [
        render_gradcam(classifier, image, settings, out_dir / "1_gradcam", name=name)
        for image, name in zip(images, names, strict=True)
    ]
    if settings.filters > 0:
        weights = config.backbone(backbone).weights
        files.append(render_filters(backbone, weights, settings, out_dir / "2_filters"))
    for image, name in zip(images, names, strict=True):
        files += render_activations(classifier, image, settings, out_dir / "3_activations", name=name)
    return RenderReport(files, time.perf_counter() - start)
