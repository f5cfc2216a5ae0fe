"""The ingress's natural batching (serve_app/coalesce.py), on a plain asyncio loop."""
import asyncio

import pytest

from serve_app.coalesce import Coalescer


def _run(coro):
    return asyncio.run(coro)


def test_lone_call_is_not_held_back_and_concurrent_calls_leave_together():
    calls = []
    release = None

    async def fn(xs):
        calls.append(list(xs))
        await release.wait()
        return [x * 10 for x in xs]

    async def main():
        nonlocal release
        release = asyncio.Event()
        c = Coalescer(fn, max_batch=8, max_inflight=1)
        first = asyncio.ensure_future(c.submit(1))
        await asyncio.sleep(0.001)       # dispatched at once: nothing in flight
        assert calls == [[1]]
        rest = [asyncio.ensure_future(c.submit(x)) for x in (2, 3, 4)]
        await asyncio.sleep(0.01)
        assert calls == [[1]]             # the engine is busy: the others wait ...
        release.set()
        out = await asyncio.gather(first, *rest)
        assert calls == [[1], [2, 3, 4]]  # ... and leave as one batch, answers in order
        assert out == [10, 20, 30, 40]
        assert c.batch_sizes == [1, 3]

    _run(main())


def test_batches_are_capped_and_inflight_is_bounded():
    running, peak = 0, 0

    async def fn(xs):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return [-x for x in xs]

    async def main():
        c = Coalescer(fn, max_batch=4, max_inflight=2)
        out = await asyncio.gather(*(c.submit(x) for x in range(20)))
        assert out == [-x for x in range(20)]
        assert max(c.batch_sizes) <= 4 and sum(c.batch_sizes) == 20
        assert peak == 2

    _run(main())


def test_an_error_reaches_every_caller_of_its_batch_only():
    async def fn(xs):
        await asyncio.sleep(0.001)
        if 0 in xs:
            raise ValueError("boom")
        return xs

    async def main():
        c = Coalescer(fn, max_batch=2, max_inflight=1)
        out = await asyncio.gather(*(c.submit(x) for x in (5, 0, 1, 2)), return_exceptions=True)
        assert c.batch_sizes == [1, 2, 1]  # [5], then [0, 1] (fails), then [2]
        assert out[0] == 5 and out[3] == 2
        assert isinstance(out[1], ValueError) and isinstance(out[2], ValueError)

    _run(main())


def test_wrong_result_count_is_an_error_not_a_hang():
    async def fn(xs):
        return xs[:1]

    async def main():
        c = Coalescer(fn, max_batch=4, max_inflight=1)
        await c.submit(0)                 # one in, one out: fine
        c2 = Coalescer(fn, max_batch=4, max_inflight=1)
        blocker = asyncio.ensure_future(c2.submit(0))
        out = await asyncio.gather(blocker, c2.submit(1), c2.submit(2), return_exceptions=True)
        assert out[0] == 0 and all(isinstance(o, RuntimeError) for o in out[1:])

    _run(main())


def test_bad_limits_fail():
    with pytest.raises(ValueError, match="max_batch"):
        Coalescer(lambda xs: xs, max_batch=0)


def test_under_load_a_batch_lingers_for_company_but_a_lone_call_does_not():
    calls = []

    async def fn(xs):
        calls.append(list(xs))
        await asyncio.sleep(0.005)
        return xs

    async def main():
        loop = asyncio.get_running_loop()
        c = Coalescer(fn, max_batch=3, max_inflight=1, linger_ms=200)
        t0 = loop.time()
        await c.submit("alone")                      # previous batch: none -> no linger
        assert loop.time() - t0 < 0.1
        await asyncio.gather(c.submit("a"), c.submit("b"))  # "a" alone, then "b" (after it) alone
        two = [asyncio.ensure_future(c.submit(x)) for x in ("c", "d")]
        await asyncio.sleep(0)
        await asyncio.gather(*two)
        calls.clear()
        c.batch_sizes.append(2)                      # as if the last batch held two: there is load,
        c.recent_peaks.append(10)                    # and ten requests were recently in the system
        t0 = loop.time()
        late = asyncio.ensure_future(c.submit("e"))
        await asyncio.sleep(0.05)
        assert calls == []                           # waiting for company, within linger_ms
        more = [asyncio.ensure_future(c.submit(x)) for x in ("f", "g")]
        await asyncio.gather(late, *more)
        assert calls == [["e", "f", "g"]]            # max_batch reached: it leaves at once
        assert loop.time() - t0 < 0.15
        t0 = loop.time()
        await c.submit("h")                          # last batch was 3: lingers, alone, until the deadline
        assert 0.18 <= loop.time() - t0 < 0.5
        t0 = loop.time()
        await c.submit("i")                          # last batch was 1: no concurrency, no wait
        assert loop.time() - t0 < 0.1
        # Requests that queued behind a running batch still linger once its slot comes free.
        c.batch_sizes.append(2)
        slow = asyncio.Event()

        async def held(xs):
            calls.append(list(xs))
            await slow.wait()
            return xs
        c.fn = held
        calls.clear()
        busy = [asyncio.ensure_future(c.submit(x)) for x in ("j", "k", "l")]   # a full batch: leaves at once
        await asyncio.sleep(0)
        queued = asyncio.ensure_future(c.submit("m"))
        await asyncio.sleep(0.3)                     # m waits for the slot, longer than linger_ms
        c.fn = fn
        slow.set()
        await asyncio.gather(*busy)
        await asyncio.sleep(0.05)
        assert calls == [["j", "k", "l"]]            # the slot is free, but m lingers for company
        await asyncio.gather(queued, c.submit("n"), c.submit("o"))
        assert calls == [["j", "k", "l"], ["m", "n", "o"]]

    _run(main())
    with pytest.raises(ValueError, match="linger_ms"):
        Coalescer(lambda xs: xs, linger_ms=-1)


def test_linger_ends_when_everyone_recently_seen_has_arrived():
    """Closed-loop clients (each sends its next request when the last is answered) end up in one
    batch per round, and no round idles out the linger once the clients are known."""
    calls = []

    async def fn(xs):
        calls.append(len(xs))
        await asyncio.sleep(0.005)
        return xs

    async def client(c, n):
        for i in range(n):
            await c.submit(i)

    async def main():
        loop = asyncio.get_running_loop()
        c = Coalescer(fn, max_batch=32, max_inflight=1, linger_ms=200)
        t0 = loop.time()
        await asyncio.gather(*(client(c, 10) for _ in range(4)))
        return loop.time() - t0

    took = asyncio.run(main())
    assert calls[-5:] == [4] * 5                     # one cohort, not two alternating halves
    assert took < 1.0                                # 10+ rounds; idling out 200 ms each would take > 2 s
