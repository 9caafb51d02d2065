"""TensorFlow's startup noise off stderr, unless asked for (`--verbose` or PIPELINE_VERBOSE=1).

TensorFlow's C++ side logs through absl straight to file descriptor 2, much of it before TF_CPP_MIN_LOG_LEVEL
is read (the oneDNN and CUDA notices, "All log messages before absl::InitializeLog()", cuInit failures on a
machine without a GPU). So descriptor 2 becomes a pipe whose lines pass through a filter that drops absl's
info/warning lines and the known no-GPU errors; Python's own sys.stderr keeps the original stream (a terminal
stays a terminal for progress bars). Nothing changes what TensorFlow computes: oneDNN stays on.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

VERBOSE_ENV = "PIPELINE_VERBOSE"
NOISE = (
    re.compile(r"^[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\] "),  # absl info and warning lines
    re.compile(r"^E\d{4} .*(cuInit|Unable to register cu\w+ factory|computation placer|cuda_\w+\.cc)"),
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"),
    re.compile(r"^To enable the following instructions: .*rebuild TensorFlow"),
)


def verbose_requested(argv: list[str]) -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0") or "--verbose" in argv


def is_noise(line: str) -> bool:
    return any(pattern.match(line) for pattern in NOISE)


class StderrFilter:
    """Descriptor 2 -> pipe -> a thread that forwards every line but the noise to the original stderr."""

    def __init__(self) -> None:
        sys.stderr.flush()
        self.original = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        sys.stderr = open(self.original, "w", buffering=1, closefd=False, errors="backslashreplace")  # noqa: SIM115
        self.reader = open(read_end, errors="backslashreplace")  # noqa: SIM115
        self.thread = threading.Thread(target=self.forward, name="stderr-filter", daemon=True)
        self.thread.start()
        atexit.register(self.stop)

    def forward(self) -> None:
        for line in self.reader:
            if not is_noise(line):
                os.write(self.original, line.encode(errors="backslashreplace"))

    def stop(self) -> None:
        """Close the pipe's last writer so the thread drains it, then put descriptor 2 back."""
        sys.stderr.flush()
        os.dup2(self.original, 2)
        self.thread.join(timeout=2)


def silence_tensorflow_noise(argv: list[str]) -> StderrFilter | None:
    """Install the filter (once per process) unless verbose output was asked for."""
    if verbose_requested(argv):
        return None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return StderrFilter()
