"""`python -m pipeline method <name> <run>`: one command per method, each a stage in dvc.yaml."""

from __future__ import annotations

import typer

from pipeline.cli.app import DEFAULT_PARAMS, ParamsOption
from pipeline.core.config import load_config

method_app = typer.Typer(
    help="The book's other methods: convnets from scratch, end to end, fine-tuning, augmented features, MNIST.",
    no_args_is_help=True,
)


def echo_report(report) -> None:
    typer.echo(
        f"{report.method}@{report.run}: test accuracy {report.accuracy:.4f}, loss {report.loss:.4f}; "
        f"{report.parameters:,} parameters ({report.trainable:,} trainable), trained in {report.seconds:.1f} s"
    )


@method_app.command()
def scratch(seed: int, params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Train the book's small convnet from scratch on the split images."""
    from pipeline.methods import scratch as method

    echo_report(method.run(load_config(params), seed))


@method_app.command()
def augment(seed: int, params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Train the scratch convnet with dropout on augmented images."""
    from pipeline.methods import augment as method

    echo_report(method.run(load_config(params), seed))


@method_app.command("end-to-end")
def end_to_end(backbone: str, params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Train a dense classifier on BACKBONE's frozen conv base, end to end on augmented images."""
    from pipeline.methods import end_to_end as method

    echo_report(method.run(load_config(params), backbone))


@method_app.command()
def finetune(backbone: str, params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Fine-tune the top of BACKBONE's conv base in the end_to_end model."""
    from pipeline.methods import finetune as method

    echo_report(method.run(load_config(params), backbone))


@method_app.command("augmented-features")
def augmented_features(backbone: str, params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Write K augmented passes of the training images through BACKBONE's base to features/<backbone>.aug.h5."""
    from pipeline.methods.augmented_features import write_augmented_features

    config = load_config(params)
    path = write_augmented_features(config, backbone)
    typer.echo(
        f"{backbone}: {config.methods.augmented_features.passes} augmented passes of the training images -> {path}"
    )


@method_app.command("augmented-heads")
def augmented_heads(backbone: str, head: str, params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Train HEAD on plain + augmented training features and on plain ones; score both on the test features."""
    from pipeline.methods.augmented_heads import train_head

    result = train_head(load_config(params), backbone, head)
    typer.echo(
        f"{backbone}/{head}: test accuracy {result.augmented:.4f} with augmented features ({result.train_rows} "
        f"rows), {result.plain:.4f} without (gain {result.augmented - result.plain:+.4f})"
    )


@method_app.command()
def mnist(seed: int, params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Train the book's introductory convnet on MNIST digits."""
    from pipeline.methods import mnist as method

    echo_report(method.run(load_config(params), seed))
