"""`python -m pipeline store ...`: merge shards, verify, describe and export feature stores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.app import DEFAULT_PARAMS, ParamsOption
from pipeline.cli.stages import echo_featurize_report, write_summary
from pipeline.core.config import load_config

store_app = typer.Typer(help="Inspect, check and export feature stores.", no_args_is_help=True)


@store_app.command("merge")
def store_merge(backbone: str, params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Index the chunks that `featurize --shard i/n` runs computed into BACKBONE's store."""
    from pipeline.stages.featurize import merge

    config = load_config(params)
    report = merge(
        backbone, config.backbone(backbone), config.featurize, config.paths.manifest, config.paths.store(backbone)
    )
    echo_featurize_report(backbone, report)
    write_summary(config, backbone)


@store_app.command("verify")
def store_verify(
    store: Annotated[Path | None, typer.Argument(help="A store; default: every backbone's store in params.")] = None,
    manifest: Annotated[Path | None, typer.Option(help="Manifest to check ids against; default from params.")] = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Check schema, ids against the manifest, presence and finiteness of rows, and chunk checksums."""
    from pipeline.store.verify import verify

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
    from pipeline.store.index import describe

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
