"""Build the similarity engine: embed every catalog item's text (title, genres / brand, category,
price word) with a BERT-family encoder, evaluate the user-profile recommender beside popularity,
log to MLflow and register `models:/content@champion`.

    python -m trainers.train_content --format sasrec --path ../shared/data/ml-1m [--config content.yaml]
        [--model-path /local/hf/model]
    ray job submit --working-dir . -- python -m trainers.train_content --format rees46 --path ...
"""
from __future__ import annotations

import argparse
import sys

from models.content import ContentConfig, ContentEngine
from reccore import tracking
from reccore.config import config_from_dict, load_config
from recdata.dataset import prepare
from recdata.schema import DataError
from trainers.common import add_data_args, load_kwargs, prepared_cache
from trainers.engine_job import fit_evaluate_register

TABLE_KEYS = ("hr@10", "ndcg@10", "hr@20", "mrr", "coverage@10")


def train(ds, options: dict | None = None, register: bool = True) -> dict:
    """Embed the catalog (cold-start items included), evaluate, log and register. Needs an active
    MLflow run (the caller's)."""
    config = config_from_dict(ContentConfig, options, "content options")
    engine = ContentEngine(config, ds.catalog)
    enc = engine.encoder
    summary = fit_evaluate_register(
        engine, ds, "content" if register else None, table_keys=TABLE_KEYS,
        params={"model_key": enc.key, "model_path": enc.path,
                **{k: v for k, v in vars(config).items() if k not in ("weights", "model_path")}},
        title="user profile -> items, test, full ranking, seen items filtered")
    cold = int((ds.train.item_counts() == 0).sum())
    extra = {"items": ds.catalog.n_items, "items_without_train_events": cold,
             "cache_hits": getattr(enc, "cache_hits", 0)}
    tracking.log_metrics(extra)
    return {**summary, **extra}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="recsys train content", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    p.add_argument("--config", help="YAML of ContentConfig fields (unknown keys fail)")
    p.add_argument("--model-path", help="local Hugging Face model folder (default: all-MiniLM-L6-v2)")
    p.add_argument("--batch-size", type=int, help="texts per encoder pass")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-register", action="store_true", help="log the artifact without registering it")
    args = p.parse_args(argv)
    try:
        config = load_config(ContentConfig, args.config, model_path=args.model_path, batch_size=args.batch_size,
                             progress=False if args.no_progress else None)
        ds = prepare(args.fmt, args.path, cache_dir=prepared_cache(), **load_kwargs(args))
    except (DataError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    options = {k: v for k, v in vars(config).items() if k != "weights"}
    with tracking.run("content", run_name=f"content-{args.fmt}"):
        out = train(ds, options, register=not args.no_register)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
