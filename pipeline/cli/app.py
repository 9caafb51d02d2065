"""The typer app every command registers on, its global options, and the --params option they share."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from pipeline.core.errors import DEBUG_ENV

app = typer.Typer(
    help="Precomputed feature store for small-data image classification with pretrained convnets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

ParamsOption = Annotated[Path, typer.Option("--params", "-p", help="The params file.")]
DEFAULT_PARAMS = Path("params.yaml")


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
