"""Loaders: REES46 CSV, SASRec `user item` text, RecBole atomic files, any CSV/Parquet by mapping.

Each returns an `EventLog` (see schema.py). Rows that cannot be used are kept out of the events and
counted in `EventLog.bad_rows` with their line numbers; nothing is dropped without a count, and
`rows_read == len(events) + bad_rows.total` holds for every loader.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from reccore.progress import Progress
from recdata.csvrows import (
    check_columns,
    event_codes,
    rees46_seconds,
    LineTracker,
    read_csv_chunks,
    RowValidator,
    to_float,
    to_int,
    unix_seconds,
)
from recdata.schema import BadRowReport, DataError, EventLog, EventWeights, make_events

REES46_COLUMNS = (
    "event_time", "event_type", "product_id", "category_id", "category_code", "brand", "price",
    "user_id", "user_session",
)
FORMATS = ("rees46", "sasrec", "recbole", "csv")


# ---------------------------------------------------------------------------------------------------
# REES46
# ---------------------------------------------------------------------------------------------------
def load_rees46(
    path: str | Path,
    weights: EventWeights | None = None,
    chunksize: int = 500_000,
    on_chunk: Callable[[int], None] | None = None,
) -> EventLog:
    """REES46 "eCommerce behavior data from multi category store" CSV (one file or a folder of them),
    streamed `chunksize` rows at a time so memory follows the kept columns, not the file size."""
    files = _csv_files(Path(path))
    report = BadRowReport(source=str(path))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("user", "item", "ts", "event", "session")}
    item_parts: list[pd.DataFrame] = []
    rows_read = 0
    bar = Progress(None, desc=f"read {Path(path).name}", unit="row")  # a line every 30 s; silent when quick
    for f in files:
        header = _header(f)
        check_columns(f, header, REES46_COLUMNS, "rees46")
        tracker = LineTracker()
        file_report = BadRowReport()
        pos = 0
        # No usecols: with it pandas silently truncates rows that have extra fields.
        for chunk in read_csv_chunks(f, chunksize, file_report, tracker):
            n = len(chunk)
            bar.update(n, file=f.name)
            lines = tracker.lines_of(np.arange(pos, pos + n, dtype=np.int64))
            pos += n
            ok, cols, attrs = validate_rees46_chunk(chunk, lines, file_report)
            for k in parts:
                parts[k].append(cols[k])
            item_parts.append(attrs.drop_duplicates("item", keep="last"))
            if on_chunk:
                on_chunk(n)
        rows_read += pos + len(tracker.skipped)
        if len(files) > 1:
            file_report.counts = {f"{k} [{f.name}]": c for k, c in file_report.counts.items()}
            file_report.lines = {f"{k} [{f.name}]": c for k, c in file_report.lines.items()}
        report.merge(file_report)
    bar.close()

    cat = {k: np.concatenate(v) if v else np.empty(0, np.int64) for k, v in parts.items()}
    events = make_events(cat["user"], cat["item"], cat["ts"], cat["event"], weights)
    events["session"] = cat["session"]
    items = (
        pd.concat(item_parts, ignore_index=True).drop_duplicates("item", keep="last")
        if item_parts else pd.DataFrame({"item": np.empty(0, np.int64)})
    )
    # Category codes are dotted paths ("electronics.smartphone"); unknown ones are empty in the source.
    items["title"] = _rees46_title(items)
    return EventLog(events, items.reset_index(drop=True), report, str(path), rows_read)


def validate_rees46_chunk(chunk: pd.DataFrame, lines: np.ndarray, report: BadRowReport
                          ) -> tuple[np.ndarray, dict[str, np.ndarray], pd.DataFrame]:
    """Check one chunk of REES46 rows (strings, as read); every failing row is counted in `report`
    under its first reason, with its line. Returns the mask of good rows, their parsed columns (user,
    item, ts, event, session) and their item attributes, in input order. The pandas and the Ray Data
    preparation both validate through here, so they keep out the same rows for the same reasons."""
    v = RowValidator(len(chunk), lines, report)
    ts, bad = rees46_seconds(chunk["event_time"])
    v.fail("missing or bad event_time", bad)
    ev, bad = event_codes(chunk["event_type"])
    v.fail("unknown event_type", bad)
    item, bad = to_int(chunk["product_id"])
    v.fail("missing or bad product_id", bad)
    user, bad = to_int(chunk["user_id"])
    v.fail("missing or bad user_id", bad)
    price, bad = to_float(chunk["price"])
    v.fail("missing or bad price", bad | (price < 0))
    ok = v.ok
    cols = {"user": user[ok], "item": item[ok], "ts": ts[ok], "event": ev[ok],
            "session": pd.util.hash_array(chunk["user_session"].to_numpy()[ok]).view(np.int64)}
    attrs = pd.DataFrame({"item": item[ok], "category": chunk["category_code"].to_numpy()[ok],
                          "category_id": chunk["category_id"].to_numpy()[ok], "brand": chunk["brand"].to_numpy()[ok],
                          "price": price[ok].astype(np.float32)})
    return ok, cols, attrs


def _rees46_title(items: pd.DataFrame) -> pd.Series:
    # The dataset has no product names: "brand + leaf category" is the nearest thing to a title.
    leaf = items["category"].fillna("").str.split(".").str[-1].str.replace("_", " ")
    return (items["brand"].fillna("") + " " + leaf).str.strip()


def _csv_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".csv")
        if not files:
            raise DataError(f"{path} is a folder with no .csv files; point --path at a REES46 CSV file")
        return files
    if not path.exists():
        raise DataError(f"{path} does not exist; check --path")
    return [path]


def _header(path: Path) -> list[str]:
    try:
        return list(pd.read_csv(path, nrows=0).columns)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DataError(f"cannot read the header of {path}: {e}") from e


# ---------------------------------------------------------------------------------------------------
# SASRec `user item`
# ---------------------------------------------------------------------------------------------------
def load_sasrec(path: str | Path, weights: EventWeights | None = None) -> EventLog:
    """The SASRec paper's text format: `user item` per line, each user's lines in time order.
    `path` is the .txt file or its folder; `items_sas_with_titles.tsv` beside it adds titles/genres."""
    path = Path(path)
    if path.is_dir():
        txts = sorted(path.glob("*.txt"))
        txts = [p for p in txts if not p.name.startswith(("sas_to_", "ml-1m_README"))] or txts
        if not txts:
            raise DataError(f"{path} holds no `user item` .txt file; point --path at one")
        path = txts[0]
    if not path.exists():
        raise DataError(f"{path} does not exist; check --path")
    report = BadRowReport(source=str(path))
    try:
        raw = pd.read_csv(path, sep=r"\s+", header=None, dtype=str, names=["user", "item", "extra"],
                          engine="c", skip_blank_lines=False, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise DataError(f"cannot read {path} as `user item` lines: {e}") from e
    lines = np.arange(1, len(raw) + 1)  # no header in this format
    v = RowValidator(len(raw), lines, report)
    v.fail("extra fields (expected `user item`)", (raw["extra"] != "").to_numpy())
    user, bad = to_int(raw["user"])
    v.fail("missing or bad user id", bad)
    item, bad = to_int(raw["item"])
    v.fail("missing or bad item id", bad)
    user, item = user[v.ok], item[v.ok]
    # No clock in this format: the position in the user's sequence is the order.
    order = pd.Series(user).groupby(user).cumcount().to_numpy()
    events = make_events(user, item, order, np.zeros(len(user), np.int8), weights)
    items = _sasrec_items(path.parent, events)
    return EventLog(events, items, report, str(path), len(raw))


def _sasrec_items(folder: Path, events: pd.DataFrame) -> pd.DataFrame:
    tsv = folder / "items_sas_with_titles.tsv"
    if not tsv.exists():
        return pd.DataFrame({"item": np.unique(events["item"].to_numpy())})
    meta = pd.read_csv(tsv, sep="\t", dtype={"sas_item_id": np.int64}, encoding="utf-8")
    return pd.DataFrame(
        {"item": meta["sas_item_id"], "title": meta["title"], "genres": meta["genres"],
         "category": meta["genres"].str.split("|").str[0]}
    )


# ---------------------------------------------------------------------------------------------------
# RecBole atomic files
# ---------------------------------------------------------------------------------------------------
def load_recbole(path: str | Path, weights: EventWeights | None = None) -> EventLog:
    """RecBole atomic files: `<name>.inter` (and optionally `<name>.item`) with typed headers such as
    `user_id:token  item_id:token  rating:float  timestamp:float`. Ratings count as views."""
    path = Path(path)
    inter = sorted(path.glob("*.inter")) if path.is_dir() else [path]
    if not inter or not inter[0].exists():
        raise DataError(f"no .inter file at {path}; point --path at a RecBole dataset folder")
    inter_path = inter[0]
    tracker, report = LineTracker(), BadRowReport(source=str(inter_path))
    chunks = list(read_csv_chunks(inter_path, 1_000_000, report, tracker, sep="\t"))
    raw = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()
    raw.columns = [c.split(":")[0] for c in raw.columns]
    check_columns(inter_path, raw.columns, ("user_id", "item_id"), "recbole")
    v = RowValidator(len(raw), tracker.lines_of(np.arange(len(raw))), report)
    user, bad = to_int(raw["user_id"])
    v.fail("missing or bad user_id", bad)
    item, bad = to_int(raw["item_id"])
    v.fail("missing or bad item_id", bad)
    if "timestamp" in raw.columns:
        ts, bad = to_float(raw["timestamp"])
        v.fail("missing or bad timestamp", bad)
    else:
        ts = np.arange(len(raw), dtype=np.float64)
    ok = v.ok
    events = make_events(user[ok], item[ok], ts[ok].astype(np.int64), np.zeros(ok.sum(), np.int8), weights)
    items = _recbole_items(inter_path.with_suffix(".item"), events)
    return EventLog(events, items, report, str(inter_path), len(raw) + len(tracker.skipped))


def _recbole_items(item_path: Path, events: pd.DataFrame) -> pd.DataFrame:
    if not item_path.exists():
        return pd.DataFrame({"item": np.unique(events["item"].to_numpy())})
    meta = pd.read_csv(item_path, sep="\t", dtype=str, keep_default_na=False)
    meta.columns = [c.split(":")[0] for c in meta.columns]
    out = pd.DataFrame({"item": pd.to_numeric(meta["item_id"], errors="coerce")}).dropna()
    out["item"] = out["item"].astype(np.int64)
    meta = meta.loc[out.index]
    for src, dst in (("movie_title", "title"), ("title", "title"), ("brand", "brand"), ("price", "price")):
        if src in meta.columns:
            out[dst] = meta[src] if dst != "price" else pd.to_numeric(meta[src], errors="coerce")
    if "class" in meta.columns:  # RecBole ML files: space-separated genres
        out["genres"] = meta["class"].str.split().str.join("|")
        out["category"] = meta["class"].str.split().str[0]
    return out.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------
# Generic CSV / Parquet with a column mapping
# ---------------------------------------------------------------------------------------------------
def load_table(
    path: str | Path,
    mapping: dict[str, str] | None = None,
    event_map: dict[str, str] | None = None,
    weights: EventWeights | None = None,
) -> EventLog:
    """Any CSV or Parquet event table. `mapping` maps our names to the file's columns, e.g.
    {"user": "customer_id", "item": "sku", "ts": "time", "event": "action", "title": "name"}.
    Required: user, item. Optional: ts (else file order), event (else view), and item text fields
    title/brand/category/price. `event_map` renames the file's event values to view/cart/purchase."""
    path = Path(path)
    mapping = {"user": "user", "item": "item", **(mapping or {})}
    if not path.exists():
        raise DataError(f"{path} does not exist; check --path")
    report = BadRowReport(source=str(path))
    if path.suffix in (".parquet", ".pq"):
        raw = pd.read_parquet(path).astype(str)
        lines = np.arange(len(raw))  # parquet rows are 0-based positions, not text lines
        skipped = 0
    else:
        tracker = LineTracker()
        chunks = list(read_csv_chunks(path, 1_000_000, report, tracker))
        raw = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame(columns=_header(path))
        lines = tracker.lines_of(np.arange(len(raw)))
        skipped = len(tracker.skipped)
    need = [mapping[k] for k in ("user", "item")] + [mapping[k] for k in ("ts", "event") if k in mapping]
    check_columns(path, raw.columns, need, "csv")
    v = RowValidator(len(raw), lines, report)
    user, item = raw[mapping["user"]].str.strip(), raw[mapping["item"]].str.strip()
    v.fail("missing user id", (user == "").to_numpy())
    v.fail("missing item id", (item == "").to_numpy())
    if "event" in mapping:
        ev, bad = event_codes(raw[mapping["event"]], event_map)
        v.fail("unknown event type", bad)
    else:
        ev = np.zeros(len(raw), np.int8)
    if "ts" in mapping:
        col = raw[mapping["ts"]]
        num = pd.to_numeric(col, errors="coerce")
        if num.notna().mean() > 0.5:
            ts, bad = num.to_numpy(dtype=np.float64, na_value=np.nan), num.isna().to_numpy()
        else:
            dt = pd.to_datetime(col, errors="coerce", utc=True)
            ts, bad = unix_seconds(dt.fillna(pd.Timestamp(0, tz="UTC"))).astype(np.float64), dt.isna().to_numpy()
        v.fail("missing or bad timestamp", bad)
        ts = np.nan_to_num(ts).astype(np.int64)
    else:
        ts = np.arange(len(raw), dtype=np.int64)
    ok = v.ok
    events = make_events(_ids(user[ok]), _ids(item[ok]), ts[ok], ev[ok], weights)
    text_cols = {k: mapping[k] for k in ("title", "brand", "category", "price") if k in mapping}
    items = pd.DataFrame({"item": events["item"]})
    for dst, src in text_cols.items():
        items[dst] = raw.loc[ok, src].to_numpy()
    if "price" in items:
        items["price"] = pd.to_numeric(items["price"], errors="coerce")
    items = items.drop_duplicates("item", keep="last").reset_index(drop=True)
    return EventLog(events, items, report, str(path), len(raw) + skipped)


def _ids(s: pd.Series):
    """Integer ids stay integers (smaller, and they match JSON requests); anything else is a string."""
    num = pd.to_numeric(s, errors="coerce")
    if num.notna().all() and (num % 1 == 0).all():
        return num.to_numpy(dtype=np.int64)
    return s.to_numpy(dtype=object)


def load(fmt: str, path: str | Path, **kw) -> EventLog:
    """Dispatch by format name: rees46 | sasrec | recbole | csv."""
    loaders = {"rees46": load_rees46, "sasrec": load_sasrec, "recbole": load_recbole, "csv": load_table}
    if fmt not in loaders:
        raise DataError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return loaders[fmt](path, **kw)
