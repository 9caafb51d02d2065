"""Signs of life on stderr: a tqdm bar on a terminal, a few plain lines otherwise (readable in a `dvc repro` log)."""

from __future__ import annotations

import sys
import time
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
        if self.enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)

    def update(self, count: int = 1, note: str = "") -> None:
        self.done += count
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

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
