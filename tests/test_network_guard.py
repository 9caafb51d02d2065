"""The offline tests' network guard (tests/network_guard.py) holds whatever the environment says."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest
from conftest import tool_env
from network_guard import REFUSAL, can_unshare, offline_command, offline_env, refused

REMOTE = "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
BYPASS = {"NO_PROXY": "*", "no_proxy": "*", "https_proxy": "", "HTTPS_PROXY": "", "http_proxy": "", "HTTP_PROXY": ""}


def test_in_process_a_remote_host_is_refused_and_loopback_answers(monkeypatch) -> None:
    for key, value in BYPASS.items():
        monkeypatch.setenv(key, value)
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with refused():
            with pytest.raises(urllib.error.URLError, match=REFUSAL):
                urllib.request.urlopen(REMOTE, timeout=5)
            with pytest.raises(OSError, match=REFUSAL):
                __import__("socket").create_connection(("8.8.8.8", 53), timeout=5)
            with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/", timeout=5) as response:
                assert response.status == 200
    finally:
        server.shutdown()


def test_every_test_runs_behind_the_guard_without_asking() -> None:
    """conftest's session-wide guard: a test that forgets `refused()` still cannot reach a remote host."""
    with pytest.raises(OSError, match=REFUSAL):
        socket.create_connection(("8.8.8.8", 53), timeout=5)


def test_every_tool_subprocess_runs_behind_the_guard() -> None:
    """A Python child started with conftest's tool_env() (dvc, python -m pipeline) has the guard installed."""
    code = "import socket; socket.create_connection(('8.8.8.8', 53), timeout=5)"
    result = subprocess.run([sys.executable, "-c", code], env=tool_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and REFUSAL in result.stderr, result.stderr


def test_a_python_subprocess_is_refused_even_with_no_proxy_set() -> None:
    code = f"import urllib.request; urllib.request.urlopen({REMOTE!r}, timeout=5)"
    env = offline_env(tool_env() | BYPASS)
    result = subprocess.run(
        offline_command([sys.executable, "-c", code]), env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1 and REFUSAL in result.stderr, result.stderr


@pytest.mark.skipif(not can_unshare(), reason="`unshare -n` cannot make a network namespace here")
def test_a_subprocess_outside_python_has_no_route_out() -> None:
    script = "exec 3<>/dev/tcp/8.8.8.8/53 && echo connected"
    result = subprocess.run(offline_command(["bash", "-c", script]), capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "connected" not in result.stdout
    assert "Network is unreachable" in result.stderr, result.stderr
