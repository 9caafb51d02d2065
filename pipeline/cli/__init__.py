"""The interface: the typer app behind `python -m pipeline` and `convnet-store`, one module per group of
commands. May import every layer below; nothing below imports it."""

from __future__ import annotations

from pipeline.cli import data, deploy, stages, tools  # noqa: F401  (register their commands on the app)
from pipeline.cli.app import app
from pipeline.cli.audit import audit_app
from pipeline.cli.methods import method_app
from pipeline.cli.store import store_app
from pipeline.cli.visualize import visualize_app
from pipeline.core.errors import run_with_clean_errors

app.add_typer(store_app, name="store")
app.add_typer(method_app, name="method")
app.add_typer(visualize_app, name="visualize")
app.add_typer(audit_app, name="audit")

__all__ = ["app", "main"]


def main() -> None:
    """`python -m pipeline`: known errors as one line and exit 2; anything else (or --debug) with its traceback.
    TensorFlow's startup lines are filtered from stderr unless --verbose (or PIPELINE_VERBOSE=1)."""
    import sys

    from pipeline.cli.quiet import silence_tensorflow_noise

    silence_tensorflow_noise(sys.argv[1:])
    run_with_clean_errors(app)
