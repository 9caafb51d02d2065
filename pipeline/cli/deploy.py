"""`export` (one portable model of a backbone x head, checked against `predict`) and `serve` (an HTTP service
for it). FastAPI is imported only by `serve`, so the other commands never need the `serve` extra."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipeline.cli.app import DEFAULT_PARAMS, ParamsOption, app
from pipeline.core.config import SPLITS, load_config
from pipeline.core.errors import InputError

if TYPE_CHECKING:
    from pipeline.tools.export_check import Reference


@app.command()
def export(
    backbone: str,
    head: str,
    out: Annotated[Path | None, typer.Option(help="The folder to write; default: paths.exports/BACKBONE/HEAD.")] = None,
    tflite: Annotated[
        bool | None, typer.Option(help="Also TFLite, float32 and dynamic-range quantized; default: deploy.formats.")
    ] = None,
    onnx: Annotated[
        bool | None, typer.Option(help="Also ONNX (pip install -e '.[onnx]'); default: deploy.formats.")
    ] = None,
    check: Annotated[
        bool, typer.Option(help="Compare every format with `predict` on a split: accuracy, agreement, speed.")
    ] = True,
    split: Annotated[
        str | None, typer.Option(help="The split the check classifies; default: deploy.check_split.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Check only the split's first N images (0: all); default: deploy.check_limit.")
    ] = None,
    metrics: Annotated[
        Path | None, typer.Option(help="Also write the check per format here, for `dvc metrics show`.")
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Write BACKBONE x HEAD as one model that takes raw uint8 images of any size (the store's resize and
    preprocessing inside) and returns class probabilities: model.keras, model.json, and TFLite/ONNX when asked."""
    config = load_config(params)
    deploy = config.deploy
    split = deploy.check_split if split is None else split
    if split not in SPLITS:
        raise InputError(f"--split must be one of {list(SPLITS)}. Received: split={split!r}")
    if metrics and not check:
        raise InputError(f"--metrics {metrics} writes the check's figures: drop --no-check, or drop --metrics.")
    from pipeline.deploy.stage import export as run  # TensorFlow: after the arguments are known to be good
    from pipeline.tools.export_check import predict_reference

    tflite = "tflite" in deploy.formats if tflite is None else tflite
    onnx = "onnx" in deploy.formats if onnx is None else onnx
    out = out or config.paths.export_dir(backbone, head)
    store, head_dir = config.paths.store(backbone), config.paths.head_dir(backbone, head)
    metadata = run(store, config.backbone(backbone), head, head_dir, out, tflite, onnx, config.split.max_pixels)
    for name, file in metadata["files"].items():
        typer.echo(f"{name:<21} {out / file['file']}  ({file['bytes'] / 1e6:.2f} MB)")
    typer.echo(f"{'metadata':<21} {out / 'model.json'}  (classes {metadata['classes']}, recipe, image gate)")
    if check:
        limit = deploy.check_limit if limit is None else limit
        check_export(out, predict_reference(config, backbone, head, split, limit), split, metrics)


def check_export(out: Path, reference: Reference, split: str, metrics: Path | None) -> None:
    """Every exported format on predict's files, compared with its probabilities; exit 1 when one is outside."""
    from pipeline.deploy.stage import check, render_checks, write_check_metrics

    results = check(out, reference.paths, reference.labels, reference.probabilities, split)
    if metrics:
        write_check_metrics(metrics, results, reference.accuracy, split)
    typer.echo(f"\ncheck on the {split} split ({len(reference.paths)} images, one image a call; {out / 'check.json'}):")
    typer.echo(render_checks(results, reference.accuracy))
    if not all(r.ok for r in results):
        typer.echo("error: a format's probabilities differ from predict's by more than its tolerance", err=True)
        raise typer.Exit(1)


@app.command()
def serve(
    model_dir: Annotated[Path, typer.Argument(help="A folder written by `export`.")],
    host: Annotated[str, typer.Option(help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="The port to listen on.")] = 8000,
    max_bytes: Annotated[int, typer.Option(help="Uploads larger than this are refused (413).")] = 10_000_000,
    max_batch: Annotated[
        int, typer.Option(help="Same-size images run together at most (1: no batching, the faster on 2 cores).")
    ] = 1,
    batch_wait_ms: Annotated[float, typer.Option(help="How long a request waits for others to batch with.")] = 2.0,
) -> None:
    """Serve an exported model over HTTP: POST /predict (an image, multipart or raw bytes), GET /health,
    GET /metadata. Every upload goes through the split's image gate."""
    from pipeline.tools.serve import ServeSettings, run_server

    run_server(model_dir, ServeSettings(host, port, max_bytes, max_batch, batch_wait_ms))


@app.command("serve-bench")
def serve_bench(
    model_dir: Annotated[Path, typer.Argument(help="A folder written by `export`.")],
    images: Annotated[list[Path], typer.Argument(help="Image files to send (cycled through).")],
    clients: Annotated[str, typer.Option(help="Numbers of concurrent clients, comma-separated.")] = "1,8,32",
    requests: Annotated[int, typer.Option(help="Requests per number of clients.")] = 64,
    max_seconds: Annotated[float, typer.Option(help="Stop each level after this long.")] = 60.0,
    max_batch: Annotated[int, typer.Option(help="The server's --max-batch (1: no batching).")] = 1,
) -> None:
    """Start `serve` on 127.0.0.1 (a free port), send REQUESTS uploads at each number of concurrent clients,
    and print requests/s and p50/p99 latency; the server stops at the end."""
    from pipeline.tools.serve_bench import bench_row, free_port, render_bench, start_server, stop_server

    uploads = [(path.name, path.read_bytes()) for path in images]
    port = free_port()
    server = start_server(model_dir, port, "--max-batch", str(max_batch))
    try:
        rows = [bench_row(port, uploads, int(n), requests, max_seconds) for n in clients.split(",")]
    finally:
        stop_server(server)
    typer.echo(f"{model_dir} on 127.0.0.1, --max-batch {max_batch}, {len(uploads)} distinct image(s):")
    typer.echo(render_bench(rows))
