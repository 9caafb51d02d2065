"""A client for `pipeline serve` (stdlib http.client, one connection a request) and a load bench: requests/s
and p50/p99 latency at several numbers of concurrent clients, against a server it starts on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict
    seconds: float


def post_image(port: int, data: bytes, filename: str = "image.jpg", top_k: int = 1, timeout: float = 60) -> Reply:
    """POST /predict with `data` as the multipart form's one file."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return request(port, "POST", f"/predict?top_k={top_k}", body, f"multipart/form-data; boundary={boundary}", timeout)


def request(port: int, method: str, path: str, body: bytes = b"", content_type: str = "", timeout: float = 60) -> Reply:
    start = time.perf_counter()
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Content-Type": content_type} if content_type else {}
        connection.request(method, path, body=body or None, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = {"raw": raw.decode(errors="replace")}
    return Reply(response.status, parsed, time.perf_counter() - start)


def burst(port: int, uploads: list[tuple[str, bytes]], clients: int) -> list[Reply]:
    """Each (filename, data) posted once, `clients` at a time; replies in upload order."""
    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(lambda upload: post_image(port, upload[1], upload[0]), uploads))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_server(model_dir: Path, port: int, *options: str, wait_s: float = 180) -> subprocess.Popen:
    """`python -m pipeline serve` on 127.0.0.1:port, returned once GET /health answers."""
    return wait_until_healthy(launch_server(model_dir, port, *options), port, wait_s)


def launch_server(model_dir: Path, port: int, *options: str) -> subprocess.Popen:
    """`python -m pipeline serve` on 127.0.0.1:port, returned at once (it loads the model in the background)."""
    command = [sys.executable, "-m", "pipeline", "serve", str(model_dir), "--host", HOST, "--port", str(port)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([*command, *options], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_until_healthy(server: subprocess.Popen, port: int, wait_s: float = 180) -> subprocess.Popen:
    """The server once GET /health answers 200; killed, and an error, if it exits or stays silent."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited ({server.returncode}): {server.stdout.read().decode()[-2000:]}")
        try:
            if request(port, "GET", "/health", timeout=2).status == 200:
                return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError(f"the server did not answer /health within {wait_s:.0f} s")


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def bench_row(port: int, uploads: list[tuple[str, bytes]], clients: int, requests: int, max_s: float) -> dict:
    """`requests` uploads (cycling through `uploads`), `clients` at a time, stopping early after max_s."""
    deadline = time.perf_counter() + max_s
    start = time.perf_counter()

    def one(i: int) -> Reply | None:
        if time.perf_counter() > deadline:
            return None
        name, data = uploads[i % len(uploads)]
        return post_image(port, data, name)

    with ThreadPoolExecutor(clients) as pool:
        replies = [r for r in pool.map(one, range(requests)) if r is not None]
    seconds = time.perf_counter() - start
    latencies = np.array([r.seconds for r in replies]) * 1000
    return {
        "clients": clients,
        "requests": len(replies),
        "errors": sum(r.status != 200 for r in replies),
        "req_per_s": len(replies) / seconds,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
    }


def render_bench(rows: list[dict]) -> str:
    header = f"{'clients':>7}  {'requests':>8}  {'errors':>6}  {'req/s':>7}  {'p50 ms':>8}  {'p99 ms':>8}"
    lines = [
        f"{r['clients']:>7}  {r['requests']:>8}  {r['errors']:>6}  {r['req_per_s']:>7.1f}  {r['p50_ms']:>8.1f}  "
        f"{r['p99_ms']:>8.1f}"
        for r in rows
    ]
    return "\n".join([header, *lines])
