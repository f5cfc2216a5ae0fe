"""Live sessions: the events `POST /events` appends, per session key, bounded."""
from __future__ import annotations

import collections
import time

from ray import serve


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
class SessionStore:
    """Events appended by POST /events, per session key (session_id or user_id). Bounded: at most
    `max_sessions` sessions (least recently used evicted), `max_events` events each (oldest dropped),
    sessions idle for `ttl_s` expire. One replica keeps it consistent; its state is lost on restart
    (the client's own history in /recommend still works)."""

    def __init__(self, max_sessions: int = 100_000, max_events: int = 200, ttl_s: float = 3600.0):
        self.max_sessions, self.max_events, self.ttl_s = max_sessions, max_events, ttl_s
        self.sessions: collections.OrderedDict[str, tuple[float, collections.deque]] = collections.OrderedDict()

    def _expire(self, now: float) -> None:
        while self.sessions:
            key, (ts, _) = next(iter(self.sessions.items()))
            if now - ts <= self.ttl_s and len(self.sessions) <= self.max_sessions:
                break
            self.sessions.popitem(last=False)

    def append(self, key: str, item, event: int) -> int:
        now = time.monotonic()
        _, events = self.sessions.pop(key, (now, collections.deque(maxlen=self.max_events)))
        events.append((item, int(event)))
        self.sessions[key] = (now, events)
        self._expire(now)
        return len(events)

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
