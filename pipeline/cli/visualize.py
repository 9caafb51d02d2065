"""`python -m pipeline visualize ...`: each command parses, loads, calls, saves PNGs and prints their paths."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.app import DEFAULT_PARAMS, ParamsOption
from pipeline.core.config import load_config

visualize_app = typer.Typer(
    help="Pictures of what a convnet learned: activations, filter patterns, Grad-CAM heatmaps.", no_args_is_help=True
)

ModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="A .keras image classifier (pixels in [0, 255] in; last Conv2D for Grad-CAM) or '<backbone>/<head>' "
        "for a trained Keras head on its conv base, e.g. efficientnet_lite0/dense.",
    ),
]
ClassesOption = Annotated[
    str | None, typer.Option(help="Class names of a .keras model, comma-separated in label order (e.g. cat,dog).")
]
OutOption = Annotated[Path, typer.Option("--out", "-o", help="Folder to write the PNGs into.")]


def _classes(text: str | None) -> list[str] | None:
    return [name.strip() for name in text.split(",")] if text else None


@visualize_app.command()
def activations(
    image: Annotated[Path, typer.Argument(help="The image to run the model on.")],
    model: ModelOption,
    layers: Annotated[int | None, typer.Option(help="First N conv/pool layers; default visualize.layers.")] = None,
    classes: ClassesOption = None,
    out: OutOption = Path("."),
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """One PNG per layer: every channel's activation map for IMAGE, 16 to a row, each standardized."""
    from pipeline.visualize.models import load_classifier
    from pipeline.visualize.render import render_activations

    config = load_config(params)
    settings = config.visualize if layers is None else replace(config.visualize, layers=layers)
    classifier = load_classifier(model, config, _classes(classes))
    for path in render_activations(classifier, image, settings, out):
        typer.echo(path)


@visualize_app.command()
def filters(
    backbone: Annotated[str, typer.Option(help="A backbone of the registry, e.g. vgg16.")],
    layer: Annotated[str | None, typer.Option(help="Its layer; default visualize.filter_layers.<backbone>.")] = None,
    weights: Annotated[str | None, typer.Option(help="imagenet | none | a file; default from params.")] = None,
    count: Annotated[int | None, typer.Option(help="The first N filters; default visualize.filters.")] = None,
    steps: Annotated[int | None, typer.Option(help="Gradient-ascent steps; default visualize.steps.")] = None,
    size: Annotated[int | None, typer.Option(help="Pattern side in pixels; default visualize.filter_size.")] = None,
    out: OutOption = Path("."),
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """The input pattern each of a layer's first filters responds to most, by gradient ascent, as a grid."""
    from pipeline.visualize.render import render_filters

    config = load_config(params)
    changes = {
        "filters": count,
        "steps": steps,
        "filter_size": size,
        "filter_layers": {backbone: layer} if layer else None,
    }
    settings = replace(config.visualize, **{k: v for k, v in changes.items() if v is not None})
    typer.echo(render_filters(backbone, weights or config.backbone(backbone).weights, settings, out))


@visualize_app.command()
def heatmap(
    image: Annotated[Path, typer.Argument(help="The image to explain.")],
    model: ModelOption,
    target: Annotated[
        str | None, typer.Option("--class", help="Explain this class (name or index); default the predicted one.")
    ] = None,
    alpha: Annotated[
        float | None, typer.Option(help="Heatmap opacity over the image; default visualize.alpha.")
    ] = None,
    classes: ClassesOption = None,
    out: OutOption = Path("."),
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Grad-CAM of the model's last conv layer for IMAGE: the heatmap, and over the image, with the prediction."""
    from pipeline.visualize.models import load_classifier
    from pipeline.visualize.render import render_gradcam

    config = load_config(params)
    settings = config.visualize if alpha is None else replace(config.visualize, alpha=alpha)
    classifier = load_classifier(model, config, _classes(classes))
    typer.echo(render_gradcam(classifier, image, settings, out, target))


@visualize_app.command()
def render(
    backbone: str,
    head: Annotated[str, typer.Argument(help="A Keras head of visualize.heads, e.g. dense.")],
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Stage visualize: every picture of BACKBONE's trained HEAD into paths.plots/BACKBONE/HEAD/ (for dvc plots)."""
    from pipeline.core.config import KERAS_HEADS
    from pipeline.core.errors import ConfigError

    config = load_config(params)
    if head not in KERAS_HEADS:
        raise ConfigError(
            f"visualize render: {head} is not a Keras head, so it has no picture to draw (Keras heads: "
            f"{', '.join(KERAS_HEADS)}; visualize.heads lists the ones the pipeline pictures)"
        )
    from pipeline.visualize.render import render as run

    out_dir = config.paths.plots / backbone / head
    report = run(backbone, head, config, out_dir)
    typer.echo(f"rendered {len(report.files)} PNGs for {backbone}/{head} in {report.seconds:.1f} s -> {out_dir}")
