"""Signs of life on stderr: a tqdm bar on a terminal, a few plain lines otherwise (readable in a `dvc repro` log)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

LINES_WHEN_PIPED = 10  # progress lines for a whole task when stderr is not a terminal


class Progress:
    """Counts work done out of `total`: tqdm on a TTY, else a line each tenth (and at the end)."""

    def __init__(self, total: int, desc: str, unit: str = "it", enabled: bool = True) -> None:
        self.total, self.desc, self.unit, self.done = total, desc, unit, 0
        self.enabled = enabled and total > 0
        self.bar = None
        self.start = time.perf_counter()
        self.step = max(1, total // LINES_WHEN_PIPED)
        self.next_line = self.step
        self.first: tuple[int, float] | None = None  # (done, time) at the end of the first update
        if self.enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)

    def update(self, count: int = 1, note: str = "") -> None:
        self.done += count
        if self.first is None:
            self.first = (self.done, time.perf_counter())
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(count)
            if note:
                self.bar.set_postfix_str(note, refresh=False)
            return
        if self.done >= self.next_line or self.done >= self.total:
            self.next_line = self.done + self.step
            suffix = f": {note}" if note else ""
            print(f"{self.desc}: {self.done}/{self.total} {self.unit} ({self.pace()}){suffix}", file=sys.stderr)

    def pace(self) -> str:
        """Seconds so far, the rate, and the time left at that rate: `12 s, 150.3 img/s, 14 s left`."""
        seconds = time.perf_counter() - self.start
        rate = self.done / seconds if seconds > 0 else 0.0
        left = f", {(self.total - self.done) / rate:.0f} s left" if rate and self.done < self.total else ""
        return f"{seconds:.0f} s, {rate:.1f} {self.unit}/s{left}"

    def steady(self) -> tuple[int, float]:
        """Work done after the first update and its seconds: the pace without start-up (for featurize: without
        building the model and its first batch, which traces the graph)."""
        if self.first is None:
            return 0, 0.0
        return self.done - self.first[0], time.perf_counter() - self.first[1]

    def steady_line(self) -> str:
        """`<desc>: steady state 160.2 img/s after the first update (3968 img in 24.8 s)`, or "" before two."""
        done, seconds = self.steady()
        if not done or seconds <= 0:
            return ""
        pace = f"{done / seconds:.1f} {self.unit}/s"
        return f"{self.desc}: steady state {pace} after the first update ({done} {self.unit} in {seconds:.1f} s)"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Steps:
    """Named steps of one task: each prints `<desc>: <step> <seconds> s` on stderr when it ends, and records its
    seconds in `seconds` (a line per step in a log as on a terminal: steps are few)."""

    def __init__(self, desc: str, seconds: dict[str, float] | None = None, enabled: bool = True) -> None:
        self.desc, self.enabled = desc, enabled
        self.seconds = seconds if seconds is not None else {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - start
        if self.enabled:
            print(f"{self.desc}: {name} {self.seconds[name]:.1f} s", file=sys.stderr)

    def progress(self, name: str, total: int, unit: str) -> Progress:
        """A Progress for a long step: `<desc> <step>: 2000/4000 rows (3 s, 650.2 rows/s, 3 s left)`."""
        return Progress(total, f"{self.desc} {name}", unit, enabled=self.enabled)
