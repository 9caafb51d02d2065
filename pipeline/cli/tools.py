"""The tools around the pipeline: `doctor` (can a run succeed here?), `params` (the schema as a table) and the
benches (`bench`, `bench-train`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.app import DEFAULT_PARAMS, ParamsOption, app
from pipeline.core.config import load_config


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
    seed_images: Annotated[int, typer.Option(help="Images for the book-style loop (0 skips it).")] = 200,
    batch_size: Annotated[int, typer.Option(help="featurize batch size.")] = 32,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Time the book's extraction loop against featurize on the same images; print img/s, GFLOP/s, memory."""
    from pipeline.tools.bench import bench as run

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
    from pipeline.tools.doctor import diagnose, exit_code, format_findings, pending_report, stale_stages, verdict

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
    from pipeline.core.params_table import markdown_table

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
    from pipeline.tools.train_bench import VARIANTS, bench_training

    raw = source or load_config(params).paths.raw
    for line in bench_training(raw, per_class, size, steps, rounds, VARIANTS[:2] if quick else VARIANTS):
        typer.echo(line)


@app.command("bench-heads")
def bench_heads(
    backbone: Annotated[str, typer.Option(help="Backbone whose store the heads read.")] = "efficientnet_lite0",
    head: Annotated[str, typer.Option(help="The head trained and evaluated by hand (b).")] = "logreg",
    setting: Annotated[
        str | None, typer.Option("--set", help="The param `dvc exp run -S` changes (a); default heads.logreg.C=<C>.")
    ] = None,
    c: Annotated[float, typer.Option("--C", help="The plain script's C (c), and (a)'s by default.")] = 0.1,
    repeat: Annotated[
        int, typer.Option(help="Rows per image: >1 benches a scratch copy whose split lists each image that often.")
    ] = 1,
) -> None:
    """Time a head swap three ways on this project's store: `dvc exp run -S`, train + evaluate by hand, and a
    plain numpy/scikit-learn script on `store export`'s .npy; print seconds, peak RSS and the ratios."""
    from pipeline.tools.heads_bench import bench_heads as run

    for line in run(Path.cwd(), backbone, head, setting or f"heads.logreg.C={c}", c, repeat):
        typer.echo(line)
