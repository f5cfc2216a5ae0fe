"""The whole training run as one Ray job.

    python -m trainers.pipeline --format rees46 --path events/ [--config pipeline.yaml]
    python -m trainers.pipeline --format rees46 --path base.csv --path .recsys/events   # + served traffic
    ray job submit --working-dir . -- python -m trainers.pipeline --format sasrec --path ...

Stages (each a Ray task with its CPU/GPU needs declared, so on a cluster they land where they fit):

    prepare ─┬─► popularity
             ├─► vae ──► ease   (both register `discovery`: the gate keeps the better on validation)
             ├─► content
             ├─► sasrec
             └─► dqn   (shopping simulator calibrated on the same data, then RLlib DQN)

The stages after `prepare` run in parallel. Every stage logs a child MLflow run under one parent run and
registers its artifact through the promotion gate (`models:/<engine>@champion`; the discovery role's
`models:/discovery@champion` is whichever of VAE and EASE validates better). Rerunning resumes: a stage whose inputs
(data fingerprint, its config, its upstream outputs) are unchanged is skipped and its recorded
outputs reused -- the record lives in `$RECSYS_HOME/pipeline/<stage>.json`.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from reccore import logs, tracking
from reccore.config import config_from_dict, load_config
from recdata import evaluation
from recdata.dataset import PreparedDataset, prepare, source_fingerprint
from recdata.schema import DataError
from trainers import gate
from trainers.common import add_data_args, load_kwargs, ray_address


@dataclass
class StageSpec:
    """One pipeline stage and what it needs to run. `target` is `module:function`: with
    `on_dataset`, the function is an engine trainer's `train(prepared_dataset, options)`; otherwise
    it takes the StageContext."""

    name: str
    target: str
    needs: tuple[str, ...] = ()
    num_cpus: float = 1
    num_gpus: float = 0
    env: dict[str, str] = field(default_factory=dict)
    on_dataset: bool = False
    preload: tuple[str, ...] = ()
    """Heavy frameworks the stage imports first, with their native start-up lines silenced (quiet mode)."""
    after: tuple[str, ...] = ()
    """Stages this one waits for when they are in the run too (an order, not an input): engines that
    register into the same model go one at a time, so the gate compares each with the one before."""


# The DQN stage sets RLLIB_TEST_NO_TF_IMPORT: RLlib would otherwise import TensorFlow (+1 GB, +5 s).
STAGES = (
    StageSpec("prepare", "trainers.pipeline:prepare_stage", num_cpus=1),
    StageSpec("popularity", "trainers.train_popularity:train", ("prepare",), num_cpus=0.25, on_dataset=True),
    StageSpec("vae", "trainers.train_vae:train", ("prepare",), num_cpus=1, on_dataset=True),
    StageSpec("ease", "trainers.train_ease:train", ("prepare",), num_cpus=1, on_dataset=True, after=("vae",)),
    StageSpec("content", "trainers.train_content:train", ("prepare",), num_cpus=1, on_dataset=True),
    StageSpec("sasrec", "trainers.train_sasrec:train", ("prepare",), num_cpus=1, on_dataset=True,
              preload=("tensorflow",)),
    # The simulator's user model is fitted on the data itself, so the DQN needs only `prepare` and
    # trains beside the retrieval engines; it meets their scores only online, as candidate features.
    StageSpec("dqn", "trainers.train_dqn:pipeline_stage", ("prepare",), num_cpus=1,
              env={"RLLIB_TEST_NO_TF_IMPORT": "1", "OMP_NUM_THREADS": "1"}),
)


@dataclass
class PipelineConfig:
    """Per-stage options; each stage's section is passed to that stage's config dataclass."""

    stages: list[str] = field(default_factory=lambda: [s.name for s in STAGES])
    """Stages to run (their upstream stages are added automatically)."""
    popularity: dict = field(default_factory=dict)
    """PopularityConfig fields."""
    vae: dict = field(default_factory=dict)
    """VAE engine config fields."""
    ease: dict = field(default_factory=dict)
    """EASE engine config fields (models/ease: lambdas, max_items, event_weights)."""
    content: dict = field(default_factory=dict)
    """Content engine config fields."""
    sasrec: dict = field(default_factory=dict)
    """SASRec config fields."""
    dqn: dict = field(default_factory=dict)
    """DQN training options."""
    gate: dict = field(default_factory=dict)
    """Promotion gate (trainers.gate.GateConfig fields: enabled, metric, margin)."""
    evaluation: dict = field(default_factory=dict)
    """Evaluation of every stage (recdata.evaluation.EvaluationConfig fields: max_users, seed)."""


@dataclass
class StageContext:
    """What a stage function receives (picklable: it travels to a Ray worker)."""

    name: str
    data: dict[str, Any]
    """fmt, path, load options, and (after prepare) `dataset_dir`."""
    options: dict
    upstream: dict[str, dict]
    work_dir: str
    parent_run_id: str | None
    tracking_uri: str
    gate: dict = field(default_factory=dict)
    """The promotion gate's settings (GateConfig fields) for the engines this stage registers."""
    evaluation: dict = field(default_factory=dict)
    """EvaluationConfig fields for every evaluation this stage runs."""


def prepare_stage(ctx: StageContext) -> dict:
    ds = prepare(ctx.data["fmt"], ctx.data["path"], cache_dir=Path(ctx.work_dir) / "prepared",
                 **ctx.data.get("load_kwargs", {}))
    return {"dataset_dir": str(Path(ctx.work_dir) / "prepared" / ds.meta["fingerprint"]),
            "fingerprint": ds.meta["fingerprint"], "users": ds.meta["users"], "items": ds.meta["items"],
            "interactions": ds.meta["interactions_encoded"], "bad_rows": ds.meta["bad_rows"]}


def _running_marker(work_dir: str, name: str) -> Path:
    return Path(work_dir) / "pipeline" / f"{name}.running"


def _run_stage(spec: StageSpec, ctx: StageContext) -> dict:
    """Runs inside a Ray worker: child MLflow run under the parent, then the stage function."""
    os.environ["MLFLOW_TRACKING_URI"] = ctx.tracking_uri
    os.environ["RECSYS_HOME"] = ctx.work_dir
    os.environ["RECSYS_STAGE"] = spec.name
    logs.worker_setup()  # also where the job's runtime_env could not carry the setup hook
    gate.use(config_from_dict(gate.GateConfig, ctx.gate, "pipeline gate"))
    evaluation.use(config_from_dict(evaluation.EvaluationConfig, ctx.evaluation, "pipeline evaluation"))
    # The driver reads this to tell a running stage from one still waiting for CPUs.
    _running_marker(ctx.work_dir, spec.name).write_text(str(time.time()))
    module, func = spec.target.split(":")
    with logs.quiet_native_stderr():  # TensorFlow's C++ start-up lines, printed before its log settings apply
        for name in spec.preload:
            importlib.import_module(name)
        fn = getattr(importlib.import_module(module), func)
    if spec.on_dataset:
        train, dataset_dir = fn, ctx.data["dataset_dir"]
        fn = lambda ctx: train(PreparedDataset.load(dataset_dir), ctx.options)  # noqa: E731
    t0 = time.perf_counter()
    if ctx.parent_run_id is None:
        out = fn(ctx)
    else:
        mlflow = tracking.configured_mlflow()  # the pipeline's store: MLFLOW_TRACKING_URI set above
        with mlflow.start_run(run_name=spec.name, parent_run_id=ctx.parent_run_id,
                              experiment_id=tracking.experiment_id("pipeline")):
            out = fn(ctx)
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


def _fingerprint(spec: StageSpec, ctx: StageContext) -> str:
    payload = {"stage": spec.target, "data": ctx.data if spec.name == "prepare" else None,
               "options": ctx.options, "upstream": {k: v.get("fingerprint") for k, v in ctx.upstream.items()}}
    if ctx.gate:  # only when set: records written before the gate existed stay valid
        payload["gate"] = ctx.gate
    if ctx.evaluation:
        payload["evaluation"] = ctx.evaluation
    if spec.name == "prepare":
        # Size + mtime of the input files: an edited log re-runs everything downstream.
        payload["files"] = source_fingerprint(ctx.data["fmt"], ctx.data["path"], **ctx.data.get("load_kwargs", {}))
    else:
        payload["dataset"] = ctx.upstream.get("prepare", {}).get("fingerprint")
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _with_upstream(names: list[str]) -> list[StageSpec]:
    by_name = {s.name: s for s in STAGES}
    unknown = sorted(set(names) - set(by_name))
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages: {[s.name for s in STAGES]}")
    wanted, todo = set(), list(names)
    while todo:
        n = todo.pop()
        if n not in wanted:
            wanted.add(n)
            todo.extend(by_name[n].needs)
    return [s for s in STAGES if s.name in wanted]


HEADLINE_KEYS = ("users", "items", "interactions", "bad_rows", "test_hr@10", "test_ndcg@10",
                 "popularity_test_ndcg@10", "epochs", "eval_return", "eval_purchases")


def _headline(out: dict) -> str:
    """The few figures of a stage a person reads in the log; everything else is in MLflow and the record."""
    shown = {k: out[k] for k in HEADLINE_KEYS if isinstance(out.get(k), (int, float))}
    return "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v:,}" for k, v in shown.items())


def _heartbeat(work: Path, names: list[str], submitted_at: dict[str, float]) -> str:
    now, running, waiting = time.time(), [], []
    for name in names:
        marker = _running_marker(str(work), name)
        if marker.exists():
            running.append(f"{name} {now - float(marker.read_text() or now):.0f}s")
        else:
            waiting.append(f"{name} {now - submitted_at[name]:.0f}s")
    parts = [f"running: {', '.join(running)}"] if running else []
    parts += [f"waiting for CPUs: {', '.join(waiting)}"] if waiting else []
    return f"[pipeline] {'; '.join(parts)}"


def run_pipeline(data: dict, config: PipelineConfig, force: bool = False, address: str | None = None,
                 heartbeat_s: float = 30.0) -> dict:
    import ray  # lazy: the CLI's config errors are reported without starting (or importing) Ray

    work = tracking.work_dir()
    record_dir = work / "pipeline"
    record_dir.mkdir(parents=True, exist_ok=True)
    specs = _with_upstream(config.stages)
    names = {s.name for s in specs}
    waits = {s.name: (*s.needs, *(a for a in s.after if a in names)) for s in specs}
    if not ray.is_initialized():
        # Under `ray job submit` the job's own runtime_env applies (a second one would clash); each
        # stage gets the work dir and tracking URI through its StageContext, and quiet mode itself.
        submitted = "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ
        ray.init(address=ray_address(address), include_dashboard=False, logging_level=logs.ray_logging_level(),
                 **({} if submitted else {"runtime_env": logs.ray_runtime_env()}))
    outputs: dict[str, dict] = {}
    submitted_at: dict[str, float] = {}
    with tracking.run("pipeline", run_name=f"pipeline-{data['fmt']}") as parent:
        tracking.log_params({"format": data["fmt"], "path": data["path"], "stages": ",".join(s.name for s in specs)})
        pending: dict[Any, tuple[StageSpec, StageContext, str]] = {}
        remaining = list(specs)
        while remaining or pending:
            wave = []  # stages submitted together, announced on one line
            while ready := [s for s in remaining if all(n in outputs for n in waits[s.name])]:
                spec = ready[0]
                remaining.remove(spec)
                ctx = StageContext(spec.name, {**data, **outputs.get("prepare", {})}, getattr(config, spec.name, {})
                                   if spec.name != "prepare" else {}, {n: outputs[n] for n in spec.needs},
                                   str(work), parent.info.run_id, tracking.tracking_uri(), gate=config.gate,
                                   evaluation=config.evaluation)
                fp = _fingerprint(spec, ctx)
                record = record_dir / f"{spec.name}.json"
                if not force and record.exists():
                    saved = json.loads(record.read_text())
                    if saved.get("fingerprint") == fp:
                        outputs[spec.name] = saved
                        print(f"[pipeline] {spec.name:<10} unchanged inputs, skipped (from {record})", flush=True)
                        continue
                _running_marker(str(work), spec.name).unlink(missing_ok=True)
                task = ray.remote(_run_stage).options(
                    num_cpus=spec.num_cpus, num_gpus=spec.num_gpus, name=f"stage:{spec.name}",
                    runtime_env={"env_vars": spec.env} if spec.env else None,
                ).remote(spec, ctx)
                pending[task] = (spec, ctx, fp)
                submitted_at[spec.name] = time.time()
                wave.append(f"{spec.name} ({spec.num_cpus:g} CPU)")
            if wave:
                print(f"[pipeline] submitted: {', '.join(wave)}", flush=True)
            if not pending:
                if remaining:
                    raise RuntimeError(f"stages {[s.name for s in remaining]} cannot start")
                break
            done, _ = ray.wait(list(pending), num_returns=1, timeout=heartbeat_s)
            if not done:  # no stage finished for a while: say what runs and what waits for CPUs
                print(_heartbeat(work, [s.name for s, _, _ in pending.values()], submitted_at), flush=True)
                continue
            spec, ctx, fp = pending.pop(done[0])
            out = ray.get(done[0])  # a stage's exception surfaces here, with its traceback
            out["fingerprint"] = fp
            outputs[spec.name] = out
            (record_dir / f"{spec.name}.json").write_text(json.dumps(out, indent=2, default=str))
            summary = {k: v for k, v in out.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            tracking.log_metrics(summary, prefix=f"{spec.name}_")  # e.g. vae_test_hr_at_10
            print(f"[pipeline] {spec.name:<10} done in {out['seconds']} s  {_headline(out)}", flush=True)
    return outputs


def load_pipeline_config(path: str | None) -> PipelineConfig:
    return load_config(PipelineConfig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="recsys pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p, several=True)
    p.add_argument("--config", help="pipeline YAML: stages + one section per stage")
    p.add_argument("--stages", help="comma-separated subset of stages (upstream stages are added)")
    p.add_argument("--force", action="store_true", help="rerun every stage even if its inputs are unchanged")
    p.add_argument("--gate-margin", type=float, help="a retrained engine takes @champion only if its validation "
                   "metric beats the champion's by more than this (default 0: strictly better)")
    p.add_argument("--address", help="Ray address (default: the job's cluster, or a new local one)")
    args = p.parse_args(argv)
    logs.configure(logs.verbose())  # `python -m trainers.pipeline` / `ray job submit`: quiet unless RECSYS_LOG=debug
    try:
        config = load_pipeline_config(args.config)
        if args.stages:
            config = dataclasses.replace(config, stages=[s.strip() for s in args.stages.split(",")])
        if args.gate_margin is not None:
            config = dataclasses.replace(config, gate={**config.gate, "margin": args.gate_margin})
        config_from_dict(gate.GateConfig, config.gate, "pipeline gate")  # a typo fails here, not in a stage
        config_from_dict(evaluation.EvaluationConfig, config.evaluation, "pipeline evaluation")
        paths = [str(Path(x).resolve()) for x in args.path]
        missing = [x for x in paths if not Path(x).exists()]
        if missing:
            raise DataError(f"--path {', '.join(missing)} does not exist; check the path (the served-event log "
                            "is $RECSYS_HOME/events once the app has acknowledged an event)")
        data = {"fmt": args.fmt, "path": paths[0] if len(paths) == 1 else paths, "load_kwargs": load_kwargs(args)}
        outputs = run_pipeline(data, config, force=args.force, address=args.address)
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({name: {k: v for k, v in out.items() if k != "fingerprint"} for name, out in outputs.items()},
                     default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
