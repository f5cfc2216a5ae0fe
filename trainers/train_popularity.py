"""Train (count) the popularity baseline, evaluate it, and register it in MLflow.

    python -m trainers.train_popularity --format sasrec --path ../shared/data/ml-1m
"""
from __future__ import annotations

import argparse
import sys

from models.popularity import PopularityConfig, PopularityEngine
from reccore import tracking
from reccore.config import config_from_dict
from recdata.dataset import prepare
from recdata.schema import DataError
from trainers.common import add_data_args, load_kwargs, prepared_cache
from trainers.engine_job import fit_evaluate_register


def train(ds, options: dict | None = None, register: bool = True) -> dict:
    """Fit on the train split, evaluate on validation and test, log and register. Needs an active
    MLflow run (the caller's)."""
    config = config_from_dict(PopularityConfig, options, "popularity options")
    engine = PopularityEngine(config, ds.catalog)
    return fit_evaluate_register(engine, ds, "popularity" if register else None, params=vars(config))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="recsys train popularity", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    p.add_argument("--use-weights", action="store_true", help="count event weights, not interactions")
    p.add_argument("--half-life-days", type=float, help="recency decay of counts")
    args = p.parse_args(argv)
    try:
        ds = prepare(args.fmt, args.path, cache_dir=prepared_cache(), **load_kwargs(args))
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    opts = {"use_weights": args.use_weights, "half_life_days": args.half_life_days}
    with tracking.run("popularity", run_name=f"popularity-{args.fmt}"):
        out = train(ds, opts)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
