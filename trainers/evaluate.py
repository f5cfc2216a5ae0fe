"""Full-ranking evaluation of an engine, with the popularity baseline in the same table.

    python -m trainers.evaluate --model popularity --format sasrec --path ../shared/data/ml-1m
    python -m trainers.evaluate --artifact models:/sasrec@champion --format sasrec --path ...

Leave-one-out by time, every catalog item ranked, items the user already saw filtered out. The
sampled-negatives figures (`--sampled 100`) are printed as a labelled extra, never instead.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from models.base import Engine
from models.popularity import PopularityEngine
from reccore import tracking
from recdata.dataset import prepare
from recdata.evaluation import evaluate, format_table
from recdata.schema import DataError
from trainers.common import add_data_args, load_kwargs, prepared_cache

KEYS = ["hr@10", "ndcg@10", "hr@20", "ndcg@20", "recall@20", "mrr", "coverage@10", "coverage@20"]


def metrics_figure(rows: dict[str, dict], keys=("hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr")):
    # Lazy: matplotlib only when a figure is drawn (after Agg is chosen: no display on a cluster node).
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(rows)
    for i, (name, r) in enumerate(rows.items()):
        ax.bar(np.arange(len(keys)) + i * width, [r.get(k, 0) for k in keys], width, label=name)
    ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, keys)
    ax.set_ylabel("full-ranking metric")
    ax.legend()
    fig.tight_layout()
    return fig


def run_evaluation(args: argparse.Namespace) -> dict[str, dict]:
    """{engine name: metrics}, the evaluated engine first, popularity beside it."""
    ds = prepare(args.fmt, args.path, cache_dir=prepared_cache(), **load_kwargs(args))
    rows: dict[str, dict] = {}
    pop = PopularityEngine(catalog=ds.catalog).timed_fit(ds.train)
    if args.artifact:
        engine = Engine.load(tracking.resolve_artifact(args.artifact))
        if engine.catalog.n_items != ds.catalog.n_items:
            raise DataError(f"{args.artifact} was trained on a catalog of {engine.catalog.n_items} items, "
                            f"this data has {ds.catalog.n_items}: evaluate it on the data it was trained on")
        name = engine.name
    elif args.model == "popularity":
        engine, name = pop, "popularity"
    else:
        raise DataError(f"--model {args.model} needs a trained artifact: run `recsys train {args.model}` "
                        "and pass --artifact models:/<name>@champion (or a folder)")
    t0 = time.perf_counter()
    rows[name] = evaluate(engine, ds, args.split, sampled_negatives=args.sampled)
    rows[name]["eval_seconds"] = time.perf_counter() - t0
    if name != "popularity":
        rows["popularity"] = evaluate(pop, ds, args.split, sampled_negatives=args.sampled)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="recsys evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    p.add_argument("--model", default="popularity", help="engine to fit and evaluate (popularity)")
    p.add_argument("--artifact", help="evaluate a saved engine: a folder or models:/<name>@<alias>")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--sampled", type=int, default=100, metavar="N",
                   help="also report sampled metrics with N negatives (labelled; 0 = off)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log an MLflow run")
    args = p.parse_args(argv)
    try:
        rows = run_evaluation(args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    users = next(iter(rows.values()))["users"]
    print(format_table(rows, KEYS, f"{args.split}: full ranking over all items, seen items filtered, "
                                   f"{users:,} users"))
    if args.sampled:
        print(format_table(rows, ["sampled_hr@10", "sampled_ndcg@10"],
                           f"labelled extra: target among {args.sampled} sampled negatives (not comparable "
                           "to full ranking)"))
    if not args.no_mlflow:
        evaluated = next(iter(rows))
        with tracking.run("evaluation", run_name=f"{'+'.join(rows)}-{args.fmt}"):
            tracking.log_params({"format": args.fmt, "path": args.path, "split": args.split,
                                 "sampled_negatives": args.sampled})
            for name, r in rows.items():
                tracking.log_metrics(r, prefix=tracking.metric_prefix(args.split, None if name == evaluated else name))
            tracking.log_figure(metrics_figure(rows), "metrics.png")
    print(json.dumps({name: {k: v for k, v in r.items()} for name, r in rows.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
