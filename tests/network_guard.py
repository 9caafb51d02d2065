"""No network for the offline tests: a guard in the test process, and for subprocesses a new network namespace
(`unshare -n`, where the user may make one) plus the same guard through `sitecustomize`.

The guard also wraps `subprocess.Popen`: every child a guarded process starts, whatever environment the caller
built for it (`env={...}` from scratch, a PYTHONPATH of its own, or none), gets the guard's sitecustomize first
on its PYTHONPATH, and installs the same wrapper in turn, so grandchildren (dvc's stage commands, Ray's workers)
are guarded too. A Python child in isolated mode (`-I`, `-E`) ignores PYTHONPATH: it runs under `unshare -n`
where one can be made.

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
from collections.abc import Callable, Iterator, Sequence
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


ENV_POSITION = 9  # `env` among Popen's positional parameters after `args`


def ignores_pythonpath(args: Any) -> bool:
    """Whether `args` starts a Python in isolated mode (-I) or with -E, which never reads PYTHONPATH."""
    if isinstance(args, (str, bytes)) or not isinstance(args, Sequence) or not args:
        return False
    if not Path(str(args[0])).name.startswith("python"):
        return False
    flags = [str(arg) for arg in args[1:]]
    flags = flags[: next((i for i, arg in enumerate(flags) if not arg.startswith("-") or arg in ("-c", "-m")), None)]
    return any(flag.startswith("-") and not flag.startswith("--") and ("I" in flag or "E" in flag) for flag in flags)


def guarded_popen(init: Callable) -> Callable:
    def start_behind_the_guard(self: subprocess.Popen, args: Any, *rest: Any, **kwargs: Any) -> None:
        if len(rest) > ENV_POSITION:
            env = rest[ENV_POSITION]
            rest = (
                *rest[:ENV_POSITION],
                offline_env(dict(os.environ) if env is None else env),
                *rest[ENV_POSITION + 1 :],
            )
        else:
            env = kwargs.get("env")
            kwargs["env"] = offline_env(dict(os.environ) if env is None else env)
        if ignores_pythonpath(args):
            args = offline_command(list(args))
        init(self, args, *rest, **kwargs)

    return start_behind_the_guard


def patches() -> list[tuple[Any, str, Any]]:
    """(object, attribute, guarded value) for every way Python reaches a remote host, itself or through a child."""
    return [
        (socket.socket, "connect", guarded_connect(socket.socket.connect)),
        (socket.socket, "connect_ex", guarded_connect(socket.socket.connect_ex)),
        (socket, "getaddrinfo", guarded_getaddrinfo(socket.getaddrinfo)),
        (subprocess.Popen, "__init__", guarded_popen(subprocess.Popen.__init__)),
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


def offline_env(env: Any) -> dict[str, str]:
    """`env` with the guard's sitecustomize first on PYTHONPATH (once), for a Python child."""
    env = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in env.items()
    }
    rest = [part for part in env.get("PYTHONPATH", "").split(os.pathsep) if part and part != str(SITE)]
    return {**env, "PYTHONPATH": os.pathsep.join([str(SITE), *rest])}
