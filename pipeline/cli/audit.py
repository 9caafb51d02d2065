"""`python -m pipeline audit ...`: the audit stage and its benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.app import DEFAULT_PARAMS, ParamsOption
from pipeline.core.config import load_config

audit_app = typer.Typer(
    help="Audit the data from its cached features: label issues, near duplicates, leakage, outliers.",
    no_args_is_help=True,
)


@audit_app.command("run")
def run(backbone: str, params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Audit BACKBONE's feature store; write audit/<backbone>/ (issues.csv, counts.json, plots/, drop.csv)."""
    from pipeline.audit.stage import audit

    config = load_config(params)
    out_dir = config.paths.audit_dir(backbone)
    report = audit(config.paths.store(backbone), config.paths.split, config.audit, out_dir)
    counts = ", ".join(f"{kind} {count}" for kind, count in report.counts.items())
    typer.echo(f"{backbone}: audited {report.rows} images in {report.seconds['total']:.1f} s: {counts}")
    steps = ", ".join(f"{step} {value:.1f}" for step, value in report.seconds.items() if step != "total")
    typer.echo(f"  seconds: {steps}")
    typer.echo(f"  issues in {out_dir / 'issues.csv'}; {report.dropped} training rows in {out_dir / 'drop.csv'}")


@audit_app.command("bench")
def bench(
    store: Annotated[Path, typer.Argument(help="A feature store, e.g. features/efficientnet_lite0.h5.")],
    rows: Annotated[
        list[int],
        typer.Option(
            help="Row counts to time (repeat the option); rows past the store's are its rows again with small noise."
        ),
    ] = [4000, 25000],  # noqa: B006
    images: Annotated[
        Path | None,
        typer.Option(
            help="The split folder the store's ids are under (default: paths.split); image checks and sheets."
        ),
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Time the audit stage (load, out-of-fold head, cleanlab, neighbors, flags, image checks, sheets, map) at
    several sizes, each in a fresh process with its peak memory."""
    from pipeline.tools.audit_bench import bench as run_bench

    config = load_config(params) if params.is_file() else None
    if images is None and config is not None and config.paths.split.is_dir():
        images = config.paths.split
    for line in run_bench(store, rows, config.audit if config else None, images):
        typer.echo(line)
