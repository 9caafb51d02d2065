"""The pipeline's own errors: bad params, bad input, missing outputs. A leaf module (standard library only).

Every error a user can cause and fix is a PipelineError; the CLI prints those as one line (`error: ...`) and
exits with the error's `exit_code` (2). Anything else is a bug and shows its full traceback; so does every
error with `--debug` or PIPELINE_DEBUG=1. Subclasses keep the built-in base they had (ValueError, ...), so
`except ValueError` callers still catch them.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

DEBUG_ENV = "PIPELINE_DEBUG"


class PipelineError(Exception):
    """An error the user can fix (params, input files, missing stage outputs); its message says how."""

    exit_code = 2


class ConfigError(PipelineError, ValueError):
    """params.yaml is missing, malformed, or holds a value that is not allowed (the message names the key)."""


class InputError(PipelineError, ValueError):
    """An argument or input file is not usable (unknown backbone or head, bad shard, unreadable model)."""


class MissingInputError(PipelineError, FileNotFoundError):
    """A file the command needs does not exist (an image, a trained head, a stage output)."""


class ExtractError(PipelineError, ValueError):
    """The raw input is missing, not an archive we understand, or holds an unsafe entry."""


class SplitError(PipelineError, ValueError):
    """The images cannot be split as params ask (too few, bad names)."""


class ManifestError(SplitError):
    """A manifest is missing or malformed (a SplitError: re-running the split stage fixes it)."""


class StoreError(PipelineError, ValueError):
    """A feature store is missing, incomplete or does not match what the caller expects."""


class ChunkError(StoreError):
    """A chunk file is unreadable, damaged, or does not hold the rows its name and the index say it does."""

    def __init__(self, path: os.PathLike | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@contextmanager
def chunk_read_errors(path: os.PathLike | str) -> Iterator[None]:
    """Inside the block, a file that does not open or read (OSError, a missing key, a bad value) is a ChunkError
    naming `path`, `unreadable or damaged (...)`; a ChunkError raised inside passes as it is."""
    try:
        yield
    except ChunkError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise ChunkError(path, f"unreadable or damaged ({type(err).__name__}: {err})") from err


class WeightsUnavailableError(PipelineError, RuntimeError):
    """Pretrained weights cannot be found locally nor downloaded; the message says where to put them."""


class IdxError(PipelineError, ValueError):
    """An MNIST IDX file is missing, truncated or not IDX."""


class DownloadError(PipelineError, RuntimeError):
    """The raw data cannot be downloaded, or the download is broken; the message gives the steps by hand."""


_pending_interrupts: list[BaseException] = []


def note_interrupt(err: BaseException) -> None:
    """Remember the exception a signal handler is about to raise. Python ignores an exception raised inside a
    finalizer (`__del__`, a weakref callback), and a signal can land there: the work then checks in again with
    `raise_pending_interrupt`."""
    _pending_interrupts.append(err)


def raise_pending_interrupt() -> None:
    """Raise the interrupt a signal handler raised, if it has not stopped the work yet (see `note_interrupt`)."""
    if _pending_interrupts:
        err = _pending_interrupts[-1]
        _pending_interrupts.clear()
        raise err


def forget_interrupts() -> None:
    _pending_interrupts.clear()


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip() not in ("", "0", "false", "no")


def run_with_clean_errors(main: Callable[[], object]) -> None:
    """Run the CLI: a PipelineError becomes `error: <message>` and its exit code, unless debugging."""
    try:
        main()
    except PipelineError as err:
        if debug_enabled():
            traceback.print_exc()
        else:
            print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
