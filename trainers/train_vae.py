"""Train the discovery engine (Mult-VAE through cornac's VAECF), evaluate it with full ranking beside
popularity, log the run to MLflow and register it as a version of `discovery` through the promotion gate
(`models:/discovery@champion` if it beats the champion on validation -- which may be an EASE version:
trainers/train_ease.py registers into the same model, so the better of the two serves discovery).

    python -m trainers.train_vae --format sasrec --path ../shared/data/ml-1m [--config vae.yaml]
        [--epochs 150] [--split loo|users]
    ray job submit --working-dir . -- python -m trainers.train_vae --format sasrec --path ...
"""
from __future__ import annotations

import argparse
import sys

from models.vae import VAEConfig, VAEEngine
from reccore import tracking
from reccore.progress import Progress
from reccore.config import config_from_dict, load_config
from recdata.dataset import VAL, VAL_FOLD_IN, prepare
from recdata.schema import DataError
from trainers.common import add_data_args, load_kwargs, prepared_cache
from trainers.engine_job import fit_evaluate_register

REGISTERED = "discovery"  # the registered model of the discovery role, whichever engine wins it
TABLE_KEYS = ("recall@20", "ndcg@20", "hr@10", "ndcg@10", "mrr", "coverage@20")


def train(ds, options: dict | None = None, register: bool = True) -> dict:
    """Fit on the train split (the best epoch chosen on validation), evaluate validation and test
    with popularity beside, log and register. Needs an active MLflow run (the caller's)."""
    config = config_from_dict(VAEConfig, options, "vae options")
    engine = VAEEngine(config, ds.catalog)

    # Step-level progress: one epoch over 10^5 users and items takes minutes, longer than a line's 30 s.
    bar = Progress(None, desc="vae", unit="step", budget_s=60 * config.max_train_minutes)

    def on_step(step: int, total_steps: int) -> None:
        bar.total = total_steps
        bar.update()

    def on_epoch(row: dict) -> None:
        tracking.log_metrics({k: v for k, v in row.items() if k not in ("epoch", "best", "stopped")}, step=row["epoch"])
        val = {"val recall@20": row["val_recall@20"]} if "val_recall@20" in row else {}
        bar.update(0, epoch=row["epoch"], loss=row["loss"], beta=row["beta"], **val)
        if row.get("stopped"):
            print(f"[vae] stopped in epoch {row['epoch']} on the {config.max_train_minutes:g}-minute budget; "
                  "serving the best validated epoch", flush=True)

    def fit():
        with bar:
            engine.fit(ds.train, val_rows, on_epoch=on_epoch, on_step=on_step)

    val_rows = ds.interactions.select([VAL, VAL_FOLD_IN])
    summary = fit_evaluate_register(engine, ds, REGISTERED if register else None, fit=fit,
                                    params={k: v for k, v in vars(config).items() if k != "weights"},
                                    table_keys=TABLE_KEYS)
    return {**summary, "epochs": len(engine.history),
            "stopped_on_budget": bool(engine.history and engine.history[-1].get("stopped") == "budget")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="recsys train vae", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    p.add_argument("--config", help="YAML of VAEConfig fields (unknown keys fail)")
    p.add_argument("--split", choices=("loo", "users"), default="loo",
                   help="loo: leave-one-out by time; users: held-out users (strong generalization)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-train-minutes", type=float, help="wall-clock budget; stops within an epoch (0: none)")
    p.add_argument("--hidden", type=int, help="one hidden layer of this size")
    p.add_argument("--latent", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--beta-max", type=float)
    p.add_argument("--recipe", choices=("mult-vae", "cornac"))
    p.add_argument("--no-register", action="store_true", help="log the artifact without registering it")
    args = p.parse_args(argv)
    try:
        config = load_config(VAEConfig, args.config, epochs=args.epochs, latent=args.latent,
                             hidden=[args.hidden] if args.hidden else None, batch_size=args.batch_size,
                             lr=args.lr, beta_max=args.beta_max, recipe=args.recipe,
                             max_train_minutes=args.max_train_minutes)
        ds = prepare(args.fmt, args.path, cache_dir=prepared_cache(), split=args.split, **load_kwargs(args))
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    options = {k: v for k, v in vars(config).items() if k != "weights"}
    with tracking.run("vae", run_name=f"vae-{args.fmt}-{args.split}"):
        out = train(ds, options, register=not args.no_register)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
