"""Train (count) the popularity baseline, evaluate it, and register it in MLflow.

    python -m trainers.train_popularity --format sasrec --path ../shared/data/ml-1m
"""
from __future__ import annotations

import argparse
import sys

from recdata.schema import DataError
from trainers.common import add_data_args, load_kwargs, prepared_cache


def train(ds, options: dict | None = None, register: bool = True) -> dict:
    """Fit on the train split, evaluate on validation and test, log and register. Needs an active
    MLflow run (the caller's)."""
    from models.base import config_from_dict
    from models.popularity import PopularityConfig, PopularityEngine
    from recdata.evaluation import evaluate
    from reccore import tracking

    config = config_from_dict(PopularityConfig, options, "popularity options")
    engine = PopularityEngine(config, ds.catalog).timed_fit(ds.train)
    val, test = evaluate(engine, ds, "val"), evaluate(engine, ds, "test")
    tracking.log_params({"engine": "popularity", **vars(config)})
    tracking.log_metrics(val, prefix="val.")
    tracking.log_metrics(test, prefix="test.")
    version = tracking.log_engine(engine, "popularity" if register else None)
    return {"artifact": "models:/popularity@champion" if version else None, "version": version,
            **{f"val_{k}": v for k, v in val.items() if k != "users"},
            **{f"test_{k}": v for k, v in test.items() if k != "users"}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="recsys train popularity", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    p.add_argument("--use-weights", action="store_true", help="count event weights, not interactions")
    p.add_argument("--half-life-days", type=float, help="recency decay of counts")
    args = p.parse_args(argv)
    from recdata.dataset import prepare
    from reccore import tracking

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
