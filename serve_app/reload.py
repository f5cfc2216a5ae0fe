"""Live model swaps: a replica serving `models:/<name>@<alias>` follows the alias.

A background thread asks the MLflow registry every `period_s` which version the alias points at.
When it moves (`recsys promote`, or a retrained engine that passed the promotion gate), the new
version is loaded beside the old one -- pinned as `models:/<name>/<version>`, so a second move during
the load cannot mix versions -- and warmed up (one real scoring call). Only a version that loaded and
answered replaces the old one, by one reference assignment, so requests in flight finish on the model
they started with and no request waits for a load. A version that fails is logged and not retried
until the alias moves again; the old model keeps serving. Folders and `runs:/` URIs never move.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, Generic, TypeVar

from serve_app.artifacts import registry_version

logger = logging.getLogger("ray.serve")
T = TypeVar("T")


def alias_of(uri: str) -> tuple[str, str] | None:
    """`models:/name@alias` -> (name, alias); anything else (a folder, a pinned version) -> None."""
    rest = str(uri)[len("models:/"):] if str(uri).startswith("models:/") else ""
    if "@" not in rest:
        return None
    name, alias = rest.split("@", 1)
    return name, alias


class AliasFollower(Generic[T]):
    """Calls `load(pinned_uri)` when the alias moves, `error(new)` (None = good) to check it, then
    `swap(new)`. `version` is the version now served."""

    def __init__(self, uri: str, version: str | None, period_s: float, load: Callable[[str], T],
                 error: Callable[[T], str | None], swap: Callable[[T], None], what: str = ""):
        self.uri, self.version, self.period_s = str(uri), version, period_s
        self.load, self.error, self.swap, self.what = load, error, swap, what or str(uri)
        self.failed: str | None = None
        self.swaps = 0
        self._stop = threading.Event()
        self.target = alias_of(uri)
        if self.target and period_s > 0:
            threading.Thread(target=self._loop, name=f"follow {self.uri}", daemon=True).start()

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.poll()
            except Exception as e:  # a registry hiccup must not end the thread
                logger.warning("%s: registry poll failed: %s", self.what, e)

    def poll(self) -> bool:
        """One check; True when a new version now serves."""
        latest = registry_version(self.uri)
        if latest is None or latest in (self.version, self.failed):
            return False
        pinned = f"models:/{self.target[0]}/{latest}"
        logger.info("%s: %s moved %s -> %s; loading it beside the serving one", self.what, self.uri,
                    self.version, latest)
        new = self.load(pinned)
        err = self.error(new)
        if err:
            self.failed = latest
            logger.error("%s: version %s failed its load check, version %s keeps serving: %s", self.what,
                         latest, self.version, err)
            return False
        self.swap(new)
        self.version, self.failed = latest, None
        self.swaps += 1
        logger.info("%s: now serving version %s", self.what, latest)
        return True

    def stop(self) -> None:
        self._stop.set()
