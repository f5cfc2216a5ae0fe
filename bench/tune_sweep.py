"""Sweep benchmark: an ASHA sweep of >= 8 trials on ML-1M, the best trial against the default config.

    python -m bench.tune_sweep [--engine vae|sasrec] [--num-samples 8] [--budget-minutes 30]

Both the default config and every trial train on the same prepared split and are compared on the
same validation metric (NDCG@10 by default); the best trial and the default are then evaluated on
the test split (full ranking, seen filtered) beside popularity. Last line: JSON figures.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from models.base import get_engine_class
from reccore import tracking
from reccore.config import config_from_dict
from recdata.dataset import prepare
from recdata.evaluation import evaluate
from trainers.tune import load_sweep, run_sweep, trial_epochs

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", choices=("vae", "sasrec"), default="vae")
    p.add_argument("--num-samples", type=int, default=8)
    p.add_argument("--budget-minutes", type=float, default=30.0)
    p.add_argument("--metric", default="val_ndcg@10")
    args = p.parse_args(argv)
    os.environ.setdefault("RECSYS_HOME", tempfile.mkdtemp(prefix="bench-tune-"))  # read at first use

    sweep = load_sweep(REPO / "tune_configs" / f"{args.engine}.yaml")
    sweep = dataclasses.replace(sweep, metric=args.metric, num_samples=args.num_samples,
                                time_budget_minutes=args.budget_minutes)
    path = Path(sweep.data["path"])
    path = path if path.is_absolute() else (REPO / path).resolve()
    if not path.exists():
        print(f"skipped: {path} absent")
        return 0
    ds = prepare(sweep.data["format"], path, cache_dir=tracking.work_dir() / "prepared")

    # The default config under the sweep's fixed settings (same epochs/eval cadence).
    t0 = time.perf_counter()
    cls = get_engine_class(sweep.engine)
    default = cls(config_from_dict(cls.config_class, dict(sweep.base), "default"), ds.catalog)
    default_val = None
    for _, metrics in trial_epochs(sweep.engine)(default, ds, 0):
        default_val = metrics.get(args.metric, default_val)
    default_test = evaluate(default, ds, "test")
    default_minutes = (time.perf_counter() - t0) / 60

    out = run_sweep(sweep)
    rows = [("default config", default_val, default_test), ("best trial", out[f"best_{args.metric}"], out["best_test"]),
            ("popularity", None, out["popularity_test"])]
    print(f"\n{args.engine} sweep on ML-1M: {out['trials']} trials, {out['stopped_early']} stopped early by ASHA, "
          f"{out['errors']} errors, {out['minutes']:.1f} min (default config alone {default_minutes:.1f} min)")
    print(f"best config: {out['best_config']}")
    print(f"{'':<16} {args.metric:>14} {'test hr@10':>11} {'test ndcg@10':>13} {'test recall@20':>15}")
    for name, val, test in rows:
        v = f"{val:.4f}" if val is not None else "-"
        print(f"{name:<16} {v:>14} {test['hr@10']:>11.4f} {test['ndcg@10']:>13.4f} {test['recall@20']:>15.4f}")
    key = args.metric.removeprefix("val_")
    print(json.dumps({
        "engine": args.engine, "trials": out["trials"], "stopped_early": out["stopped_early"], "errors": out["errors"],
        "minutes": round(out["minutes"], 2), f"best_val_{key}": out[f"best_{args.metric}"],
        f"default_val_{key}": default_val, "best_test_ndcg@10": out["best_test"]["ndcg@10"],
        "default_test_ndcg@10": default_test["ndcg@10"], "pop_test_ndcg@10": out["popularity_test"]["ndcg@10"],
        "best_config": out["best_config"], "load_average": os.getloadavg()[0],
    }, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
