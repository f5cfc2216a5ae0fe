"""Train the SASRec sequence engine, log it to MLflow and register it through the promotion gate
(`sasrec@champion` if it beats the champion on this validation split, else `@challenger`).

    python -m trainers.train_sasrec --format sasrec --path ../shared/data/ml-1m \
        --config models/sasrec/sasrec_ml1m.yaml [--epochs N] [--num-workers N]
    python -m trainers.train_sasrec --format sasrec --path ../shared/data/amazon-toys --max-train-minutes 30
    ray job submit --working-dir . -- python -m trainers.train_sasrec ...   (same command on a cluster)

Without --config the settings are derived from the training data and the budget
(`models.sasrec.defaults.derive_config`: window from the history lengths, loss from the catalog
size and --max-train-minutes, width and dropout for sparse data, a validation sample for many
users); the job prints each choice and why. Flags override single fields either way.

Without --num-workers the loop runs in this process (one machine). With --num-workers N it runs the
same loop under Ray Train's `TensorflowTrainer` (data parallel, MultiWorkerMirroredStrategy in a
custom training loop -- Keras 3's `model.fit` under that strategy is what ray issues #47464/#48910
report broken; this loop does not use it): the training windows go to the workers as a Ray Dataset,
each worker reads only its 1/N share (`ray.train.get_dataset_shard`), gradients are all-reduced
every step, and after every epoch rank 0 reports a Ray Train checkpoint (best weights so far + the
exact training state). A failed worker group restarts from the latest one (--max-failures), and this
driver logs and registers the final one. Workers need no shared storage: the data and the catalog
reach them through Ray's object store. Per-worker batch is --batch: the global batch is N x batch.

--resume-from DIR continues a checkpoint or bench artifact that holds `train_state/` exactly where it
stopped (optimizer, weight average, RNG, stopping counters); its network comes from DIR, the schedule
(epochs, budget, lr, patience) from this run's config. In-process runs write per-epoch checkpoints
with --checkpoint-dir DIR.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from models.base import load_config
from models.sasrec.config import SasrecConfig
from recdata.dataset import VAL, prepare
from reccore import tracking
from trainers import gate
from trainers.common import add_data_args, load_kwargs
from trainers.engine_job import fit_evaluate_register

EXPERIMENT = "sasrec"
OVERRIDES = {  # CLI flag -> config field (type)
    "epochs": int, "lr": float, "batch": int, "max_len": int, "hidden": int, "blocks": int, "heads": int,
    "dropout": float, "loss": str, "negatives": int, "patience": int, "max_train_minutes": float, "seed": int,
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trainers.train_sasrec", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    p.add_argument("--config", help="SasrecConfig YAML (e.g. models/sasrec/sasrec_ml1m.yaml); "
                   "default: settings derived from the data and --max-train-minutes, printed with the reasons")
    for flag, typ in OVERRIDES.items():
        p.add_argument("--" + flag.replace("_", "-"), dest=flag, type=typ, help=f"override config `{flag}`")
    p.add_argument("--event-types", dest="use_event_types", action="store_true", default=None,
                   help="add the event-type embedding (data with view/cart/purchase)")
    p.add_argument("--num-workers", type=int, default=0,
                   help="0: train in this process; N>=1: Ray Train TensorflowTrainer with N workers")
    p.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs Ray reserves per worker")
    p.add_argument("--max-failures", type=int, default=2,
                   help="with --num-workers: restarts of a failed worker group from its latest epoch checkpoint")
    p.add_argument("--resume-from",
                   help="continue this checkpoint / artifact (needs its train_state/ for an exact resume)")
    p.add_argument("--checkpoint-dir", help="in-process runs: write a resumable checkpoint here after every epoch")
    p.add_argument("--experiment", default=EXPERIMENT, help="MLflow experiment")
    p.add_argument("--register-as", default="sasrec", help="registered model name ('' = do not register)")
    p.add_argument("--alias", default="champion", help="registry alias for the new version; "
                   "'champion' goes through the promotion gate (trainers/gate.py), any other alias is set as is")
    p.add_argument("--eval-users", type=int,
                   help="evaluate a seeded sample of N users (default: the evaluation config's cap, 50,000)")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace, train=None) -> SasrecConfig:
    """The YAML given by --config, or (without one) settings derived from `train`; flags override."""
    overrides = {k: getattr(args, k) for k in [*OVERRIDES, "use_event_types"]}
    if args.config is None and train is not None:
        from models.sasrec.defaults import derive_config

        cfg, reasons = derive_config(train, args.max_train_minutes, **overrides)
        print("no --config: settings derived from the training data\n" + "\n".join(f"  - {r}" for r in reasons),
              flush=True)
        return cfg
    return load_config(SasrecConfig, args.config, **overrides)


def progress_printer(t0: float, prefix: str = ""):
    def show(epoch: int, rec: dict) -> None:
        val = f"  val ndcg@10 {rec['val_ndcg@10']:.4f}  hr@10 {rec['val_hr@10']:.4f}" if "val_ndcg@10" in rec else ""
        print(f"{prefix}epoch {epoch:3d}  loss {rec['loss']:.4f}{val}  ({rec['epoch_seconds']:.1f}s, "
              f"{time.perf_counter() - t0:.0f}s total)", flush=True)
    return show


def learning_curve(history: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    epochs = [r["epoch"] for r in history]
    ax.plot(epochs, [r["loss"] for r in history], "o-", color="tab:blue", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss", color="tab:blue")
    val = [(r["epoch"], r["val_ndcg@10"]) for r in history if "val_ndcg@10" in r]
    if val:
        ax2 = ax.twinx()
        ax2.plot(*zip(*val), "s-", color="tab:orange", label="val NDCG@10")
        ax2.set_ylabel("val NDCG@10 (full ranking)", color="tab:orange")
    ax.set_title("SASRec learning curve")
    fig.tight_layout()
    return fig


# -- Ray Train (data parallel) ------------------------------------------------------------------
DRILL_FAIL_EPOCH = "RECSYS_DRILL_FAIL_EPOCH"  # fault drill: rank 0 raises once at this epoch
VAL_METRICS = ("hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr")  # SasrecEngine._evaluate's, per-user means


def _worker_loop(cfg_dict: dict) -> None:
    """Runs on every Ray Train worker: `SasrecEngine.fit_windows` on this worker's shard of the training
    windows (`ray.train.get_dataset_shard`: no worker holds all of them) under
    MultiWorkerMirroredStrategy, reporting a checkpoint after every epoch and resuming from the latest
    one after a restart."""
    import contextlib

    import numpy as np
    import ray
    import ray.train
    import tensorflow as tf

    from models.sasrec import SasrecEngine
    from recdata.evaluation import HistoryBatch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # TF_CONFIG is set by Ray Train
    catalog = ray.get(cfg_dict["catalog"])  # id maps only (users + items), never the events
    cfg = SasrecConfig(**cfg_dict["config"])
    # This worker's share of the training windows, in the order training_windows made them (so one
    # worker trains exactly as an in-process run does).
    train = _collect(ray.train.get_dataset_shard("train"), ("order", "inp", "ev", "tgt"))
    # Validation users: every worker streams the list and keeps every world-th one from its rank.
    val = _collect(ray.train.get_dataset_shard("val"), ("order", "items", "events", "target"),
                   keep=lambda order: order % world == rank)
    val_hist = (HistoryBatch([np.asarray(x, np.int64) for x in val["items"]],
                             [np.asarray(x, np.int8) for x in val["events"]]), val["target"].astype(np.int64)
                ) if cfg_dict["val_users"] else None
    restart = ray.train.get_checkpoint()  # set when Ray Train restarts this run after a failure
    start = restart.as_directory() if restart is not None else contextlib.nullcontext(cfg_dict["resume_from"])
    with start as resume_dir:
        engine = (SasrecEngine.for_continuation(resume_dir, cfg, catalog) if resume_dir
                  else SasrecEngine(cfg, catalog))
    if resume_dir:
        print(f"[worker {rank}/{world}] resuming after epoch {len(engine.history)} from "
              f"{'the latest checkpoint of this run' if restart is not None else resume_dir}", flush=True)
    show = progress_printer(time.perf_counter(), prefix=f"[worker {rank}/{world}] ")
    fail_at = int(os.environ.get(DRILL_FAIL_EPOCH, 0))

    def gathered(*values: float) -> np.ndarray:  # [workers, len(values)]: one all-gather
        per = strategy.run(lambda: tf.constant([values], tf.float64))
        return strategy.gather(per, axis=0).numpy()

    def evaluate(hist, targets) -> dict:  # this worker's share of the validation users, combined
        local = (SasrecEngine._evaluate(engine, hist, targets) if len(targets)
                 else dict.fromkeys(VAL_METRICS, 0.0))
        every = gathered(len(targets), *(local[k] for k in VAL_METRICS))
        n = every[:, 0]
        return {k: float((every[:, i + 1] * n).sum() / n.sum()) for i, k in enumerate(VAL_METRICS)}

    def report(epoch: int, rec: dict) -> None:
        # Evidence of data parallelism, on every worker (a collective: all of them take part): the
        # weights agree everywhere (digest min == max) and the shards add up to the whole.
        digest = float(sum(np.abs(w).astype(np.float64).sum() for w in engine.net.get_weights()))
        every = gathered(digest, len(train["order"]), rec["steps"], len(val["order"]))
        rec.update({"workers": world, "weights_digest_min": float(every[:, 0].min()),
                    "weights_digest_max": float(every[:, 0].max()), "train_windows_worker": len(train["order"]),
                    "train_windows_total": int(every[:, 1].sum()), "steps_total": int(every[:, 2].sum()),
                    "val_users_worker": len(val["order"]), "val_users_total": int(every[:, 3].sum())})
        if rank == 0:
            show(epoch, rec)
            if epoch == fail_at and restart is None:
                raise RuntimeError(f"fault drill: {DRILL_FAIL_EPOCH}={fail_at}")
        # Every worker reports (Ray Train expects it); rank 0 attaches the checkpoint.
        metrics = {k: v for k, v in rec.items() if isinstance(v, (int, float))}
        if rank == 0:
            with tempfile.TemporaryDirectory() as tmp:
                written = engine.checkpoint(Path(tmp) / "checkpoint")
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(written))
        else:
            ray.train.report(metrics)

    before = len(engine.history)
    engine.fit_windows(train["inp"], train["ev"], train["tgt"], val_hist, np.asarray(cfg_dict["item_counts"]),
                       on_epoch=report, strategy=strategy, warm_start=bool(resume_dir), evaluate=evaluate)
    if len(engine.history) == before:  # nothing left to train: still hand the driver its checkpoint
        report(before, {"epochs": before, "steps": 0})


def _collect(shard, columns: tuple, keep=None) -> dict:
    """A Ray Data shard as numpy arrays, sorted by its `order` column; `keep(order) -> mask`: only
    those rows (the others stream past)."""
    import numpy as np

    parts: dict = {k: [] for k in columns}
    for batch in shard.iter_batches(batch_size=8192, batch_format="numpy"):
        mask = keep(batch["order"]) if keep is not None else slice(None)
        for k in columns:
            parts[k].append(batch[k][mask])
    out = {k: np.concatenate(v) if v else np.empty(0) for k, v in parts.items()}
    order = np.argsort(out["order"], kind="stable")
    return {k: v[order] for k, v in out.items()}


def sharded_datasets(ds, cfg: SasrecConfig, blocks_per_worker: int = 4, num_workers: int = 1) -> dict:
    """The Ray Datasets the workers read: `train`, the training windows (split between workers, one
    row per window, fixed-shape tensor columns), and `val`, the validation users' histories and
    targets (each worker keeps every world-th; their metrics are combined, so every worker takes the
    same early-stopping decision); plus the training item counts the samplers need."""
    import numpy as np
    import pyarrow as pa
    import ray
    from ray.data.extensions import ArrowTensorArray

    from models.sasrec import SasrecEngine
    from models.sasrec.model import training_windows

    indptr, items, events = ds.train.sequences()
    inp, ev, tgt = training_windows(indptr, items, events, cfg.max_len, cfg.train_windows == "all")
    if len(inp) < num_workers:
        raise ValueError(f"sasrec: {len(inp)} training windows cannot feed {num_workers} workers; use fewer workers")
    step = max(1, -(-len(inp) // (blocks_per_worker * num_workers)))
    def block(lo: int):  # rows lo..lo+step as one Arrow table with [rows, L] tensor columns
        cut = slice(lo, lo + step)
        return pa.table({"order": np.arange(len(inp))[cut], **{k: ArrowTensorArray.from_numpy(a[cut])
                                                                for k, a in (("inp", inp), ("ev", ev), ("tgt", tgt))}})

    train = ray.data.from_arrow([block(lo) for lo in range(0, len(inp), step)])
    hist, targets = SasrecEngine._val_histories(indptr, items, events, ds.interactions.select(VAL), cfg.val_users,
                                                cfg.seed)
    val = ray.data.from_arrow(pa.table({
        "order": np.arange(len(targets)), "items": pa.array([h.tolist() for h in hist.items], pa.list_(pa.int64())),
        "events": pa.array([e.tolist() for e in hist.events], pa.list_(pa.int8())), "target": targets}))
    return {"train": train, "val": val, "item_counts": np.bincount(items, minlength=ds.catalog.n_items)}


def fit_distributed(args, cfg: SasrecConfig, num_workers: int, ds):
    import dataclasses

    import ray
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer

    from models.sasrec import SasrecEngine

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False,
                 runtime_env={"env_vars": {"PYTHONPATH": os.getcwd()}})
    storage = tracking.work_dir() / "ray_train"
    data = sharded_datasets(ds, cfg, num_workers=num_workers)
    trainer = TensorflowTrainer(
        _worker_loop,
        train_loop_config={"catalog": ray.put(ds.catalog), "config": dataclasses.asdict(cfg),
                           "item_counts": data["item_counts"].tolist(), "val_users": data["val"].count(),
                           "resume_from": str(Path(args.resume_from).resolve()) if args.resume_from else None},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=False,
                                     resources_per_worker={"CPU": args.cpus_per_worker}),
        # train is split between the workers (equal shares: equal step counts, so no all-reduce waits
        # for a worker that has finished); val streams past every worker, each keeping its share.
        datasets={"train": data["train"], "val": data["val"]},
        dataset_config=DataConfig(datasets_to_split=["train"]),
        run_config=RunConfig(name=f"sasrec-{int(time.time())}", storage_path=str(storage),
                             failure_config=FailureConfig(max_failures=args.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train finished without a checkpoint: {result.error}")
    print(f"latest checkpoint (resume with --resume-from): {result.checkpoint.path}", flush=True)
    with result.checkpoint.as_directory() as folder:
        return SasrecEngine.load(folder)


# -- the job ------------------------------------------------------------------------------------
def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg = build_config(args)  # fails on a bad --config or flag before any data is read
    if args.checkpoint_dir and args.num_workers >= 1:
        raise ValueError("--checkpoint-dir is for in-process runs: with --num-workers, Ray Train keeps a checkpoint "
                         "per epoch under $RECSYS_HOME/ray_train (the run prints the latest; pass it to --resume-from)")
    if args.num_workers > 1 and cfg.max_train_minutes is not None:
        raise ValueError("max_train_minutes would stop workers at different steps and hang the all-reduce; "
                         "with --num-workers > 1 bound training by --epochs instead")
    from models.popularity import PopularityEngine
    from models.sasrec import SasrecEngine
    from recdata.evaluation import evaluate

    ds = prepare(args.fmt, args.path, cache_dir=tracking.work_dir() / "prepared", **load_kwargs(args))
    if args.config is None:
        cfg = build_config(args, ds.train)
    print(f"data: {ds.catalog.n_users} users, {ds.catalog.n_items} items, {len(ds.interactions)} interactions; "
          f"config: {cfg}", flush=True)
    with tracking.run(args.experiment, run_name=f"sasrec-{cfg.loss}") as active:
        tracking.log_params({**{f"cfg.{k}": v for k, v in vars(cfg).items()}, "data.format": args.fmt,
                             "data.path": str(args.path), "num_workers": args.num_workers,
                             "data.users": ds.catalog.n_users, "data.items": ds.catalog.n_items})
        t0 = time.perf_counter()
        if args.num_workers >= 1:
            engine = fit_distributed(args, cfg, args.num_workers, ds)
            for rec in engine.history:  # the workers' per-epoch records, logged after the fact
                tracking.log_metrics({k: v for k, v in rec.items() if k != "epoch"}, step=rec["epoch"])
        else:
            if args.resume_from:
                engine = SasrecEngine.for_continuation(args.resume_from, cfg, ds.catalog)
                print(f"resuming after epoch {len(engine.history)} from {args.resume_from}", flush=True)
                for rec in engine.history:  # the curve so far, so this run's plot is whole
                    tracking.log_metrics({k: v for k, v in rec.items() if k != "epoch"}, step=rec["epoch"])
            else:
                engine = SasrecEngine(cfg, ds.catalog)
            show = progress_printer(t0)

            def on_epoch(epoch: int, rec: dict) -> None:
                tracking.log_metrics({k: v for k, v in rec.items() if k != "epoch"}, step=epoch)
                show(epoch, rec)
                if args.checkpoint_dir:
                    engine.checkpoint(args.checkpoint_dir)

            engine.fit(ds.train, ds.interactions.select(VAL), on_epoch=on_epoch, warm_start=bool(args.resume_from))
        train_seconds = time.perf_counter() - t0
        print(f"trained in {train_seconds:.0f}s; best val ndcg@10 {engine.best_val_ndcg}; evaluating test", flush=True)
        eval_users = args.eval_users or "config"
        test = evaluate(engine, ds, "test", max_users=eval_users)
        pop = evaluate(PopularityEngine(catalog=ds.catalog).fit(ds.train), ds, "test", max_users=eval_users)
        tracking.log_metrics(test, prefix=tracking.metric_prefix("test"))
        tracking.log_metrics(pop, prefix=tracking.metric_prefix("test", "popularity"))
        tracking.log_metrics({"fit_seconds": train_seconds})
        if engine.history:
            tracking.log_figure(learning_curve(engine.history), "learning_curve.png")
        if args.register_as and args.alias == "champion":  # the promotion gate decides champion or challenger
            val = evaluate(engine, ds, "val", max_users=eval_users)
            version, args.alias = gate.register_gated(engine, ds, args.register_as, val)
        else:
            version = tracking.log_engine(engine, registered_name=args.register_as or None, alias=args.alias)
        summary = {"run_id": active.info.run_id, "registered": args.register_as or None, "version": version,
                   "train_seconds": round(train_seconds, 1), "epochs": len(engine.history),
                   **{f"test_{k}": round(v, 5) for k, v in test.items() if k != "users"},
                   "popularity_test_ndcg@10": round(pop["ndcg@10"], 5)}
    if args.register_as:
        print(f"registered models:/{args.register_as}@{args.alias} (version {version})")
    print(json.dumps(summary))
    return summary


def train(ds, options: dict | None = None, register: bool = True) -> dict:
    """Fit with early stopping on validation, then the shared tail (trainers/engine_job.py): evaluate
    beside popularity, log, register through the promotion gate. Needs an active MLflow run (the
    caller's): the pipeline's `sasrec` stage. `options` are SasrecConfig fields over the settings derived
    from the data (models.sasrec.defaults), or the whole config with `derive: false`."""
    from models.base import config_from_dict
    from models.sasrec import SasrecEngine
    from models.sasrec.defaults import derive_config

    options = dict(options or {})
    derive = options.pop("derive", True)
    cfg = config_from_dict(SasrecConfig, options, "sasrec options")  # unknown keys fail here, with the valid ones
    if derive:
        # As the CLI without --config: settings derived from this training split and the budget, the
        # options given override them (a store log of 10^5 items must not get ML-1M's full-softmax CE).
        cfg, reasons = derive_config(ds.train, cfg.max_train_minutes, **options)
        print("[sasrec] settings derived from the training data (options given override them)\n"
              + "\n".join(f"  - {r}" for r in reasons), flush=True)
    engine = SasrecEngine(cfg, ds.catalog)

    def fit() -> None:
        engine.fit(ds.train, ds.interactions.select(VAL), on_epoch=lambda epoch, rec: tracking.log_metrics(
            {k: v for k, v in rec.items() if k != "epoch"}, step=epoch))
        if engine.history:
            tracking.log_figure(learning_curve(engine.history), "learning_curve.png")

    summary = fit_evaluate_register(engine, ds, "sasrec" if register else None, fit=fit,
                                    params={f"cfg.{k}": v for k, v in vars(cfg).items()})
    return {**summary, "epochs": len(engine.history), "train_seconds": summary["fit_seconds"]}


if __name__ == "__main__":
    main()
