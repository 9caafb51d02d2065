"""No network for the offline tests: a guard in the test process, and for subprocesses a new network namespace
(`unshare -n`, where the user may make one) plus the same guard through `sitecustomize`.

Unlike a proxy variable, nothing in the environment undoes it: NO_PROXY, proxies and urllib's per-process
caches never reach a socket that refuses to connect. Loopback (127.0.0.0/8, ::1) and Unix sockets stay open,
so a test's own server on 127.0.0.1 still answers.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

SITE = Path(__file__).resolve().parent / "offline_site"  # its sitecustomize.py installs the guard in a child
REFUSAL = "network access refused: this test runs offline"


def is_loopback(host: Any) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def guarded_connect(connect: Callable) -> Callable:
    def refuse_unless_loopback(self: socket.socket, address: Any, *args: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address[0]):
            raise OSError(errno.ENETUNREACH, f"{REFUSAL} ({address[0]})")
        return connect(self, address, *args)

    return refuse_unless_loopback


def guarded_getaddrinfo(getaddrinfo: Callable) -> Callable:
    def resolve_only_loopback(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not is_loopback(host if isinstance(host, str) else host.decode()):
            raise socket.gaierror(socket.EAI_NONAME, f"{REFUSAL} ({host})")
        return getaddrinfo(host, *args, **kwargs)

    return resolve_only_loopback


def patches() -> list[tuple[Any, str, Any]]:
    """(object, attribute, guarded value) for every way Python reaches a remote host."""
    return [
        (socket.socket, "connect", guarded_connect(socket.socket.connect)),
        (socket.socket, "connect_ex", guarded_connect(socket.socket.connect_ex)),
        (socket, "getaddrinfo", guarded_getaddrinfo(socket.getaddrinfo)),
    ]


def install() -> None:
    """For good, in this process (a subprocess's sitecustomize)."""
    for target, name, value in patches():
        setattr(target, name, value)


@contextmanager
def refused() -> Iterator[None]:
    """The guard for the duration of a block, in this process."""
    saved = [(target, name, getattr(target, name)) for target, name, _ in patches()]
    install()
    try:
        yield
    finally:
        for target, name, value in saved:
            setattr(target, name, value)


@cache
def can_unshare() -> bool:
    """Whether `unshare -n` makes a network namespace here (root, or user namespaces allowed)."""
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False).returncode == 0


def offline_command(command: list[str]) -> list[str]:
    return ["unshare", "-n", *command] if can_unshare() else command


def offline_env(env: dict[str, str]) -> dict[str, str]:
    """`env` with the guard's sitecustomize first on PYTHONPATH, for a Python child."""
    path = [str(SITE), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    return {**env, "PYTHONPATH": os.pathsep.join(path)}
