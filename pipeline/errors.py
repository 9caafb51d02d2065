"""Known failures print one clear line on stderr and exit 2, instead of a traceback."""

from __future__ import annotations

import sys

import typer


def known_errors() -> tuple[type[BaseException], ...]:
    from pipeline.backbones import WeightsUnavailableError
    from pipeline.config import ConfigError
    from pipeline.extract import ExtractError
    from pipeline.split import SplitError
    from pipeline.store import StoreError

    return (ConfigError, ExtractError, SplitError, StoreError, WeightsUnavailableError, FileNotFoundError, ValueError)


def run_with_clean_errors(app: typer.Typer) -> None:
    try:
        app(standalone_mode=True)
    except SystemExit:
        raise
    except known_errors() as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
