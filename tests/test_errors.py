"""The CLI's error contract: a PipelineError is one line and exit 2, a bug keeps its traceback, --debug shows all."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import tool_env


def pipeline(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], cwd=cwd, env=env or tool_env(), capture_output=True, text=True
    )


def test_a_known_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = pipeline("store", "info", "missing.h5", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        "error: Feature store not found: missing.h5. Run `dvc repro` (the featurize stage) first.\n"
    )


@pytest.mark.parametrize("switch", ["--debug", "PIPELINE_DEBUG=1"])
def test_the_debug_switch_shows_the_traceback(tmp_path: Path, switch: str) -> None:
    env = tool_env()
    args = ["store", "info", "missing.h5"]
    if switch == "--debug":
        args.insert(0, switch)
    else:
        env["PIPELINE_DEBUG"] = "1"
    result = pipeline(*args, cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert (
        "Traceback (most recent call last)" in result.stderr and "StoreError: Feature store not found" in result.stderr
    )


def test_a_bug_keeps_its_traceback(monkeypatch, capsys) -> None:
    """A ValueError from numpy or Keras is not a PipelineError: it propagates with its traceback."""
    import pipeline.store.index
    from pipeline.cli import main

    def broken(path: Path) -> str:
        raise ValueError("operands could not be broadcast together")  # what a numpy bug looks like

    monkeypatch.setattr(pipeline.store.index, "describe", broken)
    monkeypatch.setattr(sys, "argv", ["pipeline", "store", "info", "x.h5"])
    with pytest.raises(ValueError, match="broadcast"):
        main()
    assert "error:" not in capsys.readouterr().err


def test_store_info_does_not_import_tensorflow(tmp_path: Path) -> None:
    """Commands that do not compute stay fast: no TensorFlow, no Keras on the error path."""
    code = (
        "import sys, time\n"
        "start = time.perf_counter()\n"
        "sys.argv = ['pipeline', 'store', 'info', 'missing.h5']\n"
        "from pipeline.cli import main\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    code = exit.code\n"
        "print(code, 'tensorflow' in sys.modules, 'keras' in sys.modules, round(time.perf_counter() - start, 2))\n"
    )
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=tool_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    code, tensorflow, keras, in_process = result.stdout.split()
    print(f"store info on a missing file: {seconds:.2f} s (in process {in_process} s)")
    assert (code, tensorflow, keras) == ("2", "False", "False"), result.stderr


def test_a_sigterm_swallowed_by_a_finalizer_still_stops_the_work() -> None:
    """A signal can land inside a finalizer (TensorFlow's Executor.__del__ did, in featurize), where Python prints
    `Exception ignored` and goes on: the handler's exception is noted, and the work's next check raises it."""
    import os
    import signal

    from pipeline.cli.stages import Terminated, sigterm_as_interrupt
    from pipeline.core.errors import raise_pending_interrupt

    class SignalledWhileFinalized:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)  # the handler runs here, inside __del__, and its Terminated is ignored

    with sigterm_as_interrupt():
        SignalledWhileFinalized()  # unreferenced at once: __del__ runs now
        with pytest.raises(Terminated):
            raise_pending_interrupt()
        raise_pending_interrupt()  # raised once, then forgotten
    raise_pending_interrupt()
