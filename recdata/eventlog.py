"""The served-event log and reading several event logs as one.

`ServedEventLog` is the append-only log the serving app writes every acknowledged `POST /events` to:
CSV files in the REES46 schema under one folder (default `$RECSYS_HOME/events/`), so
`recsys pipeline --format rees46 --path base.csv --path .recsys/events` trains on served traffic
with the same loader as the base log. Each writer (one sessions replica process) owns its own file,
so a restarted replica never interleaves with a dead one's half-written line; a batch is one
`write` followed by `fsync`, and the caller acknowledges the events only after that returns.

`load_many` reads several inputs of one format and drops, per input, the events an earlier input
already holds (same user, item, time and event type): a served log replayed twice, or a base log
that already absorbed an older served log, counts each event once. Every dropped row is counted in
the bad-row report, so `rows_read == interactions + bad_rows` still holds.
"""
from __future__ import annotations

import csv
import io
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from recdata.csvrows import REES46_TIME
from recdata.loaders import REES46_COLUMNS, load
from recdata.schema import BadRowReport, DataError, EventLog


def rees46_row(ts: float, event: str, item, user, session: str, details: dict | None = None) -> dict:
    """One REES46 row. `details`: what the catalog knows of the item (category_code, category_id,
    brand, price); without a price the REES46 loader counts the row as a bad row when retraining."""
    d = details or {}
    price = d.get("price")
    return {"event_time": datetime.fromtimestamp(ts, timezone.utc).strftime(REES46_TIME), "event_type": event,
            "product_id": item, "category_id": d.get("category_id") or "", "category_code": d.get("category") or "",
            "brand": d.get("brand") or "", "price": "" if price is None else f"{float(price):.2f}",
            "user_id": "" if user is None else user, "user_session": session}


class ServedEventLog:
    """Append-only REES46 CSV files in `folder`, one per writer process; `append` returns once the
    rows are on disk (fsync), which is what lets the caller acknowledge them."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DataError(f"cannot create the event log folder {self.folder}: {e}; set args.events_dir (Serve "
                            "config) or RECSYS_HOME to a writable place") from e
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        # Sorted file names are time order: a replay reads older writers first.
        self.path = self.folder / f"events-{stamp}-{os.getpid()}-{uuid.uuid4().hex[:6]}.csv"
        self._fd: int | None = None
        self.rows = 0

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.write(self._fd, (",".join(REES46_COLUMNS) + "\n").encode())
            # The new file's directory entry must be durable too, or a crash could lose the whole file.
            dfd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        return self._fd

    def append(self, rows: list[dict]) -> None:
        """Write all rows as one `write` and fsync: a batch is on disk or (crash mid-write) its torn
        last line is a bad row the loader counts -- and it was never acknowledged."""
        if not rows:
            return
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=REES46_COLUMNS, lineterminator="\n")
        w.writerows(rows)
        fd = self._open()
        os.write(fd, buf.getvalue().encode())
        os.fsync(fd)
        self.rows += len(rows)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _raw_id(x: str):
    """Ids come back from CSV as text: "101" -> 101 (as the client sent it), others stay strings."""
    s = str(x)
    return int(s) if s.lstrip("-").isdigit() else s


def recent_sessions(folder: str | Path, since: float) -> list[tuple[str, float, object, str]]:
    """(session key, unix time, item, event name) of the logged events at or after `since`, oldest
    first, for rebuilding live sessions after a restart. Missing folder: nothing. A torn last line
    (a writer killed mid-batch, never acknowledged) is skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    cutoff = datetime.fromtimestamp(since, timezone.utc).strftime(REES46_TIME)
    out = []
    for f in sorted(folder.glob("events-*.csv")):
        if f.stat().st_mtime < since - 1:  # nothing in a file last written before the window
            continue
        df = pd.read_csv(f, dtype=str, keep_default_na=False, on_bad_lines="skip",
                         usecols=["event_time", "event_type", "product_id", "user_session"])
        df = df[(df["event_time"] >= cutoff) & (df["user_session"] != "") & (df["product_id"] != "")]
        ts = pd.to_datetime(df["event_time"], format=REES46_TIME, errors="coerce", utc=True)
        ok = ts.notna().to_numpy()
        # Through total_seconds: pandas may parse to second or microsecond resolution, not always ns.
        secs = (ts[ok] - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy() if ok.any() else np.empty(0)
        for (_, r), t in zip(df[ok].iterrows(), secs):
            out.append((r["user_session"], float(t), _raw_id(r["product_id"]), r["event_type"]))
    out.sort(key=lambda x: x[1])  # stable: equal seconds keep file order
    return out


def _merge_items(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """One row per item; each column takes the newest input's non-empty value (a served log knows
    less about an item than the base log's catalog, and must not blank it out)."""
    frames = [t.replace("", np.nan) if len(t) else t for t in tables if len(t)]
    if not frames:
        return tables[0] if tables else pd.DataFrame({"item": np.empty(0, np.int64)})
    both = pd.concat(frames, ignore_index=True)
    return both.groupby("item", sort=False, as_index=False).last()


def load_many(fmt: str, paths: list[str | Path], **load_kw) -> EventLog:
    """Several inputs of one format as one EventLog, in the order given; an event an earlier input
    already holds (user, item, ts, event) is counted as a duplicate and kept out."""
    paths = [str(p) for p in paths]
    if not paths:
        raise DataError("no input: give --path at least once")
    logs = [load(fmt, p, **load_kw) for p in paths]
    if len(logs) == 1:
        return logs[0]
    key_cols = ["user", "item", "ts", "event"]
    report = BadRowReport(source=" + ".join(paths))
    kept, seen = [], None
    for path, log in zip(paths, logs):
        report.merge(log.bad_rows)
        ev = log.events
        if seen is not None and len(ev):
            dup = pd.MultiIndex.from_frame(ev[key_cols]).isin(seen)
            if dup.any():
                reason = f"duplicate of an earlier input's event [{Path(path).name}]"
                report.counts[reason] = report.counts.get(reason, 0) + int(dup.sum())
                ev = ev.loc[~dup]
        keys = pd.MultiIndex.from_frame(log.events[key_cols])
        seen = keys if seen is None else seen.append(keys).unique()
        kept.append(ev)
    events = pd.concat(kept, ignore_index=True)
    for c in ("user", "item"):  # an int column beside a string one: compare as the loaders would
        if events[c].dtype == object:
            events[c] = events[c].map(_raw_id)
    items = _merge_items([log.items for log in logs])
    return EventLog(events, items, report, report.source, sum(log.rows_read for log in logs))
