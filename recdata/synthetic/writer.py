"""Output: one DataFrame, or a CSV written chunk by chunk in global time order (same config, same bytes)."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from recdata.calibrate import load_calibration
from recdata.synthetic.catalog import SyntheticCatalog, _affine_ids
from recdata.synthetic.config import COLUMNS, EVENT_TYPE_NAMES, SyntheticConfig
from recdata.synthetic.shoppers import _generate_chunk

def _chunks(cfg: SyntheticConfig) -> tuple[SyntheticCatalog, Iterator[dict]]:
    cfg.validate()
    cal = load_calibration(cfg.calibration)
    catalog = SyntheticCatalog(cfg, cal)

    def gen():
        for ci, lo in enumerate(range(0, cfg.n_users, cfg.users_per_chunk)):
            yield _generate_chunk(cfg, cal, catalog, ci, lo, min(cfg.n_users, lo + cfg.users_per_chunk))

    return catalog, gen()


def _start_unix(cfg: SyntheticConfig) -> int:
    try:
        return int(pd.Timestamp(cfg.start, tz="UTC").timestamp())
    except ValueError as e:
        raise ValueError(f"start={cfg.start!r} is not a date; use YYYY-MM-DD") from e


def _frame(cfg: SyntheticConfig, catalog: SyntheticCatalog, ts, event, item, user, uuid,
           price_text: bool = False) -> pd.DataFrame:
    """REES46 rows from numeric columns (ts = seconds since cfg.start). `price_text` gives prices as
    their "%.2f" text (what the CSV holds; formatting floats is most of `to_csv`'s time)."""
    uniq, inv = np.unique(ts, return_inverse=True)
    stamps = np.datetime_as_string((uniq + _start_unix(cfg)).astype("datetime64[s]"), unit="s")
    stamps = np.char.add(np.char.replace(stamps, "T", " "), " UTC").astype(object)
    return pd.DataFrame({
        "event_time": stamps[inv],
        "event_type": EVENT_TYPE_NAMES[event],
        "product_id": catalog.product_ids[item],
        "category_id": catalog.category_ids[catalog.cat[item]],
        "category_code": catalog.codes[catalog.cat[item]],
        "brand": catalog._brand_strings()[item],
        "price": catalog.price_text[item] if price_text else catalog.price[item],
        "user_id": _affine_ids(user, 510_000_000, 56_000_000, 9_833_297, 2_173_519),
        "user_session": uuid,
    })


def generate(config: SyntheticConfig | None = None) -> pd.DataFrame:
    """The whole log as a DataFrame in the REES46 schema, in time order (holds everything in memory:
    for large sizes use `write_csv`). `frame.to_csv(path, index=False, float_format="%.2f")` gives
    the same bytes as `write_csv`."""
    cfg = config or SyntheticConfig()
    catalog, chunks = _chunks(cfg)
    frames = [(c["ts"], _frame(cfg, catalog, c["ts"], c["event"], c["item"], c["user"],
                               c["session_uuid"][c["session"]]))
              for c in chunks]
    ts = np.concatenate([t for t, _ in frames])
    df = pd.concat([f for _, f in frames], ignore_index=True)
    return df.iloc[np.argsort(ts, kind="stable")].reset_index(drop=True)


def write_csv(config: SyntheticConfig | None, path: str | Path, day_window: int = 1) -> dict:
    """Write the log to `path` without holding it all: chunks of users go to temporary arrays on
    disk, then are merged into global time order `day_window` days at a time (memory ~ one window).
    Returns a summary (rows, users, items, seconds)."""
    cfg = config or SyntheticConfig()
    t0 = time.perf_counter()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    catalog, chunks = _chunks(cfg)
    rows = 0
    with tempfile.TemporaryDirectory(prefix="synthetic-", dir=path.parent) as tmp:
        n_chunks = 0
        for ci, c in enumerate(chunks):
            for k in ("ts", "event", "item", "user", "session"):
                np.save(Path(tmp) / f"{ci}_{k}.npy", c[k])
            np.save(Path(tmp) / f"{ci}_uuid.npy", c["session_uuid"].astype("S36"))
            n_chunks += 1
        load = lambda ci, k: np.load(Path(tmp) / f"{ci}_{k}.npy", mmap_mode="r")  # noqa: E731
        uuids = [load(ci, "uuid") for ci in range(n_chunks)]
        end = max(int(load(ci, "ts")[-1]) for ci in range(n_chunks) if len(load(ci, "ts"))) + 1
        step = 86400 * day_window
        with open(path, "w", newline="") as f:
            f.write(",".join(COLUMNS) + "\n")
            for lo in range(0, end, step):
                cols: dict[str, list] = {k: [] for k in ("ts", "event", "item", "user", "uuid")}
                for ci in range(n_chunks):
                    ts = load(ci, "ts")
                    a, b = np.searchsorted(ts, [lo, lo + step])
                    if a == b:
                        continue
                    for k in ("ts", "event", "item", "user"):
                        cols[k].append(np.asarray(load(ci, k)[a:b]))
                    cols["uuid"].append(uuids[ci][np.asarray(load(ci, "session")[a:b])].astype(str).astype(object))
                if not cols["ts"]:
                    continue
                arr = {k: np.concatenate(v) for k, v in cols.items()}
                o = np.argsort(arr["ts"], kind="stable")
                df = _frame(cfg, catalog, *(arr[k][o] for k in ("ts", "event", "item", "user", "uuid")),
                            price_text=True)
                df.to_csv(f, index=False, header=False, float_format="%.2f")
                rows += len(df)
    return {"rows": rows, "users": cfg.n_users, "items": catalog.n_items, "path": str(path),
            "seconds": round(time.perf_counter() - t0, 3)}
