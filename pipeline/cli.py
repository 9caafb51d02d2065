"""The command line: `python -m pipeline <command>`. Each command parses, loads, calls a stage, reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.config import load_config
from pipeline.visualize.cli import visualize_app

app = typer.Typer(
    help="Precomputed feature store for small-data image classification with pretrained convnets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
store_app = typer.Typer(help="Inspect and check feature stores.", no_args_is_help=True)
app.add_typer(store_app, name="store")
app.add_typer(visualize_app, name="visualize")

ParamsOption = Annotated[Path, typer.Option("--params", "-p", help="The params file.")]
DEFAULT_PARAMS = Path("params.yaml")


@app.command()
def extract(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Unpack the raw archive (or folder) named by paths.raw into paths.images."""
    from pipeline.extract import extract as run

    config = load_config(params)
    report = run(config.paths.raw, config.paths.images)
    typer.echo(f"extracted {report.count} images from {config.paths.raw} into {config.paths.images}")
    if report.skipped:
        shown = ", ".join(report.skipped[:5]) + (", ..." if len(report.skipped) > 5 else "")
        typer.echo(f"skipped {len(report.skipped)} image files not named <class>.<n>.<ext>: {shown}")


@app.command()
def split(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Split the images per class by file index into train/validation/test and write the manifest."""
    from pipeline.split import split as run
    from pipeline.split import write_metrics

    config = load_config(params)
    result = run(config.paths.images, config.paths.split, config.split)
    write_metrics(result, config.paths.split_metrics)
    counts = {name: sum(r.split == name for r in result.rows) for name in ("train", "validation", "test")}
    typer.echo(f"split {len(result.rows)} images into {config.paths.split}: {counts}")
    typer.echo(f"rejected {len(result.rejects)} images (see {config.paths.split / 'rejects.csv'})")
    if result.converted:
        typer.echo(f"converted {len(result.converted)} images to PNG (see {config.paths.split / 'converted.csv'})")


@app.command()
def weights(backbone: str, params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Resolve BACKBONE's weights (downloading them if needed) and record their sha256 for DVC."""
    from pipeline.featurize import record_weights

    config = load_config(params)
    resolved = record_weights(backbone, config.backbone(backbone), config.paths.weights_record(backbone))
    typer.echo(f"{backbone} weights: {resolved.identifier} ({resolved.path or 'random init'}) sha256 {resolved.sha256}")


@app.command()
def featurize(backbone: str, params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Run BACKBONE's conv base once over every split and write its HDF5 feature store."""
    from pipeline.featurize import featurize as run

    config = load_config(params)
    report = run(
        backbone, config.backbone(backbone), config.featurize, config.paths.manifest, config.paths.store(backbone)
    )
    typer.echo(
        f"featurized {report.images} images with {backbone} in {report.seconds:.1f} s "
        f"({report.images_per_second:.1f} img/s), features {report.feature_shape} -> {report.path}"
    )


@app.command()
def train(backbone: str, head: str, params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Train HEAD on BACKBONE's cached features."""
    from pipeline.train import train as run

    config = load_config(params)
    seconds = run(
        config.paths.store(backbone),
        head,
        config.head(head),
        config.train.seed,
        config.paths.head_dir(backbone, head),
        config.paths.curves_dir(backbone, head),
    )
    typer.echo(f"trained {head} on {backbone} features in {seconds:.1f} s -> {config.paths.head_dir(backbone, head)}")


@app.command()
def evaluate(backbone: str, head: str, params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Score the trained HEAD on BACKBONE's test features; write metrics and the confusion matrix."""
    from pipeline.evaluate import evaluate as run

    config = load_config(params)
    result = run(
        config.paths.store(backbone),
        head,
        config.paths.head_dir(backbone, head),
        config.paths.metrics_dir(backbone, head),
    )
    typer.echo(
        f"{backbone}/{head}: test accuracy {result.accuracy:.4f}, loss {result.loss:.4f} ({result.count} images)"
    )


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files to classify.")],
    backbone: Annotated[str, typer.Option(help="The conv base whose features the head was trained on.")] = "vgg16",
    head: Annotated[str, typer.Option(help="The trained head to use.")] = "dense",
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Print each image's predicted class and its probability."""
    from pipeline.predict import predict as run

    config = load_config(params)
    predictions = run(
        images, config.paths.store(backbone), config.backbone(backbone), head, config.paths.head_dir(backbone, head)
    )
    for prediction in predictions:
        typer.echo(f"{prediction.image}\t{prediction.label}\t{prediction.probability:.4f}")


@store_app.command("info")
def store_info(store: Annotated[Path, typer.Argument(help="An HDF5 feature store, e.g. features/vgg16.h5.")]) -> None:
    """Print what made a store (backbone, weights hash, input size, versions) and its sizes."""
    from pipeline.store import describe

    typer.echo(describe(store))


def main() -> None:
    from pipeline.errors import run_with_clean_errors

    run_with_clean_errors(app)
