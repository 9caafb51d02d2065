"""`get-data`: the Dogs vs. Cats photos into data/raw with `dvc import-url`, and paths.raw pointed at them."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli.app import DEFAULT_PARAMS, ParamsOption, app


@app.command("get-data")
def get_data(
    url: Annotated[
        str | None, typer.Option(help="Where to download the zip from; default: Microsoft's PetImages zip.")
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Download Microsoft's zip of the Dogs vs. Cats photos (no account) into data/raw with `dvc import-url`.

    The .dvc file records the URL and checksum; the zip is checked, then paths.raw points at it. Run it again:
    it only checks. Offline or on a broken download: exit 2 with the steps by hand, data/raw as it was."""
    from pipeline.tools.get_data import PETIMAGES_URL
    from pipeline.tools.get_data import get_data as run

    for line in run(url or PETIMAGES_URL, params):
        typer.echo(line)
