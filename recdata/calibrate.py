"""Calibration statistics of a REES46 event log, for the synthetic generator (`recdata.synthetic`).

    python -m recdata.calibrate --path ../shared/data/rees46-oct2019-head \
        --out recdata/calibration/rees46_oct2019_head.json

The JSON is committed, so a fresh clone (which has no ../shared/data) generates data from it. Every
figure is computed here from the file through `recdata.loaders.load_rees46`; nothing is typed in.

What is measured, and how:
- funnel: event-type counts, cart and purchase events per view, and per session the joint shares of
  (has a cart, has a purchase), plus distinct items carted/bought per converting session;
- session lengths (events per `user_session`) as a pmf, events and sessions per user;
- inter-event gaps inside a session (seconds) as quantiles, how often a view repeats the item of
  the previous event of the same session, and how often consecutive events of a session change
  `category_id`;
- categories: event and item shares per `category_code` (empty codes pooled as "unknown", with their
  number of `category_id`s), the brand mix of each category, and a Zipf exponent of the tail;
- prices: a log-normal fit (mean and std of log price over distinct items, price > 0) per top-level
  category (the part of `category_code` before the first dot; "unknown" for empty codes);
- brands: share of events/items without a brand, the top brands' event shares, a Zipf exponent;
- item popularity: Zipf exponent of events per item by rank.
Zipf exponents are least-squares slopes of log(count) on log(rank) over the ranks whose count is at
least 2 (singletons form a flat floor in a sample this short and would flatten the slope).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from recdata.loaders import load_rees46
from recdata.schema import EventType

CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"
DEFAULT_CALIBRATION = CALIBRATION_DIR / "rees46_oct2019_head.json"
MAX_SESSION_LENGTH = 60
"""Session-length pmf support: lengths above this are pooled into the last bin."""
TOP_BRANDS = 100
BRANDS_PER_CATEGORY = 12
MIN_EVENTS_FOR_CATEGORY_BRANDS = 30
"""Categories with fewer events take the brand mix of their top-level category."""
MIN_ITEMS_FOR_CATEGORY_SHARES = 30
"""Categories with fewer items take the missing-brand share of their top-level category."""
UNKNOWN = "unknown"


def zipf_exponent(counts) -> float:
    """Slope s of count ~ rank^-s by least squares in log-log space, over counts >= 2."""
    c = np.sort(np.asarray(counts, dtype=np.float64))[::-1]
    c = c[c >= 2]
    if len(c) < 3:
        return 1.0
    r = np.arange(1, len(c) + 1, dtype=np.float64)
    slope = np.polyfit(np.log(r), np.log(c), 1)[0]
    return float(-slope)


def _round(x, sig: int = 6):
    """Round floats to `sig` significant digits, recursively (stable, readable JSON)."""
    if isinstance(x, dict):
        return {k: _round(v, sig) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_round(v, sig) for v in x]
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return 0.0 if x == 0 or not math.isfinite(x) else round(x, sig - 1 - int(math.floor(math.log10(abs(x)))))
    if isinstance(x, np.integer):
        return int(x)
    return x


def _shares(counts: pd.Series, top: int | None = None) -> dict[str, float]:
    total = counts.sum()
    c = counts.sort_values(ascending=False, kind="stable")
    if top is not None:
        c = c.head(top)
    return {str(k): float(v / total) for k, v in c.items()}


def calibrate(path: str | Path) -> dict:
    """All calibration figures of one REES46 file or folder, as a JSON-ready dict."""
    log = load_rees46(path)
    ev = log.events.copy()
    items = log.items.set_index("item")
    ev["code"] = items["category"].reindex(ev["item"]).fillna("").to_numpy()
    ev["code"] = ev["code"].replace("", UNKNOWN)
    ev["brand"] = items["brand"].reindex(ev["item"]).fillna("").to_numpy()
    ev["top"] = ev["code"].str.split(".").str[0]
    ev["order"] = np.arange(len(ev))
    ev = ev.sort_values(["session", "ts", "order"], kind="stable").reset_index(drop=True)

    is_view = ev["event"].to_numpy() == EventType.VIEW
    is_cart = ev["event"].to_numpy() == EventType.CART
    is_buy = ev["event"].to_numpy() == EventType.PURCHASE
    n_views = int(is_view.sum())

    # -- sessions ---------------------------------------------------------------------------------
    sess = ev.groupby("session", sort=False)
    lengths = sess.size().to_numpy()
    has_cart = sess["event"].agg(lambda e: (e == EventType.CART).any()).to_numpy()
    has_buy = sess["event"].agg(lambda e: (e == EventType.PURCHASE).any()).to_numpy()
    n_sessions = len(lengths)
    carted_items = ev[is_cart].groupby("session")["item"].nunique()
    bought_items = ev[is_buy].groupby("session")["item"].nunique()
    pmf = np.bincount(np.minimum(lengths, MAX_SESSION_LENGTH), minlength=MAX_SESSION_LENGTH + 1)[1:]

    s = ev["session"].to_numpy()
    same = s[1:] == s[:-1]
    gaps = np.diff(ev["ts"].to_numpy())[same]
    it = ev["item"].to_numpy()
    # Of the events after the first of a session, how many show the item of the event before.
    cid = log.items.set_index("item")["category_id"].reindex(ev["item"]).fillna("").to_numpy()
    switch = float((cid[1:] != cid[:-1])[same].mean()) if same.any() else 0.0
    repeat_prev = float((it[1:] == it[:-1])[same & is_view[1:]].mean()) if same.any() else 0.0
    qs = np.linspace(0, 1, 51)

    per_user = ev.groupby("user").agg(events=("event", "size"), sessions=("session", "nunique"))

    # -- categories -------------------------------------------------------------------------------
    item_tab = log.items.assign(code=log.items["category"].fillna("").replace("", UNKNOWN))
    item_tab["top"] = item_tab["code"].str.split(".").str[0]
    ev_by_code = ev.groupby("code").size()
    items_by_code = item_tab.groupby("code")["item"].nunique()
    branded = ev[ev["brand"] != ""]
    brands_by_top = {t: _shares(g.groupby("brand").size(), BRANDS_PER_CATEGORY) for t, g in branded.groupby("top")}
    no_brand = item_tab["brand"].fillna("") == ""
    missing_by_top = no_brand.groupby(item_tab["top"]).mean()
    missing_by_code = no_brand.groupby(item_tab["code"]).mean()
    categories = []
    for code, n in ev_by_code.sort_values(ascending=False, kind="stable").items():
        if code == UNKNOWN:
            continue
        sub = branded[branded["code"] == code]
        top = code.split(".")[0]
        brands = (_shares(sub.groupby("brand").size(), BRANDS_PER_CATEGORY)
                  if n >= MIN_EVENTS_FOR_CATEGORY_BRANDS and len(sub) else brands_by_top.get(top, {}))
        categories.append({
            "code": code,
            "event_share": float(n / len(ev)),
            "item_share": float(items_by_code.get(code, 0) / len(item_tab)),
            "brands": brands,
            "brands_from": "category" if n >= MIN_EVENTS_FOR_CATEGORY_BRANDS else "top_level",
            # share of the category's items without a brand (furniture often has none, phones never)
            "missing_brand_item_share": float(
                missing_by_code[code] if items_by_code.get(code, 0) >= MIN_ITEMS_FOR_CATEGORY_SHARES
                else missing_by_top.get(top, no_brand.mean())),
        })
    unknown_ev = ev[ev["code"] == UNKNOWN]
    unknown_items = item_tab[item_tab["code"] == UNKNOWN]
    unknown_ids = log.items.loc[log.items["item"].isin(unknown_items["item"]), "category_id"]

    # -- prices: log-normal per top-level category, over distinct items ------------------------------
    priced = item_tab[item_tab["price"] > 0]
    logp = np.log(priced["price"].to_numpy(np.float64))
    prices = {
        top: {"mu": float(np.mean(np.log(g["price"]))), "sigma": float(np.std(np.log(g["price"]))),
              "median": float(np.median(g["price"])), "n_items": int(len(g))}
        for top, g in priced.groupby("top")
    }
    prices["all"] = {"mu": float(logp.mean()), "sigma": float(logp.std()),
                     "median": float(np.exp(np.median(logp))), "n_items": int(len(logp))}

    # -- brands, items --------------------------------------------------------------------------------
    brand_counts = branded.groupby("brand").size()
    item_counts = ev.groupby("item").size()

    out = {
        "source": Path(path).name,
        "rows": int(log.rows_read),
        "bad_rows": int(log.bad_rows.total),
        "users": int(ev["user"].nunique()),
        "items": int(ev["item"].nunique()),
        "sessions": int(n_sessions),
        "time_span_seconds": int(ev["ts"].max() - ev["ts"].min()),
        "funnel": {
            "event_counts": {n.name.lower(): int((ev["event"] == n).sum()) for n in EventType},
            "cart_per_view": float(is_cart.sum() / n_views),
            "purchase_per_view": float(is_buy.sum() / n_views),
            "session_cart_rate": float(has_cart.mean()),
            "session_purchase_rate": float(has_buy.mean()),
            "session_outcomes": {
                "none": float((~has_cart & ~has_buy).mean()),
                "cart_only": float((has_cart & ~has_buy).mean()),
                "purchase_only": float((~has_cart & has_buy).mean()),
                "cart_and_purchase": float((has_cart & has_buy).mean()),
            },
            "purchase_given_cart_session": float(has_buy[has_cart].mean()) if has_cart.any() else 0.0,
            "items_per_cart_session": float(carted_items.mean()) if len(carted_items) else 1.0,
            "items_per_purchase_session": float(bought_items.mean()) if len(bought_items) else 1.0,
            # the same item is often added to the cart (or bought) more than once in a session
            "cart_events_per_item": float(is_cart.sum() / max(carted_items.sum(), 1)),
            "purchase_events_per_item": float(is_buy.sum() / max(bought_items.sum(), 1)),
        },
        "sessions_stats": {
            "length_pmf": (pmf / pmf.sum()).tolist(),
            "length_mean": float(lengths.mean()),
            "length_median": float(np.median(lengths)),
            "gap_quantiles_seconds": np.quantile(gaps, qs).tolist() if len(gaps) else [0.0] * len(qs),
            "gap_mean_seconds": float(gaps.mean()) if len(gaps) else 0.0,
            "repeat_previous_item": repeat_prev,
            "category_switch": switch,
        },
        "users_stats": {
            "events_per_user_mean": float(per_user["events"].mean()),
            "events_per_user_median": float(per_user["events"].median()),
            "events_per_user_quantiles": np.quantile(per_user["events"], [0.5, 0.75, 0.9, 0.99, 1.0]).tolist(),
            "sessions_per_user_mean": float(per_user["sessions"].mean()),
        },
        "categories": {
            "named": categories,
            "unknown": {
                "event_share": float(len(unknown_ev) / len(ev)),
                "item_share": float(len(unknown_items) / len(item_tab)),
                "n_category_ids": int(unknown_ids.nunique()),
                "missing_brand_item_share": float(missing_by_top.get(UNKNOWN, 0.0)),
                "zipf_exponent": zipf_exponent(unknown_ev.merge(
                    log.items[["item", "category_id"]], on="item").groupby("category_id").size()),
                "brands": _shares(branded[branded["code"] == UNKNOWN].groupby("brand").size(), BRANDS_PER_CATEGORY),
            },
            "zipf_exponent": zipf_exponent(ev_by_code.drop(UNKNOWN, errors="ignore")),
            "top_level_event_shares": _shares(ev.groupby("top").size()),
        },
        "prices": prices,
        "brands": {
            "n_brands": int(brand_counts.size),
            "missing_event_share": float((ev["brand"] == "").mean()),
            "missing_item_share": float((item_tab["brand"].fillna("") == "").mean()),
            "top_event_shares": _shares(brand_counts, TOP_BRANDS),
            "zipf_exponent": zipf_exponent(brand_counts),
        },
        "item_popularity": {"zipf_exponent": zipf_exponent(item_counts),
                            "events_per_item_mean": float(item_counts.mean())},
    }
    return _round(out)


def load_calibration(path: str | Path | None = None) -> dict:
    """The committed calibration (default) or another calibration JSON."""
    path = Path(path) if path is not None else DEFAULT_CALIBRATION
    if not path.exists():
        raise FileNotFoundError(
            f"calibration {path} not found; create it with `python -m recdata.calibrate --path "
            f"<rees46 csv or folder> --out {path}`"
        )
    return json.loads(path.read_text())


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m recdata.calibrate", description=__doc__.splitlines()[0])
    p.add_argument("--path", required=True, help="REES46 CSV file or folder of them")
    p.add_argument("--out", default=str(DEFAULT_CALIBRATION), help="where to write the JSON")
    a = p.parse_args(argv)
    cal = calibrate(a.path)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(cal, indent=1) + "\n")
    f = cal["funnel"]
    print(f"{a.path}: {cal['rows']} rows, {cal['users']} users, {cal['items']} items, {cal['sessions']} sessions")
    print(f"cart/view {f['cart_per_view']:.4f}  purchase/view {f['purchase_per_view']:.4f}  "
          f"session cart {f['session_cart_rate']:.4f}  session purchase {f['session_purchase_rate']:.4f}  "
          f"mean session length {cal['sessions_stats']['length_mean']:.2f}")
    print(f"wrote {out}")
    return cal


if __name__ == "__main__":
    main()
