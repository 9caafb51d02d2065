"""The command line: `python -m pipeline <command>`. Each command parses, loads, calls a stage, reports."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from pipeline.audit.cli import audit_app
from pipeline.config import load_config
from pipeline.errors import DEBUG_ENV, run_with_clean_errors
from pipeline.methods.cli import method_app
from pipeline.visualize.cli import visualize_app

app = typer.Typer(
    help="Precomputed feature store for small-data image classification with pretrained convnets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
store_app = typer.Typer(help="Inspect, check and export feature stores.", no_args_is_help=True)
app.add_typer(store_app, name="store")
app.add_typer(method_app, name="method")
app.add_typer(visualize_app, name="visualize")
app.add_typer(audit_app, name="audit")


@app.callback()
def options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback of every error (or set PIPELINE_DEBUG=1).")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", help="Keep TensorFlow's startup and absl log lines on stderr (or set PIPELINE_VERBOSE=1)."
        ),
    ] = False,
) -> None:
    """Precomputed feature store for small-data image classification with pretrained convnets."""
    if debug:
        os.environ[DEBUG_ENV] = "1"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C raises KeyboardInterrupt, so the same cleanup runs."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM (a scheduler, `kill`, a CI timeout) raises Terminated."""

    def raise_terminated(signum: int, frame: object) -> None:
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupt_exit_code(err: BaseException) -> int:
    """The shell's code for death by the signal: 143 for SIGTERM, 130 for SIGINT (Ctrl-C)."""
    terminated = isinstance(err, Terminated) or isinstance(err.__cause__, Terminated)
    return 128 + (signal.SIGTERM if terminated else signal.SIGINT)


ParamsOption = Annotated[Path, typer.Option("--params", "-p", help="The params file.")]
DEFAULT_PARAMS = Path("params.yaml")


@app.command()
def extract(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Unpack the raw archive (or folder) named by paths.raw into paths.images."""
    from pipeline.extract import extract as run

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
    from pipeline.weights import record_weights

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
    from pipeline.featurize import FeaturizeInterrupted, Shard
    from pipeline.featurize import featurize as run

    config = load_config(params)
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
    from pipeline.train import train as run

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

    from pipeline.evaluate import evaluate as run

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
    from pipeline.predict import check_format, default_choice, render
    from pipeline.predict import predict as run

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
    from pipeline.neighbors import neighbors as run
    from pipeline.neighbors import table, write_sheet

    config = load_config(params)
    backbone = backbone or config.featurize.backbones[0]
    store = config.paths.store(backbone)
    result = run(image, store, config.paths.split, config.backbone(backbone), k, config.audit.pooling)
    source = "its row in the store" if result.in_store else "featurized now with the store's recipe"
    typer.echo(f"{image} ({source}): {len(result.neighbors)} nearest in {store}")
    for line in table(result):
        typer.echo(line)
    typer.echo(f"contact sheet: {write_sheet(result, config.paths.split, out)}")


@store_app.command("merge")
def store_merge(backbone: str, params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Index the chunks that `featurize --shard i/n` runs computed into BACKBONE's store."""
    from pipeline.featurize import merge

    config = load_config(params)
    report = merge(
        backbone, config.backbone(backbone), config.featurize, config.paths.manifest, config.paths.store(backbone)
    )
    echo_featurize_report(backbone, report)


@store_app.command("verify")
def store_verify(
    store: Annotated[Path | None, typer.Argument(help="A store; default: every backbone's store in params.")] = None,
    manifest: Annotated[Path | None, typer.Option(help="Manifest to check ids against; default from params.")] = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Check schema, ids against the manifest, presence and finiteness of rows, and chunk checksums."""
    from pipeline.verify import verify

    config = load_config(params)
    stores = [store] if store else [config.paths.store(b) for b in config.featurize.backbones]
    manifest = manifest or config.paths.manifest
    failed = False
    for path in stores:
        problems = verify(path, manifest if manifest.is_file() else None)
        typer.echo(f"{path}: " + ("OK" if not problems else f"{len(problems)} problem(s)"))
        for problem in problems:
            typer.echo(f"  - {problem}")
        failed = failed or bool(problems)
    if failed:
        raise typer.Exit(1)


@store_app.command("info")
def store_info(store: Annotated[Path, typer.Argument(help="An HDF5 feature store, e.g. features/vgg16.h5.")]) -> None:
    """Print what made a store (backbone, weights hash, input size, versions) and its sizes."""
    from pipeline.store import describe

    typer.echo(describe(store))


@store_app.command("export")
def store_export(
    store: Annotated[Path, typer.Argument(help="An HDF5 feature store, e.g. features/efficientnet_lite0.h5.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The folder to write into.")] = Path("export"),
    output_format: Annotated[
        list[str] | None, typer.Option("--format", "-f", help="npy and/or parquet (repeat the option); default both.")
    ] = None,
    pooling: Annotated[str, typer.Option(help="none (as stored), auto, avg, max or flatten.")] = "none",
) -> None:
    """Write every split of STORE as .npy arrays and/or parquet (id, label, class, features) for other tools."""
    from pipeline.api import EXPORT_FORMATS, export

    written = export(store, out, tuple(output_format or EXPORT_FORMATS), pooling)
    for path in written:
        typer.echo(str(path))


@app.command()
def bench(
    backbone: Annotated[str, typer.Option(help="Backbone from the registry.")] = "vgg16",
    source: Annotated[
        Path | None, typer.Option(help="Images: a Kaggle zip, train.zip or folder; default paths.raw.")
    ] = None,
    per_class: Annotated[int, typer.Option(help="Distinct images per class taken from the source.")] = 200,
    repeat: Annotated[int, typer.Option(help="Copies of each image under new names (e.g. 25,000 for memory).")] = 1,
    size: Annotated[int, typer.Option(help="Input size in pixels.")] = 150,
    precision: Annotated[str, typer.Option(help="featurize precision: auto, float32, bfloat16, float16.")] = "auto",
    seed_images: Annotated[int, typer.Option(help="Images for the seed-style loop (0 skips it).")] = 200,
    batch_size: Annotated[int, typer.Option(help="featurize batch size.")] = 32,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Time the seed's extraction loop against featurize on the same images; print img/s, GFLOP/s, memory."""
    from pipeline.bench import bench as run

    raw = source or load_config(params).paths.raw
    for line in run(backbone, raw, per_class, size, precision, seed_images, repeat, batch_size):
        typer.echo(line)


@app.command()
def doctor(
    pending: Annotated[
        bool, typer.Option("--pending", help="After `dvc repro --keep-going`: list the stages that did not run.")
    ] = False,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Check that a run can succeed here: raw data, each backbone's weights, disk, GPU and bfloat16.

    Exit 0: ready; 1: some backbones' stages cannot run (the rest can); 2: nothing can run."""
    from pipeline.doctor import diagnose, exit_code, format_findings, pending_report, stale_stages, verdict

    config = load_config(params)
    if pending:
        stages = stale_stages()
        for line in pending_report(config, stages):
            typer.echo(line, err=True)
        raise typer.Exit(1 if stages else 0)
    findings = diagnose(config)
    typer.echo("doctor: can the pipeline run here?")
    for line in format_findings(findings):
        typer.echo(line)
    typer.echo(f"doctor: {verdict(findings)}")
    raise typer.Exit(exit_code(findings))


@app.command()
def params(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Check the params file against the schema, then print every param, its default and meaning (markdown)."""
    from pipeline.config import markdown_table

    if params.is_file():
        load_config(params)
        typer.echo(f"{params}: valid\n")
    typer.echo(markdown_table())


@app.command("bench-train")
def bench_train(
    source: Annotated[
        Path | None, typer.Option(help="Images: a Kaggle zip, train.zip or folder; default paths.raw.")
    ] = None,
    per_class: Annotated[int, typer.Option(help="Training images per class, decoded into memory once.")] = 200,
    size: Annotated[int, typer.Option(help="Input size in pixels.")] = 150,
    steps: Annotated[int, typer.Option(help="Timed training steps per round.")] = 10,
    rounds: Annotated[int, typer.Option(help="Interleaved rounds over the rows; the median counts.")] = 3,
    quick: Annotated[bool, typer.Option(help="Only before and after (skip the bfloat16 and XLA rows).")] = False,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Time training of the scratch and augment convnets, before and after; print img/s and GFLOP/s."""
    from pipeline.train_bench import VARIANTS, bench_training

    raw = source or load_config(params).paths.raw
    for line in bench_training(raw, per_class, size, steps, rounds, VARIANTS[:2] if quick else VARIANTS):
        typer.echo(line)


def main() -> None:
    """`python -m pipeline`: known errors as one line and exit 2; anything else (or --debug) with its traceback.
    TensorFlow's startup lines are filtered from stderr unless --verbose (or PIPELINE_VERBOSE=1)."""
    import sys

    from pipeline.quiet import silence_tensorflow_noise

    silence_tensorflow_noise(sys.argv[1:])
    run_with_clean_errors(app)
