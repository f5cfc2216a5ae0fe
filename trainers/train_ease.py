"""Train EASE for the discovery role, evaluate it with full ranking beside popularity, log the run to
MLflow and register it as a version of `discovery` through the promotion gate.

    python -m trainers.train_ease --format sasrec --path ../shared/data/amazon-toys [--lambdas 30,100,300]
    ray job submit --working-dir . -- python -m trainers.train_ease --format sasrec --path ...

The VAE (trainers/train_vae.py) registers into the same `discovery` model, so in the pipeline, where the
`ease` stage runs after `vae`, the gate compares the two on the same validation split and whichever
scores better serves discovery (`models:/discovery@champion`); the run prints the decision. Above
`ease.max_items` items the stage skips itself (the dense item x item matrix would not fit), saying so.
"""
from __future__ import annotations

import argparse
import sys

from models.ease import EaseConfig, EaseEngine
from reccore import tracking
from reccore.config import config_from_dict, load_config
from recdata.dataset import VAL, VAL_FOLD_IN, prepare
from recdata.schema import DataError
from trainers.common import add_data_args, load_kwargs, prepared_cache
from trainers.engine_job import fit_evaluate_register
from trainers.train_vae import REGISTERED, TABLE_KEYS


def train(ds, options: dict | None = None, register: bool = True) -> dict:
    """Fit (lambda chosen on validation), evaluate validation and test beside popularity, log, register
    as a `discovery` version through the gate. Needs an active MLflow run (the caller's)."""
    config = config_from_dict(EaseConfig, options, "ease options")
    if ds.catalog.n_items > config.max_items:
        why = (f"{ds.catalog.n_items} items > ease.max_items={config.max_items}: the item x item matrix would "
               f"need {ds.catalog.n_items ** 2 * 4 / 2 ** 30:.1f} GB; the VAE serves discovery")
        print(f"[ease] skipped: {why}", flush=True)
        tracking.log_params({"skipped": why})
        return {"skipped": why, "artifact": None}
    engine = EaseEngine(config, ds.catalog)
    val_rows = ds.interactions.select([VAL, VAL_FOLD_IN])
    summary = fit_evaluate_register(engine, ds, REGISTERED if register else None,
                                    fit=lambda: engine.fit(ds.train, val_rows),
                                    params={"lambdas": config.lambdas, "max_items": config.max_items,
                                            **{f"weight.{k}": v for k, v in config.event_weights.items()}},
                                    table_keys=TABLE_KEYS)
    tracking.log_params({"lambda": engine.lamb})
    return {**summary, "lambda": engine.lamb, "engine": engine.name, "fits": len(engine.history)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="recsys train ease", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    p.add_argument("--config", help="YAML of EaseConfig fields (unknown keys fail)")
    p.add_argument("--split", choices=("loo", "users"), default="loo",
                   help="loo: leave-one-out by time; users: held-out users (strong generalization)")
    p.add_argument("--lambdas", help="comma-separated L2 grid, chosen on validation (default 30,100,300)")
    p.add_argument("--max-items", type=int, help="largest catalog accepted (memory: items^2 x 4 bytes)")
    p.add_argument("--no-register", action="store_true", help="log the artifact without registering it")
    args = p.parse_args(argv)
    try:
        lambdas = [float(x) for x in args.lambdas.split(",")] if args.lambdas else None
        config = load_config(EaseConfig, args.config, lambdas=lambdas, max_items=args.max_items)
        ds = prepare(args.fmt, args.path, cache_dir=prepared_cache(), split=args.split, **load_kwargs(args))
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    options = {k: v for k, v in vars(config).items() if k != "weights"}
    with tracking.run("ease", run_name=f"ease-{args.fmt}-{args.split}"):
        out = train(ds, options, register=not args.no_register)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
