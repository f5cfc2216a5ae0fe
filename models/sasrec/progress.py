"""Progress inside a training epoch: a tqdm bar on a terminal, plain lines in logs.

An epoch on a big catalog can take minutes; without a sign of life a Ray job log looks hung. On a
terminal tqdm shows steps, the running loss and the ETA; where stdout is not a terminal (Ray job
logs, nohup, pipes) tqdm's carriage returns would be noise, so a plain line is printed instead, at
least every `every_s` seconds.
"""
from __future__ import annotations

import sys
import time

from tqdm import tqdm


class EpochProgress:
    def __init__(self, epoch: int, total: int, enabled: bool = True, every_s: float = 30.0, stream=None):
        self.epoch, self.total, self.every_s = epoch, total, every_s
        self.stream = stream or sys.stdout
        self.done, self.loss_sum = 0, 0.0
        self.started = self.last = time.perf_counter()
        self.enabled = enabled
        tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = tqdm(total=total, desc=f"epoch {epoch}", unit="step", leave=False, file=self.stream,
                        dynamic_ncols=True) if tty else None

    def update(self, loss: float) -> None:
        self.done += 1
        self.loss_sum += loss
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            if self.done % 10 == 0 or self.done == self.total:
                self.bar.set_postfix(loss=f"{self.loss_sum / self.done:.4f}", refresh=False)
            return
        now = time.perf_counter()
        if now - self.last >= self.every_s:
            self.last = now
            rate = self.done / max(now - self.started, 1e-9)
            eta = (self.total - self.done) / max(rate, 1e-9)
            print(f"  epoch {self.epoch} step {self.done}/{self.total} ({100 * self.done / self.total:.0f}%)  "
                  f"loss {self.loss_sum / self.done:.4f}  {rate:.2f} steps/s  ETA {eta:.0f}s",
                  file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
