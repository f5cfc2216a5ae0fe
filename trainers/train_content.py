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
import time

from recdata.schema import DataError
from trainers.common import add_data_args, load_kwargs, prepared_cache


def train(ds, options: dict | None = None, register: bool = True) -> dict:
    """Embed the catalog (cold-start items included), evaluate, log and register. Needs an active
    MLflow run (the caller's)."""
    from models.base import config_from_dict
    from models.content import ContentConfig, ContentEngine
    from models.popularity import PopularityEngine
    from recdata.evaluation import evaluate, format_table
    from reccore import tracking

    config = config_from_dict(ContentConfig, options, "content options")
    engine = ContentEngine(config, ds.catalog)
    t0 = time.perf_counter()
    engine.fit(ds.train)
    engine.fit_seconds = time.perf_counter() - t0
    enc = engine.encoder
    tracking.log_params({"engine": "content", "model_key": enc.key, "model_path": enc.path,
                         **{k: v for k, v in vars(config).items() if k not in ("weights", "model_path")}})
    pop = PopularityEngine(catalog=ds.catalog).fit(ds.train)
    rows = {"content": evaluate(engine, ds, "test"), "popularity": evaluate(pop, ds, "test")}
    print(format_table(rows, ["hr@10", "ndcg@10", "hr@20", "mrr", "coverage@10"],
                       "user profile -> items, test, full ranking, seen items filtered"))
    cold = int((ds.train.item_counts() == 0).sum())
    tracking.log_metrics(rows["content"], prefix="test.")
    tracking.log_metrics(rows["popularity"], prefix="test_popularity.")
    tracking.log_metrics({"fit_seconds": engine.fit_seconds, "items": ds.catalog.n_items,
                          "items_without_train_events": cold, "cache_hits": getattr(enc, "cache_hits", 0)})
    version = tracking.log_engine(engine, "content" if register else None)
    return {"artifact": "models:/content@champion" if version else None, "version": version,
            "items": ds.catalog.n_items, "items_without_train_events": cold,
            "fit_seconds": round(engine.fit_seconds, 2),
            **{f"test_{k}": v for k, v in rows["content"].items() if k != "users"},
            "popularity_test_hr@10": rows["popularity"]["hr@10"]}


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
    from models.base import load_config
    from models.content import ContentConfig
    from recdata.dataset import prepare
    from reccore import tracking

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
