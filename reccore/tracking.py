"""MLflow with an embedded default: a sqlite store under the project's work directory.

`MLFLOW_TRACKING_URI` overrides it (a shared server for a cluster); `RECSYS_HOME` moves the work
directory (default `.recsys/` in the current directory). Engine artifacts are logged under the run
as `engine/` and registered as model versions with an alias (default `champion`), so Serve replicas
load `models:/<name>@champion` without knowing which run produced it.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from reccore.paths import work_dir

__all__ = ["configured_mlflow", "experiment_id", "log_engine", "log_figure", "log_metrics", "log_params",
           "metric_prefix", "model_version", "register", "resolve_artifact", "run", "tracking_uri", "work_dir"]

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{work_dir() / 'mlflow.db'}"


def configured_mlflow():
    """The `mlflow` module pointed at this project's store (imported here, on first use: a process that
    never tracks anything does not pay for importing MLflow)."""
    import mlflow

    # mlflow.set_tracking_uri also writes MLFLOW_TRACKING_URI into os.environ; left there, it would
    # outrank a later RECSYS_HOME in this process and leak into every job or worker started from it.
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri())
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    return mlflow


def experiment_id(name: str) -> str:
    """Get or create; artifacts of a local store go beside the database, not into the cwd."""
    mlflow = configured_mlflow()
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if tracking_uri().startswith("sqlite:///"):
        location = (work_dir() / "mlartifacts" / name).as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except Exception:  # created concurrently by another process (parallel trainers, Tune trials)
        return mlflow.get_experiment_by_name(name).experiment_id


@contextlib.contextmanager
def run(experiment: str, run_name: str | None = None, nested: bool = False, tags: dict | None = None) -> Iterator:
    mlflow = configured_mlflow()
    with mlflow.start_run(experiment_id=experiment_id(experiment), run_name=run_name, nested=nested,
                          tags=tags) as active:
        yield active


def log_params(params: dict) -> None:
    mlflow = configured_mlflow()
    flat = {k: (str(v)[:500] if not isinstance(v, (int, float, bool)) else v) for k, v in params.items()}
    mlflow.log_params(flat)


def metric_prefix(split: str, baseline: str | None = None) -> str:
    """The one metric-name convention of every run: `<split>_<metric>` for the run's own engine (as the
    engines' per-epoch histories already name theirs: `val_ndcg@10`), `<baseline>_<split>_<metric>`
    for an engine evaluated beside it (`popularity_test_hr@10`). MLflow refuses '@': `log_metrics`
    writes it as '_at_' (`test_hr_at_10`)."""
    return f"{baseline}_{split}_" if baseline else f"{split}_"


def log_metrics(metrics: dict, step: int | None = None, prefix: str = "") -> None:
    mlflow = configured_mlflow()
    clean = {
        (prefix + k).replace("@", "_at_"): float(v)
        for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    mlflow.log_metrics(clean, step=step)


def log_figure(fig, name: str) -> None:
    configured_mlflow().log_figure(fig, name)


def log_engine(engine, registered_name: str | None = None, alias: str = "champion") -> str | None:
    """Save the engine artifact into the active run as `engine/`; register it when a name is given.
    Returns the registered version (as a string) or None."""
    mlflow = configured_mlflow()
    with tempfile.TemporaryDirectory() as tmp:
        engine.save(Path(tmp) / "engine")
        mlflow.log_artifacts(str(Path(tmp) / "engine"), artifact_path="engine")
    if not registered_name:
        return None
    return register(mlflow.get_artifact_uri("engine"), registered_name, alias)


def register(source_uri: str, name: str, alias: str = "champion") -> str:
    mlflow = configured_mlflow()
    client = mlflow.MlflowClient()
    try:
        client.get_registered_model(name)
    except Exception:
        client.create_registered_model(name)
    active = mlflow.active_run()
    mv = client.create_model_version(name, source=source_uri, run_id=active.info.run_id if active else None)
    if alias:
        client.set_registered_model_alias(name, alias, mv.version)
    return str(mv.version)


def resolve_artifact(uri: str | Path, dst: str | Path | None = None) -> Path:
    """A local folder as is; `models:/name@alias`, `runs:/...` or any MLflow URI downloaded."""
    s = str(uri)
    if "://" not in s and not s.startswith("models:/") and not s.startswith("runs:/"):
        p = Path(s)
        if not p.exists():
            raise FileNotFoundError(f"artifact {p} does not exist; train the engine first or fix the path")
        return p
    mlflow = configured_mlflow()
    dst = Path(dst) if dst else Path(tempfile.mkdtemp(prefix="recsys-artifact-"))
    return Path(mlflow.artifacts.download_artifacts(s, dst_path=str(dst)))


def model_version(name: str, alias: str = "champion") -> str | None:
    mlflow = configured_mlflow()
    try:
        return str(mlflow.MlflowClient().get_model_version_by_alias(name, alias).version)
    except Exception:
        return None
