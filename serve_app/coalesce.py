"""Natural (adaptive) batching of concurrent calls, for the ingress.

Every engine call is a handle hop that costs milliseconds of CPU on each side, whatever the batch
it carries. The ingress therefore answers concurrent /recommend requests together: one call per
engine for the whole batch. `Coalescer` dispatches a batch as soon as fewer than `max_inflight`
batches are running -- so a lone request is never held back -- and requests that arrive while the
engines are busy wait and leave together as the next batch, so batches grow exactly as fast as load
does (Clipper's adaptive batching; TF-Serving's batcher with an in-flight limit).

Under load, a batch can also wait `linger_ms` for company once a slot is free: every hop costs
the same CPU whatever it carries, so on a saturated host bigger batches buy throughput. It lingers
only while the previous batch held more than one request (there is concurrency to wait for), so a
lone client is still never held back, and it stops as soon as the batch holds as many requests as
were recently in the system at once (waiting and running: the peak of the last 8 batches), since
no more are coming. Without that stop, closed-loop clients settle into cohorts that alternate
(8 clients: batches of 4 while the other 4 run) or every batch idles out the full linger.

Why not `@serve.batch` here: it waits a fixed `batch_wait_timeout_s` for company (added latency at
low load), and the batches it forms while the previous one runs do not grow: they queue behind its
`max_concurrent_batches` semaphore at the size the wait window gave them. So the engine replicas are
only ever called with whole batches (`recommend_batch`).
"""
from __future__ import annotations

import asyncio
import collections
from typing import Any, Awaitable, Callable, Sequence


class Coalescer:
    """`await submit(x)` -> `fn([... x ...])[i]`. `fn` takes a list and returns a list of the same
    length (one result per input, in order); if it raises, every caller of that batch gets the error."""

    def __init__(self, fn: Callable[[list], Awaitable[Sequence[Any]]], max_batch: int = 32, max_inflight: int = 2,
                 linger_ms: float = 0.0):
        if max_batch < 1 or max_inflight < 1:
            raise ValueError(f"max_batch ({max_batch}) and max_inflight ({max_inflight}) must be >= 1")
        if linger_ms < 0:
            raise ValueError(f"linger_ms ({linger_ms}) must be >= 0")
        self.fn, self.max_batch, self.max_inflight = fn, max_batch, max_inflight
        self.linger_s = linger_ms / 1000.0
        self.pending: list[tuple[Any, asyncio.Future]] = []
        self.oldest = 0.0          # arrival time (loop clock) of the oldest pending request
        self.freed = 0.0           # when a batch slot last came free
        self._timer: asyncio.TimerHandle | None = None
        self.inflight = 0
        self.inflight_requests = 0  # requests in the batches now running
        self.peak = 0               # most requests in the system (waiting + running) since the last dispatch
        self.recent_peaks: collections.deque[int] = collections.deque(maxlen=8)  # per dispatch
        self.batch_sizes: list[int] = []  # the last 1,000, for tests and the metrics hook
        self.on_batch: Callable[[int], None] | None = None

    async def submit(self, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        if not self.pending:
            self.oldest = loop.time()
        self.pending.append((item, fut))
        self.peak = max(self.peak, len(self.pending) + self.inflight_requests)
        self._dispatch()
        return await fut

    def _lingering(self) -> bool:
        """True (and a wake-up is set) while the next batch should wait for more requests."""
        if not self.linger_s or len(self.pending) >= self.max_batch or not self.batch_sizes or self.batch_sizes[-1] < 2:
            return False
        if len(self.pending) >= max(self.recent_peaks, default=0):  # everyone recently seen is here
            return False
        loop = asyncio.get_running_loop()
        # The wait counts from when the request could first have left: its arrival, or the moment a slot
        # came free if it arrived while the batches in flight filled every slot.
        wait = max(self.oldest, self.freed) + self.linger_s - loop.time()
        if wait <= 0:
            return False
        if self._timer is None:
            self._timer = loop.call_later(wait, self._wake)
        return True

    def _wake(self) -> None:
        self._timer = None
        self._dispatch()

    def _dispatch(self) -> None:
        while self.pending and self.inflight < self.max_inflight and not self._lingering():
            batch = [(x, f) for x, f in self.pending[: self.max_batch] if not f.cancelled()]
            del self.pending[: self.max_batch]
            self.oldest = asyncio.get_running_loop().time()  # the rest arrived later; close enough
            if not batch:
                continue
            self.inflight += 1
            self.inflight_requests += len(batch)
            self.recent_peaks.append(self.peak)
            self.peak = len(self.pending) + self.inflight_requests
            self.batch_sizes = self.batch_sizes[-999:] + [len(batch)]
            if self.on_batch is not None:
                self.on_batch(len(batch))
            asyncio.ensure_future(self._run(batch))

    async def _run(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        try:
            results = await self.fn([x for x, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batched function returned {len(results)} results for {len(batch)} inputs")
            for (_, f), r in zip(batch, results):
                if not f.done():
                    f.set_result(r)
        except BaseException as e:  # noqa: BLE001 -- every waiting caller must hear about it
            for _, f in batch:
                if not f.done():
                    f.set_exception(e if isinstance(e, Exception) else RuntimeError(repr(e)))
            if not isinstance(e, Exception):
                raise
        finally:
            self.inflight -= 1
            self.inflight_requests -= len(batch)
            self.freed = asyncio.get_running_loop().time()
            self._dispatch()
