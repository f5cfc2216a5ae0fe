"""Caps on the native thread pools (BLAS, OpenMP) for a block of code.

On a shared CPU a pool with more threads than the cores it gets spin-waits: a stage given one CPU beside
another stage ran its numpy validation 1.5x slower on two BLAS threads than on one, and by a varying
amount, which made the time a budget keeps aside for it wrong; scikit-learn's OpenMP predictors were ~15x
slower. `threadpoolctl.threadpool_limits()` scans every loaded library on each entry (~4 ms with torch and
TensorFlow loaded), so a `ThreadLimit` scans once, on first use: make one per use site, used after the
libraries it caps are loaded.
"""
from __future__ import annotations

import contextlib

from threadpoolctl import ThreadpoolController


class ThreadLimit:
    """`with limit(n):` runs the block with every native pool capped at n threads (0 / None: no cap)."""

    def __init__(self) -> None:
        self._controller: ThreadpoolController | None = None

    def __call__(self, n: int | None):
        if not n:
            return contextlib.nullcontext()
        if self._controller is None:
            self._controller = ThreadpoolController()
        return self._controller.limit(limits=n)
