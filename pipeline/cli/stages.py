"""The pipeline's stage commands (`extract`, `split`, ..., `predict`, `neighbors`): parse, load params, call
the stage, report. SIGTERM during featurize runs the same cleanup as Ctrl-C."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.app import DEFAULT_PARAMS, ParamsOption, app
from pipeline.core.config import Config, load_config
from pipeline.core.errors import forget_interrupts, note_interrupt


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C raises KeyboardInterrupt, so the same cleanup runs."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM (a scheduler, `kill`, a CI timeout) raises Terminated and Ctrl-C
    KeyboardInterrupt; each is also noted, so that one raised where Python ignores it (inside a finalizer) still
    stops the work at its next check (`raise_pending_interrupt`)."""

    def raise_terminated(signum: int, frame: object) -> None:
        err = Terminated(f"signal {signum}")
        note_interrupt(err)
        raise err

    def raise_keyboard_interrupt(signum: int, frame: object) -> None:
        err = KeyboardInterrupt()
        note_interrupt(err)
        raise err

    previous_term = signal.signal(signal.SIGTERM, raise_terminated)
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.default_int_handler:
        signal.signal(signal.SIGINT, raise_keyboard_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        if previous_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous_int)
        forget_interrupts()


def interrupt_exit_code(err: BaseException) -> int:
    """The shell's code for death by the signal: 143 for SIGTERM, 130 for SIGINT (Ctrl-C)."""
    terminated = isinstance(err, Terminated) or isinstance(err.__cause__, Terminated)
    return 128 + (signal.SIGTERM if terminated else signal.SIGINT)


@app.command()
def extract(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Unpack the raw archive (or folder) named by paths.raw into paths.images."""
    from pipeline.stages.extract import extract as run

    config = load_config(params)
    report = run(config.paths.raw, config.paths.images, config.split.layout, config.extract)
    typer.echo(
        f"extracted {report.count} images ({report.layout} layout) from {config.paths.raw} into {config.paths.images}"
    )
    if report.skipped:
        shown = ", ".join(report.skipped[:5]) + (", ..." if len(report.skipped) > 5 else "")
        typer.echo(f"skipped {len(report.skipped)} image files not named <class>.<n>.<ext>: {shown}")


@app.command()
def split(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Split the images per class (natural order or seeded shuffle) into train/validation/test; write the manifest."""
    from pipeline.stages.split import split as run
    from pipeline.stages.split import write_metrics

    config = load_config(params)
    result = run(config.paths.images, config.paths.split, config.split)
    write_metrics(result, config.paths.split_metrics, config.paths.split_counts)
    counts = {name: sum(r.split == name for r in result.rows) for name in ("train", "validation", "test")}
    typer.echo(f"split {len(result.rows)} images into {config.paths.split}: {counts}")
    typer.echo(f"rejected {len(result.rejects)} images (see {config.paths.split / 'rejects.csv'})")
    if result.converted:
        typer.echo(f"converted {len(result.converted)} images to PNG (see {config.paths.split / 'converted.csv'})")


@app.command()
def weights(backbone: str, params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Resolve BACKBONE's weights (downloading them if needed) and record their sha256 for DVC."""
    from pipeline.stages.weights import record_weights

    config = load_config(params)
    resolved = record_weights(backbone, config.backbone(backbone), config.paths.weights_record(backbone))
    typer.echo(f"{backbone} weights: {resolved.identifier} ({resolved.path or 'random init'}) sha256 {resolved.sha256}")


@app.command()
def featurize(
    backbone: str,
    shard: Annotated[
        str | None, typer.Option(help="Compute only shard i/n (e.g. 0/4); then `store merge` indexes the shards.")
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Run BACKBONE's conv base over the images it has no features for, and write its HDF5 feature store."""
    config = load_config(params)  # a bad param is refused before TensorFlow is imported

    from pipeline.stages.featurize import FeaturizeInterrupted, Shard
    from pipeline.stages.featurize import featurize as run

    try:
        with sigterm_as_interrupt():
            report = run(
                backbone,
                config.backbone(backbone),
                config.featurize,
                config.paths.manifest,
                config.paths.store(backbone),
                Shard.parse(shard) if shard else None,
            )
    except FeaturizeInterrupted as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(interrupt_exit_code(err)) from None
    echo_featurize_report(backbone, report)
    if report.indexed:
        write_summary(config, backbone)


def write_summary(config: Config, backbone: str) -> None:
    """metrics/<backbone>/store.json: what the report shows of the store, without opening it."""
    from pipeline.store.summary import write_store_summary

    path = config.paths.store_summary(backbone)
    write_store_summary(config.paths.store(backbone), config.paths.weights_record(backbone), path)


def echo_featurize_report(backbone: str, report) -> None:
    for damaged in report.damaged:
        typer.echo(f"{backbone}: damaged chunk {damaged.path.name} ({damaged.problem}): deleted, its rows recomputed")
    for note in report.notes:
        typer.echo(f"note: {note}", err=True)
    speed = f" ({report.images_per_second:.1f} img/s)" if report.computed else ""
    typer.echo(
        f"{backbone}: computed {report.computed} of {report.images} images in {report.seconds:.1f} s{speed}, "
        f"the rest from cached chunks; features {report.feature_shape}"
        + (f" -> {report.path}" if report.indexed else f" (shard: run `store merge {backbone}` when all are done)")
    )


@app.command()
def train(backbone: str, head: str, params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Train HEAD on BACKBONE's cached features."""
    from pipeline.stages.train import train as run

    config = load_config(params)
    drop_list = config.paths.drop_list(backbone) if config.audit.drop.types else None  # audit.drop: opt-in
    seconds = run(
        config.paths.store(backbone),
        head,
        config.head(head),
        config.train.seed,
        config.paths.head_dir(backbone, head),
        config.paths.curves_dir(backbone, head),
        drop_list,
    )
    typer.echo(f"trained {head} on {backbone} features in {seconds:.1f} s -> {config.paths.head_dir(backbone, head)}")
    if drop_list is not None:
        typer.echo(f"  without the training rows in {drop_list} (audit.drop.types {list(config.audit.drop.types)})")


@app.command()
def evaluate(backbone: str, head: str, params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Score the trained HEAD on BACKBONE's test features: metrics (per class too), confusion matrix, mistakes."""
    import numpy as np

    from pipeline.stages.evaluate import evaluate as run

    config = load_config(params)
    result = run(
        config.paths.store(backbone),
        head,
        config.paths.head_dir(backbone, head),
        config.paths.metrics_dir(backbone, head),
        split_dir=config.paths.split,
    )
    typer.echo(
        f"{backbone}/{head}: test accuracy {result.accuracy:.4f}, loss {result.loss:.4f} ({result.count} images)"
    )
    typer.echo(result.report.rstrip())
    wrong = int(result.count - np.trace(result.confusion))
    out = config.paths.metrics_dir(backbone, head)
    typer.echo(f"misclassified {wrong} (see {out / 'misclassified.csv'} and {out / 'plots' / 'misclassified.png'})")


@app.command()
def predict(
    images: Annotated[list[str], typer.Argument(help="Image files, folders (searched recursively) or glob patterns.")],
    backbone: Annotated[
        str | None, typer.Option(help="The conv base; default: the first of featurize.backbones with a store.")
    ] = None,
    head: Annotated[str | None, typer.Option(help="The head; default: the first of train.heads trained.")] = None,
    output_format: Annotated[str, typer.Option("--format", "-f", help="table, json or csv.")] = "table",
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Classes shown per image, most probable first.")] = 1,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Classify images with a trained head. Images the image gate rejects are listed with the reason, and the
    exit status is then 1."""
    from pipeline.stages.predict import check_format, default_choice, render
    from pipeline.stages.predict import predict as run

    check_format(output_format)
    config = load_config(params)
    backbone = backbone or default_choice(
        "backbone", list(config.featurize.backbones), lambda b: config.paths.store(b).is_file()
    )
    head = head or default_choice(
        "head", list(config.train.heads), lambda h: config.paths.head_dir(backbone, h).is_dir()
    )
    predictions = run(
        images,
        config.paths.store(backbone),
        config.backbone(backbone),
        head,
        config.paths.head_dir(backbone, head),
        top_k=top_k,
        max_pixels=config.split.max_pixels,
    )
    typer.echo(render(predictions, output_format, top_k))
    failed = [p for p in predictions if not p.ok]
    if failed:
        typer.echo(f"{len(failed)} of {len(predictions)} image(s) could not be classified (see error)", err=True)
        raise typer.Exit(1)


@app.command()
def neighbors(
    image: Annotated[Path, typer.Argument(help="An image file, in the store or not.")],
    k: Annotated[int, typer.Option("-k", help="How many neighbors.")] = 8,
    backbone: Annotated[str | None, typer.Option(help="Whose store; default the first of featurize.backbones.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="The contact sheet PNG.")] = Path("neighbors.png"),
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """The K images of a store nearest to IMAGE (cosine distance of pooled features): a table and a contact sheet.

    An image the store does not hold is featurized now with the store's recipe.
    """
    from pipeline.stages.neighbors import neighbors as run
    from pipeline.stages.neighbors import table, write_sheet

    config = load_config(params)
    backbone = backbone or config.featurize.backbones[0]
    store = config.paths.store(backbone)
    result = run(image, store, config.paths.split, config.backbone(backbone), k, config.audit.pooling)
    source = "its row in the store" if result.in_store else "featurized now with the store's recipe"
    typer.echo(f"{image} ({source}): {len(result.neighbors)} nearest in {store}")
    for line in table(result):
        typer.echo(line)
    typer.echo(f"contact sheet: {write_sheet(result, config.paths.split, out)}")


@app.command()
def report(
    dvc_template: Annotated[
        Path | None,
        typer.Option(help="Instead of the report, write the offline HTML template for `dvc plots show` here."),
    ] = None,
    experiments: Annotated[
        bool, typer.Option(help="Add `dvc exp show`'s table of experiments (outside `dvc repro` only).")
    ] = False,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Write paths.report/index.html: every result on one page that works offline (open it in a browser)."""
    if dvc_template is not None:
        from pipeline.report.bundle import write_dvc_template

        typer.echo(f"wrote {write_dvc_template(dvc_template)} (set it as plots.html_template in .dvc/config)")
        return
    from pipeline.report.build import build_report
    from pipeline.report.experiments import dvc_experiments

    config = load_config(params)
    title = f"Results: {config.paths.raw.name}"  # the data's name: the same page in every clone of the project
    summary = build_report(config, config.paths.report, title, dvc_experiments() if experiments else None)
    typer.echo(
        f"report: {summary.index} ({summary.results} results, {summary.charts} charts, {summary.images} images); "
        f"open file://{summary.index.resolve()}"
    )
