"""Synthetic data benchmark: generation speed, the planted-structure figures, and what they mean for
models (a transition model vs popularity, leave-one-out full ranking).

    python -m bench.synthetic [--users 5000] [--items 3000] [--seed 0]

Prints a human table; the last line is one JSON object of the figures.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd

from models.markov import MarkovEngine
from models.popularity import PopularityEngine
from recdata.calibrate import load_calibration
from recdata.dataset import prepare
from recdata.evaluation import evaluate, format_table
from recdata.synthetic import SyntheticConfig, generate, measure_structure, write_csv


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.synthetic", description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=5000)
    p.add_argument("--items", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    cfg = SyntheticConfig(n_users=a.users, n_items=a.items, seed=a.seed)

    t0 = time.perf_counter()
    frame = generate(cfg)
    gen_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "synthetic.csv"
        t0 = time.perf_counter()
        write_csv(cfg, out)
        csv_s = time.perf_counter() - t0
        structure = measure_structure(pd.read_csv(out, dtype={"category_code": str, "brand": str},
                                                  keep_default_na=False))
        ds = prepare("rees46", out)
    rows = {
        "popularity": evaluate(PopularityEngine(None, ds.catalog).fit(ds.train), ds, "test"),
        "markov": evaluate(MarkovEngine(None, ds.catalog).fit(ds.train), ds, "test"),
    }
    cal = load_calibration()["funnel"]
    c, b, d, f = structure["chain"], structure["brand"], structure["drift"], structure["funnel"]
    print(f"synthetic REES46: {len(frame):,} events, {cfg.n_users:,} users, {cfg.n_items:,} items, seed {cfg.seed}")
    print(f"generate() {gen_s:.2f} s ({len(frame) / gen_s:,.0f} events/s); write_csv() {csv_s:.2f} s")
    print(f"events per user {structure['events_per_user']:.1f}")
    print(f"{'figure':<48}{'measured':>10}{'reference':>11}")
    for name, got, ref in [
        ("chain: next session in accessory category", c["next_session_in_chain"], c["base_rate"]),
        ("brand: same brand as previous item (chance)", b["same_brand_as_previous"], b["chance"]),
        ("brand: bought brand after purchase (share)", b["bought_brand_after_purchase"], b["bought_brand_share"]),
        ("drift: TV first vs last third (vs middle)", d["tv_first_last"], d["tv_first_middle"]),
        ("funnel: cart per view (calibrated)", f["cart_per_view"], cal["cart_per_view"]),
        ("funnel: purchase per view (calibrated)", f["purchase_per_view"], cal["purchase_per_view"]),
        ("funnel: sessions with a cart (calibrated)", f["session_cart_rate"], cal["session_cart_rate"]),
        ("funnel: sessions with a purchase (calibrated)", f["session_purchase_rate"], cal["session_purchase_rate"]),
    ]:
        print(f"{name:<48}{got:>10.4f}{ref:>11.4f}")
    print(format_table(rows, title="leave-one-out test, full ranking, seen items filtered"))
    result = {"events": len(frame), "users": cfg.n_users, "items": cfg.n_items, "seed": cfg.seed,
              "generate_s": round(gen_s, 3), "write_csv_s": round(csv_s, 3), "structure": structure,
              "models": {k: {m: v[m] for m in ("hr@10", "ndcg@10", "mrr", "coverage@10")} for k, v in rows.items()}}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
