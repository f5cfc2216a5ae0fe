"""The one in-memory form every loader produces: an event log plus an item table.

Events table (pandas, one row per interaction, in input order):

    user   raw user id (int64 when the source ids are integers, else string)
    item   raw item id (same rule)
    ts     int64 -- unix seconds, or the position in the user's sequence when the source has no clock
    event  int8  -- EventType code (view < cart < purchase)
    weight float32 -- implicit-feedback strength derived from the event type (see EventWeights)

Items table: one row per known item, column `item` plus whatever text fields the source has
(`title`, `brand`, `category`, `price`, `genres`). Items may appear here without any event: those are
the cold-start items the content engine serves.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reccore.constants import CART, PURCHASE, VIEW

EVENT_COLUMNS = ("user", "item", "ts", "event", "weight")
ITEM_TEXT_COLUMNS = ("title", "brand", "category", "price", "genres")


class EventType(enum.IntEnum):
    """Shopper actions, ordered by intent (codes from `reccore.constants`). Sources without event types
    (ratings, `user item` files) record every interaction as a VIEW."""

    VIEW = VIEW
    CART = CART
    PURCHASE = PURCHASE

    @classmethod
    def parse(cls, name: str) -> "EventType":
        return _EVENT_NAMES[name]


_EVENT_NAMES = {"view": EventType.VIEW, "cart": EventType.CART, "purchase": EventType.PURCHASE}
EVENT_NAMES = tuple(_EVENT_NAMES)


@dataclass(frozen=True)
class EventWeights:
    """Implicit-feedback weight of each event type (view < cart < purchase)."""

    view: float = 1.0
    """A look: the weakest evidence of interest."""
    cart: float = 3.0
    """Added to cart: strong intent."""
    purchase: float = 5.0
    """Bought: the strongest evidence."""

    def __post_init__(self) -> None:
        if not (0 < self.view <= self.cart <= self.purchase):
            raise ValueError(
                f"event weights must satisfy 0 < view <= cart <= purchase, got {self}; "
                "fix the `weights` section of your config"
            )

    def as_array(self) -> np.ndarray:
        return np.array([self.view, self.cart, self.purchase], dtype=np.float32)

    def of(self, event_codes: np.ndarray) -> np.ndarray:
        return self.as_array()[np.asarray(event_codes, dtype=np.int64)]


@dataclass
class HistoryBatch:
    """What every engine scores: B users' time-ordered histories (dense item indices + event codes).
    `users` holds dense user indices where known (-1 for a user the model never saw)."""

    items: list[np.ndarray]
    events: list[np.ndarray]
    users: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def of(cls, items: list, events: list | None = None, users=None) -> "HistoryBatch":
        items = [np.asarray(s, dtype=np.int64) for s in items]
        events = [np.asarray(e, dtype=np.int8) for e in events] if events is not None else [
            np.zeros(len(s), np.int8) for s in items]
        return cls(items, events, None if users is None else np.asarray(users, dtype=np.int64))


# How many line numbers to keep per reason: counts are always exact, the list is for a person to look at.
MAX_LINES_PER_REASON = 1000


@dataclass
class BadRowReport:
    """Rows kept out of the event log, counted per reason, with the input line numbers (1-based, as
    an editor shows them; the header is line 1 for CSV files)."""

    counts: dict[str, int] = field(default_factory=dict)
    lines: dict[str, list[int]] = field(default_factory=dict)
    source: str = ""

    def add(self, reason: str, line_numbers) -> None:
        line_numbers = [int(n) for n in np.asarray(line_numbers).ravel()]
        if not line_numbers:
            return
        self.counts[reason] = self.counts.get(reason, 0) + len(line_numbers)
        kept = self.lines.setdefault(reason, [])
        kept.extend(line_numbers[: max(0, MAX_LINES_PER_REASON - len(kept))])

    def merge(self, other: "BadRowReport") -> None:
        for reason, n in other.counts.items():
            self.counts[reason] = self.counts.get(reason, 0) + n
            kept = self.lines.setdefault(reason, [])
            kept.extend(other.lines.get(reason, [])[: max(0, MAX_LINES_PER_REASON - len(kept))])

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self, max_lines: int = 10) -> str:
        if not self.total:
            return f"bad rows: 0 ({self.source})" if self.source else "bad rows: 0"
        parts = [f"bad rows: {self.total} kept out" + (f" of {self.source}" if self.source else "")]
        for reason, n in sorted(self.counts.items(), key=lambda kv: -kv[1]):
            shown = self.lines.get(reason, [])[:max_lines]
            more = "" if n <= len(shown) else f", ... ({n - len(shown)} more)"
            parts.append(f"  {reason}: {n} (lines {', '.join(map(str, shown))}{more})")
        return "\n".join(parts)

    def to_dict(self) -> dict:
        return {"total": self.total, "counts": dict(self.counts), "lines": {k: v[:100] for k, v in self.lines.items()}}


class DataError(ValueError):
    """An input that cannot be read as asked; the message names the file, the column and the fix."""


@dataclass
class EventLog:
    """What every loader returns: events, items and the account of what was kept out."""

    events: pd.DataFrame
    items: pd.DataFrame
    bad_rows: BadRowReport
    source: str = ""
    rows_read: int = 0
    """Data rows seen in the input (header excluded); equals len(events) + bad_rows.total."""

    def __post_init__(self) -> None:
        missing = [c for c in EVENT_COLUMNS if c not in self.events.columns]
        if missing:
            raise DataError(f"events table lacks columns {missing}; loaders must produce {EVENT_COLUMNS}")
        if "item" not in self.items.columns:
            raise DataError("items table lacks the `item` column")

    def stats(self) -> dict:
        ev = self.events
        counts = np.bincount(ev["event"].to_numpy(dtype=np.int64), minlength=len(EVENT_NAMES))
        return {
            "source": self.source,
            "rows_read": int(self.rows_read),
            "users": int(ev["user"].nunique()),
            "items": int(ev["item"].nunique()),
            "catalog_items": int(self.items["item"].nunique()),
            "interactions": int(len(ev)),
            "event_types": {name: int(counts[i]) for i, name in enumerate(EVENT_NAMES)},
            "bad_rows": int(self.bad_rows.total),
            "bad_row_reasons": dict(self.bad_rows.counts),
        }


def make_events(user, item, ts, event, weights: EventWeights | None = None) -> pd.DataFrame:
    """Assemble a typed events table from column arrays."""
    event = np.asarray(event, dtype=np.int8)
    return pd.DataFrame(
        {
            "user": user,
            "item": item,
            "ts": np.asarray(ts, dtype=np.int64),
            "event": event,
            "weight": (weights or EventWeights()).of(event),
        }
    )
