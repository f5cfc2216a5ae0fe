"""Progress of every long loop, one way for the whole project: a tqdm bar on a terminal, plain lines
elsewhere.

Where stdout is not a terminal (Ray job logs, a pipeline stage's output forwarded to the driver,
nohup, pipes) tqdm's carriage returns turn into noise, so a plain line is printed instead, every
`every_s` seconds, and a last one at the end if any was printed: a loop shorter than `every_s` stays
silent, a long one is never silent for longer. Either way a slow run is told apart from a hung one.

    for batch in track(batches, total=len(batches), desc="embedding", unit="batch"):
        ...
    with Progress(n_steps, desc="epoch 3", unit="step") as bar:
        bar.update(loss=0.41)

`heartbeat=True` is for loops whose single step can outlast `every_s` (one matrix inversion, one index
build): a background thread prints the line (marked "working") whenever none was printed for `every_s`.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def _is_tty(stream) -> bool:
    return hasattr(stream, "isatty") and stream.isatty()


class Progress:
    def __init__(self, total: int | None, desc: str, unit: str = "it", every_s: float = 30.0,
                 enabled: bool = True, stream=None, leave: bool = False, heartbeat: bool = False,
                 budget_s: float | None = None):
        self.total, self.desc, self.unit, self.every_s = total, desc, unit, every_s
        self.budget_s = budget_s or None  # a wall-clock budget that may end the loop before `total`
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self.done = 0
        self.postfix: dict = {}
        self.started = self.last = time.perf_counter()
        self.bar = (tqdm(total=total, desc=desc, unit=unit, leave=leave, file=self.stream, dynamic_ncols=True)
                    if enabled and _is_tty(self.stream) else None)
        self.lines = 0
        self._stop = threading.Event()
        if heartbeat and enabled and self.bar is None:
            threading.Thread(target=self._beat, name=f"progress {desc}", daemon=True).start()

    def _beat(self) -> None:
        while not self._stop.wait(min(self.every_s, 1.0)):
            if self.enabled and time.perf_counter() - self.last >= self.every_s:
                self.last = time.perf_counter()
                self._line("working")

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1, **postfix) -> None:
        self.done += n
        self.postfix.update(postfix)
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix({k: _fmt(v) for k, v in self.postfix.items()}, refresh=False)
            return
        now = time.perf_counter()
        if now - self.last >= self.every_s:
            self.last = now
            self._line()

    def _line(self, state: str = "") -> None:
        elapsed = time.perf_counter() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        parts = [f"[{self.desc}]"]
        if state:
            parts.append(state)
        if self.total:
            parts.append(f"{self.done}/{self.total} {self.unit} ({100 * self.done / self.total:.0f}%)")
        else:
            parts.append(f"{self.done} {self.unit}")
        if self.done:
            parts.append(f"{rate:.2f} {self.unit}/s")
            eta = (self.total - self.done) / rate if self.total and self.done < self.total and rate > 0 else None
            if self.budget_s is not None and (eta is None or self.budget_s - elapsed < eta):
                parts.append(f"ETA {max(0.0, self.budget_s - elapsed):.0f}s (budget)")
            elif eta is not None:
                parts.append(f"ETA {eta:.0f}s")
        parts.append(f"elapsed {elapsed:.0f}s")
        parts += [f"{k} {_fmt(v)}" for k, v in self.postfix.items()]
        print("  ".join(parts), file=self.stream, flush=True)
        self.lines += 1

    def close(self) -> None:
        self._stop.set()
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.enabled and self.lines:  # a short loop printed nothing and says nothing at the end
            self._line("done")
        self.enabled = False


def track(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it",
          every_s: float = 30.0, enabled: bool = True) -> Iterator[T]:
    """Iterate `items` with a Progress (total from len() when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, desc, unit, every_s, enabled) as bar:
        for item in items:
            yield item
            bar.update()


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
