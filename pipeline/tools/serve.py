"""`python -m pipeline serve DIR`: an exported model (DIR/model.keras, DIR/model.json) over HTTP.

POST /predict takes one image, as multipart form data (any field name) or as the raw request body, and
answers its top-k classes. Every upload passes the split stage's image gate (pipeline/images/gate.py) at
the export's max_pixels: an empty body, a non-image, a truncated or corrupt file and a decompression bomb are
4xx answers with the gate's reason, as is a body over --max-bytes (checked while it streams in).
With --max-batch N > 1, concurrent requests whose images have one size run as one batch (micro-batching); the
model runs in one thread either way, so the event loop keeps accepting while it computes.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from starlette.formparsers import MultiPartParser

from pipeline.deploy.formats import FILES, decode, keras_runner
from pipeline.deploy.stage import read_metadata
from pipeline.images.gate import check_image, pillow_limits

SUFFIXES = {"image/jpeg": ".jpg", "image/jpg": ".jpg", "image/png": ".png"}  # raw bodies: the gate's extension
STATUS = {"empty": 400, "not an image": 415, "too large": 413}  # any other rejection (truncated, ...): 422


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    max_bytes: int = 10_000_000
    max_batch: int = 1
    batch_wait_ms: float = 2.0


class Rejected(HTTPException):
    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(status, {"error": reason, "detail": detail})


class Batcher:
    """Queues images; one task takes what arrived within batch_wait_ms (at most max_batch), groups it by image
    size and runs each group as one call of the model in the model's thread."""

    def __init__(self, run, max_batch: int, wait_s: float) -> None:
        self.run, self.max_batch, self.wait_s = run, max_batch, wait_s
        self.queue: asyncio.Queue = asyncio.Queue()
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="model")
        self.batches = 0

    async def classify(self, image: np.ndarray) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((image, future))
        return await future

    async def collect(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        batch = [await self.queue.get()]
        deadline = asyncio.get_running_loop().time() + self.wait_s
        while len(batch) < self.max_batch:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0 and self.queue.empty():
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), max(left, 0)))
            except TimeoutError:
                break
        return batch

    async def serve_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self.collect()
            groups: dict[tuple[int, ...], list] = {}
            for image, future in batch:
                groups.setdefault(image.shape, []).append((image, future))
            for group in groups.values():
                self.batches += 1
                try:
                    rows = await loop.run_in_executor(self.thread, self.run, np.stack([i for i, _ in group]))
                except Exception as err:  # noqa: BLE001 - handed to each waiting request
                    for _, future in group:
                        future.set_exception(err)
                    continue
                for (_, future), row in zip(group, rows, strict=True):
                    if not future.done():
                        future.set_result(row)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused (413) as soon as it passes max_bytes, or before if Content-Length says so."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise Rejected(413, "too large", f"the upload has {int(declared):,} bytes; the limit is {max_bytes:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise Rejected(413, "too large", f"the upload passed the limit of {max_bytes:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def uploaded_image(request: Request, max_bytes: int) -> tuple[bytes, str]:
    """The uploaded file's bytes and the extension the gate judges it by (its file name's, or its type's)."""
    body = await read_body(request, max_bytes)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "multipart/form-data":
        return body, SUFFIXES.get(content_type, "")

    async def stream():
        yield body

    try:
        form = await MultiPartParser(request.headers, stream()).parse()
    except Exception as err:  # noqa: BLE001 - any malformed form is the client's error
        raise Rejected(400, "bad form", f"the multipart body could not be parsed ({err})") from err
    files = [value for _, value in form.multi_items() if hasattr(value, "filename")]
    if len(files) != 1:
        raise Rejected(400, "bad form", f"send exactly one file in the form; it holds {len(files)}")
    return await files[0].read(), Path(files[0].filename or "").suffix


def gated_pixels(data: bytes, suffix: str, max_pixels: int) -> np.ndarray:
    """The split stage's gate, then the decode featurize uses; a rejection is a 4xx with the gate's reason."""
    checked = check_image(data, suffix, max_pixels)
    if checked.action == "reject":
        reason = checked.reasons[0]
        raise Rejected(STATUS.get(reason, 422), reason, checked.detail)
    try:
        return decode(checked.data)
    except Exception as err:  # noqa: BLE001 - TensorFlow's decoder refusing what Pillow accepted
        raise Rejected(422, "cannot decode", f"{type(err).__name__}: {err}") from err


def create_app(model_dir: Path, settings: ServeSettings) -> FastAPI:
    """The FastAPI app for one export folder; the model loads (and is warmed up) before the first request."""
    metadata = read_metadata(model_dir)
    classes, max_pixels = metadata["classes"], int(metadata["image_gate"]["max_pixels"])
    state: dict = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        run = keras_runner(model_dir / FILES["keras"])
        size = int(metadata["recipe"]["input_size"])
        run(np.zeros((1, size, size, 3), np.uint8))  # trace the graph before the first request
        batcher = Batcher(run, settings.max_batch, settings.batch_wait_ms / 1000)
        state["batcher"] = batcher
        with pillow_limits(max_pixels):
            task = asyncio.create_task(batcher.serve_forever())
            yield
            task.cancel()
        batcher.thread.shutdown(wait=False)

    app = FastAPI(title=f"{metadata['name']} classifier", lifespan=lifespan)

    @app.exception_handler(Rejected)
    async def rejected(request: Request, err: Rejected) -> JSONResponse:
        return JSONResponse(err.detail, status_code=err.status_code)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": metadata["name"], "batches": state["batcher"].batches}

    @app.get("/metadata")
    async def model_metadata() -> dict:
        served = {"max_bytes": settings.max_bytes, "max_batch": settings.max_batch}
        return {**metadata, "server": served}

    @app.post("/predict")
    async def predict(request: Request, top_k: int = Query(1, ge=1)) -> dict:
        data, suffix = await uploaded_image(request, settings.max_bytes)
        pixels = await asyncio.to_thread(gated_pixels, data, suffix, max_pixels)
        row = await state["batcher"].classify(pixels)
        order = np.argsort(-row, kind="stable")[: min(top_k, len(classes))]
        top = [{"class": classes[int(i)], "probability": float(row[i])} for i in order]
        return {"class": top[0]["class"], "probability": top[0]["probability"], "top_k": top}

    return app


def run_server(model_dir: Path, settings: ServeSettings) -> None:
    import uvicorn

    app = create_app(model_dir, settings)
    print(f"serving {model_dir} on http://{settings.host}:{settings.port} (POST /predict, GET /health, GET /metadata)")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
