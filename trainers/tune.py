"""Ray Tune sweeps over an engine's config dataclass, with ASHA, checkpoints and MLflow.

    recsys tune sasrec --config tune_configs/sasrec.yaml [--num-samples N] [--resume]
    python -m trainers.tune vae --config tune_configs/vae.yaml

Every trial trains epoch by epoch and reports the validation metric through `ray.tune.report` with
a checkpoint (`Engine.checkpoint`: the artifact, plus SASRec's training state), so ASHA can stop it
early and `FailureConfig` restarts a crashed trial from its last epoch: the engine's `tune_epochs`
continues at the next epoch, never from the first. The driver holds one MLflow parent run; each trial logs a child
run. The best trial's artifact is evaluated on the test split beside popularity and registered as
`models:/<engine>@champion` (and `@tuned`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import importlib

import yaml

from models.base import ENGINE_MODULES, Engine, get_engine_class
from models.popularity import PopularityEngine
from reccore import tracking
from reccore.config import config_from_dict
from recdata.dataset import PreparedDataset, prepare
from recdata.evaluation import evaluate
from recdata.schema import DataError
from trainers.common import ray_address

SAMPLERS = ("choice", "uniform", "loguniform", "randint", "grid")


@dataclass
class SchedulerSpec:
    type: str = "asha"
    """Only ASHA (async successive halving) is supported: it stops weak trials at rungs."""
    max_t: int = 20
    """Most epochs a trial may run."""
    grace_period: int = 2
    """Epochs every trial gets before it can be stopped."""
    reduction_factor: int = 3
    """Keep the best 1/reduction_factor at each rung."""


@dataclass
class SweepConfig:
    """A sweep file (tune_configs/*.yaml). Unknown keys fail."""

    engine: str
    """Engine to sweep: sasrec | vae."""
    data: dict
    """{format, path}: the prepared data every trial reads (path relative to the repo root)."""
    metric: str = "val_ndcg@10"
    """Validation metric reported each epoch and optimized."""
    mode: str = "max"
    """max or min."""
    num_samples: int = 8
    """Trials to sample from the search space."""
    max_concurrent_trials: int = 2
    """Trials running at once (each needs resources_per_trial)."""
    resources_per_trial: dict = field(default_factory=lambda: {"cpu": 1, "gpu": 0})
    """Ray resources each trial reserves."""
    base: dict = field(default_factory=dict)
    """Fixed engine-config fields for every trial."""
    search_space: dict = field(default_factory=dict)
    """Engine-config field -> {sampler: args}; samplers: choice, uniform, loguniform, randint, grid."""
    scheduler: dict = field(default_factory=dict)
    """SchedulerSpec fields."""
    max_failures: int = 2
    """Restarts of a crashed trial (from its last checkpoint)."""
    seed: int = 0
    """Seed of the search algorithm."""
    time_budget_minutes: float | None = None
    """Stop launching and running trials after this long (None: until all trials finish)."""


def load_sweep(path: str | Path) -> SweepConfig:
    raw = yaml.safe_load(Path(path).read_text()) or {}
    sweep = config_from_dict(SweepConfig, raw, str(path))
    config_from_dict(SchedulerSpec, sweep.scheduler, f"{path}: scheduler")
    engine_cfg = get_engine_class(sweep.engine).config_class
    names = {f.name for f in dataclasses.fields(engine_cfg)}
    for section in ("base", "search_space"):
        unknown = sorted(set(getattr(sweep, section)) - names)
        if unknown:
            raise ValueError(f"{path}: {section} has key(s) {unknown} that are not fields of "
                             f"{engine_cfg.__name__}; valid: {sorted(names)}")
    for key, spec in sweep.search_space.items():
        if not (isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in SAMPLERS):
            raise ValueError(f"{path}: search_space.{key} must be one of {{{', '.join(SAMPLERS)}: args}}, got {spec!r}")
    if sweep.mode not in ("max", "min"):
        raise ValueError(f"{path}: mode must be max or min")
    return sweep


def param_space(sweep: SweepConfig) -> dict:
    from ray import tune  # lazy here and below: Ray loads when a sweep runs, not when a sweep file is checked

    space = {}
    for key, spec in sweep.search_space.items():
        kind, args = next(iter(spec.items()))
        if kind == "choice":
            space[key] = tune.choice(list(args))
        elif kind == "grid":
            space[key] = tune.grid_search(list(args))
        elif kind == "uniform":
            space[key] = tune.uniform(*args)
        elif kind == "loguniform":
            space[key] = tune.loguniform(*args)
        elif kind == "randint":
            space[key] = tune.randint(*args)
    return space


# --- per-engine epoch loops: yield (epoch, validation metrics, engine) ----------------------------
# Each engine module provides `tune_epochs(engine, ds, start_epoch) -> Iterator[(epoch, metrics)]`,
# training in place and continuing after `start_epoch` when restarted; `Engine.checkpoint` is the checkpoint.
def trial_epochs(engine_name: str) -> Callable[..., Iterator[tuple[int, dict]]]:
    module = importlib.import_module(ENGINE_MODULES[engine_name])
    if not hasattr(module, "tune_epochs"):
        raise ValueError(f"engine {engine_name!r} does not support sweeps (no tune_epochs in {module.__name__})")
    return module.tune_epochs


def _trial(config: dict) -> None:
    """One Tune trial (runs in a Ray worker)."""
    import ray
    from ray import tune

    meta = config.pop("__sweep__")
    node_id = ray.get_runtime_context().get_node_id()
    ds = PreparedDataset.load(meta["dataset_dir"])
    cls = get_engine_class(meta["engine"])
    engine_cfg = config_from_dict(cls.config_class, {**meta["base"], **config}, "trial")
    start = 0
    ckpt = tune.get_checkpoint()
    if ckpt is not None:  # restarted after a failure: continue from the last epoch
        with ckpt.as_directory() as d:
            engine = Engine.load(Path(d) / "engine")
            start = json.loads((Path(d) / "state.json").read_text())["epoch"]
    else:
        engine = cls(engine_cfg, ds.catalog)
    os.environ["MLFLOW_TRACKING_URI"] = meta["tracking_uri"]
    mlflow = tracking.configured_mlflow()  # the sweep's store (the environment variable just set)
    mlflow.start_run(run_name=f"trial-{tune.get_context().get_trial_id()}", parent_run_id=meta["parent_run_id"],
                     experiment_id=meta["experiment_id"])
    try:
        tracking.log_params({k: v for k, v in config.items()})
        for epoch, metrics in trial_epochs(meta["engine"])(engine, ds, start):
            tracking.log_metrics(metrics, step=epoch)
            with tempfile.TemporaryDirectory() as d:
                engine.checkpoint(Path(d) / "engine")  # SASRec: with its training state, for an exact resume
                (Path(d) / "state.json").write_text(json.dumps({"epoch": epoch}))
                # node_id: where the trial ran (a cluster sweep spreads trials over nodes)
                tune.report({**metrics, "epoch": epoch, "node_id": node_id},
                            checkpoint=tune.Checkpoint.from_directory(d))
    finally:
        # ASHA stops trials by ending this function: close the run or it stays RUNNING forever.
        mlflow.end_run()


def _close_trial_runs(parent_run_id: str, experiment_id: str) -> None:
    """A trial that Tune stops (ASHA, max_t) may be torn down before its `finally` ends its MLflow
    run; the driver closes what is left open so no trial stays RUNNING in the UI."""
    client = tracking.configured_mlflow().MlflowClient()
    open_runs = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}' "
                                                    "and attributes.status = 'RUNNING'")
    for r in open_runs:
        client.set_tag(r.info.run_id, "closed_by", "sweep driver (trial stopped by Tune)")
        client.set_terminated(r.info.run_id, "FINISHED")


def run_sweep(sweep: SweepConfig, num_samples: int | None = None, resume: bool = False,
              storage: str | None = None, name: str | None = None) -> dict:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    t0 = time.perf_counter()
    repo = Path(__file__).resolve().parents[1]
    path = Path(sweep.data["path"])
    path = path if path.is_absolute() else (repo / path).resolve()
    ds = prepare(sweep.data["format"], path, cache_dir=tracking.work_dir() / "prepared")
    dataset_dir = str(tracking.work_dir() / "prepared" / ds.meta["fingerprint"])
    if not ray.is_initialized():
        ray.init(address=ray_address(), include_dashboard=False, logging_level="WARNING")
    storage = storage or str(tracking.work_dir() / "tune")
    name = name or f"{sweep.engine}-sweep"
    sched = SchedulerSpec(**sweep.scheduler)
    exp_id = tracking.experiment_id(f"tune-{sweep.engine}")
    with tracking.run(f"tune-{sweep.engine}", run_name=name) as parent:
        tracking.log_params({"num_samples": num_samples or sweep.num_samples, "metric": sweep.metric,
                             "search_space": json.dumps(sweep.search_space), "base": json.dumps(sweep.base)})
        meta = {"engine": sweep.engine, "dataset_dir": dataset_dir, "base": sweep.base,
                "tracking_uri": tracking.tracking_uri(), "parent_run_id": parent.info.run_id,
                "experiment_id": exp_id}
        trainable = tune.with_resources(_trial, {"cpu": sweep.resources_per_trial.get("cpu", 1),
                                                 "gpu": sweep.resources_per_trial.get("gpu", 0)})
        trial_path = Path(storage) / name
        if resume and tune.Tuner.can_restore(str(trial_path)):
            tuner = tune.Tuner.restore(str(trial_path), trainable=trainable, resume_errored=True)
        else:
            if resume:
                print(f"[tune] nothing to resume at {trial_path}; starting a new sweep", flush=True)
            tuner = tune.Tuner(
                trainable,
                param_space={**param_space(sweep), "__sweep__": meta},
                tune_config=tune.TuneConfig(
                    metric=sweep.metric, mode=sweep.mode, num_samples=num_samples or sweep.num_samples,
                    max_concurrent_trials=sweep.max_concurrent_trials,
                    time_budget_s=60 * sweep.time_budget_minutes if sweep.time_budget_minutes else None,
                    scheduler=ASHAScheduler(time_attr="epoch", max_t=sched.max_t, grace_period=sched.grace_period,
                                            reduction_factor=sched.reduction_factor),
                ),
                run_config=tune.RunConfig(name=name, storage_path=storage, verbose=1,
                                          failure_config=tune.FailureConfig(max_failures=sweep.max_failures)),
            )
        results = tuner.fit()
        _close_trial_runs(parent.info.run_id, exp_id)
        best = results.get_best_result(metric=sweep.metric, mode=sweep.mode)
        epochs = {r.path: (r.metrics or {}).get("epoch", 0) for r in results}
        stopped_early = sum(1 for e in epochs.values() if e < sched.max_t)
        with best.checkpoint.as_directory() as d:
            engine = Engine.load(Path(d) / "engine")
            test = evaluate(engine, ds, "test")
            pop = evaluate(PopularityEngine(catalog=ds.catalog).fit(ds.train), ds, "test")
            best_cfg = {k: v for k, v in best.config.items() if k != "__sweep__"}
            tracking.log_params({f"best.{k}": v for k, v in best_cfg.items()})
            tracking.log_metrics(test, prefix=tracking.metric_prefix("test"))
            tracking.log_metrics(pop, prefix=tracking.metric_prefix("test", "popularity"))
            version = tracking.log_engine(engine, sweep.engine, alias="champion")
            tracking.configured_mlflow().MlflowClient().set_registered_model_alias(sweep.engine, "tuned", version)
    return {
        "trials": len(results), "stopped_early": stopped_early, "errors": len(results.errors),
        "minutes": (time.perf_counter() - t0) / 60, f"best_{sweep.metric}": best.metrics[sweep.metric],
        "nodes": sorted({(r.metrics or {}).get("node_id") for r in results} - {None}),
        "best_config": best_cfg, "best_test": test, "popularity_test": pop, "registered_version": version,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="recsys tune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("engine", choices=("sasrec", "vae"))
    p.add_argument("--config", help="sweep YAML (default tune_configs/<engine>.yaml)")
    p.add_argument("--num-samples", type=int, help="override num_samples")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep (Tuner.restore)")
    p.add_argument("--storage", help="Tune storage path (default $RECSYS_HOME/tune; shared storage on a cluster)")
    p.add_argument("--name", help="experiment name (default <engine>-sweep)")
    args = p.parse_args(argv)
    cfg_path = args.config or Path(__file__).resolve().parents[1] / "tune_configs" / f"{args.engine}.yaml"
    try:
        sweep = load_sweep(cfg_path)
        if sweep.engine != args.engine:
            raise ValueError(f"{cfg_path} sweeps {sweep.engine!r}, not {args.engine!r}")
        out = run_sweep(sweep, args.num_samples, args.resume, args.storage, args.name)
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"trials {out['trials']}  stopped early by ASHA {out['stopped_early']}  errors {out['errors']}  "
          f"{out['minutes']:.1f} min")
    print(f"best {sweep.metric} {out[f'best_{sweep.metric}']:.4f} with {out['best_config']}")
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
