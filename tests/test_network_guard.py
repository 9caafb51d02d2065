"""The offline tests' network guard (tests/network_guard.py) holds whatever the environment says."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest
from conftest import ROOT, tool_env
from network_guard import REFUSAL, SITE, can_unshare, offline_command, offline_env, refused

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


CONNECT = "import socket; socket.create_connection(('8.8.8.8', 53), timeout=5); print('connected')"


@pytest.mark.parametrize(
    "how",
    ["env built from scratch", "own PYTHONPATH", "no env", "Popen positional env", "grandchild with a bare env"],
)
def test_a_child_with_an_environment_its_test_built_is_refused(how: str) -> None:
    """Whatever environment a test (or the code it runs) hands a child, with NO_PROXY=* in it, the child
    starts with the guard installed: its connect to a remote host is refused in the guard's words."""
    bare = {"PATH": "/usr/bin:/bin", **BYPASS}  # no PYTHONPATH, nothing of tool_env()
    command = [sys.executable, "-c", CONNECT]
    if how == "env built from scratch":
        result = subprocess.run(command, env=bare, capture_output=True, text=True, timeout=60)
    elif how == "own PYTHONPATH":
        result = subprocess.run(command, env=bare | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    elif how == "no env":
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    elif how == "Popen positional env":
        process = subprocess.Popen(command, -1, None, None, subprocess.PIPE, subprocess.PIPE, None, True, False,
                                   None, bare, text=True)  # fmt: skip
        stdout, stderr = process.communicate(timeout=60)
        result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    else:  # a child that starts its own child with an environment of its own
        grandchild = f"subprocess.run([sys.executable, '-c', {CONNECT!r}], env={bare!r})"
        code = f"import subprocess, sys; sys.exit({grandchild}.returncode)"
        result = subprocess.run([sys.executable, "-c", code], env=bare, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "connected" not in result.stdout, result.stdout + result.stderr
    assert REFUSAL in result.stderr, result.stderr


def test_the_guard_adds_its_sitecustomize_once() -> None:
    env = offline_env(offline_env({"PYTHONPATH": f"{SITE}{os.pathsep}/elsewhere"}))
    assert env["PYTHONPATH"] == f"{SITE}{os.pathsep}/elsewhere"


@pytest.mark.skipif(not can_unshare(), reason="`unshare -n` cannot make a network namespace here")
def test_an_isolated_python_child_has_no_route_out() -> None:
    """`python -I` never reads PYTHONPATH, so no sitecustomize of ours: the guard starts it in a network namespace."""
    result = subprocess.run([sys.executable, "-I", "-c", CONNECT], env=BYPASS, capture_output=True, text=True)
    assert result.returncode == 1 and "connected" not in result.stdout, result.stdout + result.stderr
    assert "Network is unreachable" in result.stderr, result.stderr


@pytest.mark.skipif(not can_unshare(), reason="`unshare -n` cannot make a network namespace here")
def test_a_subprocess_outside_python_has_no_route_out() -> None:
    script = "exec 3<>/dev/tcp/8.8.8.8/53 && echo connected"
    result = subprocess.run(offline_command(["bash", "-c", script]), capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "connected" not in result.stdout
    assert "Network is unreachable" in result.stderr, result.stderr
