"""SASRec on any sequence log beside popularity, EASE and VAE-CF: leave-one-out, full ranking, seen filtered.

    python -m bench.sequence --format sasrec --path ../shared/data/amazon-toys [--max-train-minutes 30]
        [--config C] [--out DIR] [--vae-epochs N] [--ease-lambdas 30,100,300] [--max-users N]

Without --config, SASRec's settings are derived from the training data and the budget
(`models.sasrec.defaults.derive_config`), printed with the reason for each. The SASRec artifact is
saved under --out before the baselines run, so a crash later never costs the training. EASE's
lambda is chosen on validation NDCG@10 (first 10,000 validation users); the VAE keeps its best
validation epoch. The test figures use every user. Prints a table; the LAST line is one JSON object:
dataset, users, items, ndcg@10, hr@10, pop_ndcg@10, pop_hr@10, ease_ndcg@10, vae_ndcg@10,
train_seconds, epochs, eval_seconds (SASRec's full test evaluation), loss.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import time
from pathlib import Path

from bench.vae_ml1m import EaseScorer
from models.base import load_config
from models.popularity import PopularityEngine
from models.sasrec import SasrecConfig, SasrecEngine
from models.sasrec.defaults import derive_config
from models.vae import VAEConfig, VAEEngine
from recdata.dataset import VAL, prepare
from recdata.evaluation import evaluate, format_table

KEYS = ["hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr", "coverage@10"]


def dataset_name(path: str) -> str:
    p = Path(path)
    return p.stem if p.is_file() else p.name


def fit_ease(ds, lambdas: list[float], log, val_users: int = 10_000) -> tuple[EaseScorer, float]:
    """cornac EASE for each lambda, kept by validation NDCG@10; one dense item x item matrix at a time."""
    best = None
    for lamb in lambdas:
        t = time.perf_counter()
        ease = EaseScorer(lamb, ds.catalog.n_items, VAEConfig().weights).fit(ds.train)
        ease.model = None  # cornac's float64 copy of B: the scorer keeps a float32 one
        gc.collect()
        r = evaluate(ease, ds, "val", max_users=val_users)["ndcg@10"]
        log(f"EASE lambda={lamb:g}: val ndcg@10 {r:.4f} ({time.perf_counter() - t:.0f}s)")
        if best is None or r > best[0]:
            best = (r, lamb, ease)
        else:
            del ease
            gc.collect()
    if best[1] in (min(lambdas), max(lambdas)) and len(lambdas) > 1:
        log(f"WARNING: EASE's best lambda {best[1]:g} is at the edge of the grid; widen --ease-lambdas")
    return best[2], best[1]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--format", default="sasrec", help="input format: sasrec, recbole, rees46, csv")
    p.add_argument("--path", required=True, help="data file or folder")
    p.add_argument("--max-train-minutes", type=float, default=30.0, help="SASRec's wall-clock budget")
    p.add_argument("--config", help="SasrecConfig YAML; default: derived from the data and the budget")
    p.add_argument("--out", help="where the SASRec artifact goes (default $RECSYS_HOME/bench/sequence_<dataset>)")
    p.add_argument("--vae-epochs", type=int, default=20, help="VAE-CF epochs (the best validation epoch is kept)")
    p.add_argument("--ease-lambdas", default="30,100,300", help="EASE L2 grid, chosen on validation "
                   "(best measured: amazon-toys 50 of 50,200,800; amazon-sports 100 of 10,30,100)")
    p.add_argument("--skip-baselines", action="store_true", help="SASRec and popularity only")
    p.add_argument("--max-users", type=int, help="evaluate a seeded sample of N test users only (smoke runs)")
    args = p.parse_args(argv)

    home = Path(os.environ.get("RECSYS_HOME", ".recsys"))
    name = dataset_name(args.path)
    ds = prepare(args.format, args.path, cache_dir=home / "prepared")
    users, items = ds.catalog.n_users, ds.catalog.n_items
    print(f"{name}: {users} users, {items} items, {len(ds.interactions)} interactions", flush=True)

    def log(msg: str) -> None:
        print(msg, flush=True)

    if args.config:
        cfg = load_config(SasrecConfig, args.config, max_train_minutes=args.max_train_minutes)
    else:
        cfg, reasons = derive_config(ds.train, args.max_train_minutes)
        log("SASRec settings derived from the training data:\n" + "\n".join(f"  - {r}" for r in reasons))
    log(f"config: {cfg}")
    engine = SasrecEngine(cfg, ds.catalog)
    t0 = time.perf_counter()

    def progress(epoch: int, rec: dict) -> None:
        val = f"  val ndcg@10 {rec['val_ndcg@10']:.4f} hr@10 {rec['val_hr@10']:.4f}" if "val_ndcg@10" in rec else ""
        cut = f"  (budget spent: {rec['steps']}/{rec['steps_per_epoch']} steps)" if rec.get("stopped_mid_epoch") else ""
        log(f"epoch {epoch:3d}  loss {rec['loss']:.4f}{val}  {rec['epoch_seconds']:.0f}s/epoch  "
            f"{(time.perf_counter() - t0) / 60:.1f} min{cut}")

    engine.fit(ds.train, ds.interactions.select(VAL), on_epoch=progress)
    train_seconds = time.perf_counter() - t0
    engine.export_tflite_on_save = False  # the bench scores with Keras; the trainer exports for serving
    folder = engine.save(args.out or home / "bench" / f"sequence_{name}")
    epochs, best_val = len(engine.history), engine.best_val_ndcg
    log(f"trained in {train_seconds:.0f}s ({epochs} epochs, best val ndcg@10 {best_val}); artifact {folder}")

    t = time.perf_counter()
    rows = {"sasrec": evaluate(engine, ds, "test", max_users=args.max_users)}
    eval_seconds = time.perf_counter() - t
    log(f"sasrec test evaluation: {eval_seconds:.0f}s")
    rows["popularity"] = evaluate(PopularityEngine(catalog=ds.catalog).fit(ds.train), ds, "test",
                                  max_users=args.max_users)
    if not args.skip_baselines:
        del engine
        gc.collect()
        ease, lamb = fit_ease(ds, [float(x) for x in args.ease_lambdas.split(",")], log)
        rows[f"ease (lambda {lamb:g})"] = evaluate(ease, ds, "test", max_users=args.max_users)
        del ease
        gc.collect()
        # VAE-CF: the Mult-VAE recipe; its best validation epoch (Recall@20) is kept.
        vae_cfg = VAEConfig(epochs=args.vae_epochs, eval_every=5, lr=3e-3, batch_size=250, torch_threads=1)
        t = time.perf_counter()
        vae = VAEEngine(vae_cfg, ds.catalog).fit(ds.train, ds.interactions.select(VAL))
        log(f"VAE-CF: {args.vae_epochs} epochs in {time.perf_counter() - t:.0f}s")
        rows["vae-cf"] = evaluate(vae, ds, "test", max_users=args.max_users)
    print(format_table(rows, KEYS, f"\n{name} leave-one-out, full ranking over all {items} items, seen items "
                                   f"filtered ({rows['sasrec']['users']} test users)"), flush=True)

    s, pop = rows["sasrec"], rows["popularity"]
    ease_row = next((r for k, r in rows.items() if k.startswith("ease")), {})
    result = {
        "dataset": name, "users": users, "items": items,
        "ndcg@10": s["ndcg@10"], "hr@10": s["hr@10"], "pop_ndcg@10": pop["ndcg@10"], "pop_hr@10": pop["hr@10"],
        "ease_ndcg@10": ease_row.get("ndcg@10"), "vae_ndcg@10": rows.get("vae-cf", {}).get("ndcg@10"),
        "train_seconds": round(train_seconds, 1), "epochs": epochs, "eval_seconds": round(eval_seconds, 1),
        "loss": cfg.loss, "best_val_ndcg@10": best_val, "test_users": s["users"],
        "max_len": cfg.max_len, "hidden": cfg.hidden, "dropout": cfg.dropout,
    }
    print(json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in result.items()}))
    return result


if __name__ == "__main__":
    main()
