"""Live sessions: the events `POST /events` appends, per session key, bounded -- and durable.

Every event is written to the served-event log (recdata.eventlog.ServedEventLog: REES46 CSV under
`events_dir`, default `$RECSYS_HOME/events/`) and fsync'd before `append_many` returns, so the
ingress acknowledges (200) only events that are on disk. Writes are group commits: `@serve.batch`
gathers the concurrent `append_many` calls (one per ingress batch, from every ingress replica) into
one write + one fsync. A restarted replica rebuilds the sessions of the last `ttl_s` from the log.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time

from ray import serve

from reccore.constants import EVENT_CODES
from recdata.eventlog import ServedEventLog, recent_sessions, rees46_row

logger = logging.getLogger("ray.serve")


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
class SessionStore:
    """Events appended by POST /events, per session key (session_id or user_id). Bounded: at most
    `max_sessions` sessions (least recently used evicted), `max_events` events each (oldest dropped),
    sessions idle for `ttl_s` expire. One replica keeps it consistent; with `events_dir` set, its
    state survives a restart (rebuilt from the log), without it the state is memory only."""

    def __init__(self, max_sessions: int = 100_000, max_events: int = 200, ttl_s: float = 3600.0,
                 events_dir: str | None = None):
        self.max_sessions, self.max_events, self.ttl_s = max_sessions, max_events, ttl_s
        self.sessions: collections.OrderedDict[str, tuple[float, collections.deque]] = collections.OrderedDict()
        self.log = ServedEventLog(events_dir) if events_dir else None
        self.rebuilt = self._rebuild() if events_dir else {"sessions": 0, "events": 0}

    def _rebuild(self) -> dict:
        """Replay the log's events of the last `ttl_s` (wall clock) into sessions, with their age."""
        t0, wall, mono = time.perf_counter(), time.time(), time.monotonic()
        rows = recent_sessions(self.log.folder, since=wall - self.ttl_s)
        for key, ts, item, event in rows:
            self._add(key, item, EVENT_CODES.get(event, 0), mono - (wall - ts))
        self._expire(mono)
        out = {"sessions": len(self.sessions), "events": len(rows), "seconds": round(time.perf_counter() - t0, 3)}
        if rows:
            logger.info("sessions: rebuilt %s from %s", out, self.log.folder)
        return out

    def _expire(self, now: float) -> None:
        while self.sessions:
            key, (ts, _) = next(iter(self.sessions.items()))
            if now - ts <= self.ttl_s and len(self.sessions) <= self.max_sessions:
                break
            self.sessions.popitem(last=False)

    def _add(self, key: str, item, event: int, now: float) -> int:
        _, events = self.sessions.pop(key, (now, collections.deque(maxlen=self.max_events)))
        events.append((item, int(event)))
        self.sessions[key] = (now, events)
        return len(events)

    @serve.batch(max_batch_size=256, batch_wait_timeout_s=0.0)  # <= max_ongoing_requests
    async def append_many(self, calls: list[list[dict]]) -> list[list[int]]:
        """Events {key, user, item, event (name), details (catalog fields or None)} -> each session's
        length after it. Serve hands the concurrent calls over together: one write and one fsync for all
        of them (off the event loop, so session lookups keep flowing), then the in-memory update."""
        flat = [e for call in calls for e in call]
        if self.log is not None and flat:
            wall = time.time()
            rows = [rees46_row(wall, e["event"], e["item"], e.get("user"), e["key"], e.get("details")) for e in flat]
            await asyncio.to_thread(self.log.append, rows)
        now = time.monotonic()
        lengths = [self._add(e["key"], e["item"], EVENT_CODES[e["event"]], now) for e in flat]
        self._expire(now)
        out, i = [], 0
        for call in calls:
            out.append(lengths[i:i + len(call)])
            i += len(call)
        return out

    def _get(self, key: str) -> tuple[list, list]:
        now = time.monotonic()
        self._expire(now)
        entry = self.sessions.get(key)
        if entry is None:
            return [], []
        self.sessions.move_to_end(key)
        self.sessions[key] = (now, entry[1])
        return [i for i, _ in entry[1]], [e for _, e in entry[1]]

    def get_many(self, keys: list[str]) -> list[tuple[list, list]]:
        """(items, events) of each key's live session, oldest first, in one call (the ingress looks up a
        whole batch of requests); a missing or expired session is ([], [])."""
        return [self._get(k) for k in keys]

    def info(self) -> dict:
        """For /version and the drills: where events go, how many this replica stored, what it rebuilt."""
        return {"role": "sessions", "status": "ok", "sessions": len(self.sessions),
                "events_dir": str(self.log.folder) if self.log else None,
                "log_file": str(self.log.path) if self.log else None,
                "events_stored": self.log.rows if self.log else 0, "rebuilt": self.rebuilt}
