"""The command line of the generator: `python -m recdata.synthetic`, `recsys data synth`."""
from __future__ import annotations

import argparse
import json

import pandas as pd

from recdata.synthetic.config import SyntheticConfig
from recdata.synthetic.measure import measure_structure
from recdata.synthetic.writer import write_csv


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m recdata.synthetic",
                                description="Write a synthetic REES46-schema event log (the embedded default data).")
    d = SyntheticConfig()
    p.add_argument("--users", type=int, default=d.n_users, help="number of shoppers")
    p.add_argument("--items", type=int, default=d.n_items, help="catalog size")
    p.add_argument("--days", type=int, default=d.n_days, help="length of the window in days")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (same seed, same bytes)")
    p.add_argument("--calibration", default=None, help="calibration JSON (default: the committed one)")
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--measure", action="store_true", help="also read it back and print the planted-structure figures")
    a = p.parse_args(argv)
    cfg = SyntheticConfig(n_users=a.users, n_items=a.items, n_days=a.days, seed=a.seed, calibration=a.calibration)
    summary = write_csv(cfg, a.out)
    print(f"wrote {summary['rows']:,} events of {summary['users']:,} users over {summary['items']:,} items "
          f"to {summary['path']} in {summary['seconds']:.2f} s")
    if a.measure:
        frame = pd.read_csv(a.out, dtype={"category_code": str, "brand": str}, keep_default_na=False)
        summary["structure"] = measure_structure(frame)
        print(json.dumps(summary["structure"], indent=1))
    return summary
