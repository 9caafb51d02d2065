"""Known failures print one clear line on stderr and exit 2, instead of a traceback."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer


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
