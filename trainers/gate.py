"""The promotion gate: a retrained engine takes `@champion` only if it beats the champion it would
replace on the validation split of the data it was trained on.

Both are scored on the *current* split -- the champion was evaluated on older data when it was
registered, and figures from two different splits do not compare. The champion's artifact is loaded
and scored through its own catalog (`CatalogBridge`), so items or users it never saw count against it
exactly as they would online. The new version is always registered; it becomes `@champion` if
`candidate > champion + margin`, else `@challenger`. The decision and both figures go into the
training run (MLflow params/metrics) and are printed. `recsys promote ENGINE VERSION` overrides it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.base import Engine
from reccore import logs, tracking
from recdata.dataset import PreparedDataset
from recdata.evaluation import evaluate
from recdata.schema import HistoryBatch


@dataclass
class GateConfig:
    """`gate:` section of the pipeline YAML (`recsys pipeline --gate-margin`)."""

    enabled: bool = True
    """False: every new version takes @champion at once (no comparison)."""
    metric: str = "ndcg@10"
    """Validation metric compared (any key `recdata.evaluation.evaluate` returns: hr@10, ndcg@20, mrr...)."""
    margin: float = 0.0
    """The candidate must beat the champion by more than this (absolute, in the metric's units)."""


_config = GateConfig()


def use(config: GateConfig) -> None:
    """The gate settings of this process's trainers (the pipeline sets them in each stage's worker)."""
    global _config
    _config = config


class CatalogBridge:
    """An engine scored in another dataset's dense ids: histories are translated through raw ids
    into the engine's own catalog, and its scores back; items it does not know score below all others."""

    def __init__(self, engine: Engine, catalog):
        self.engine, self.name = engine, f"{engine.name} (champion)"
        self.to_engine = engine.catalog.item_index(catalog.item_ids)                     # [n_items] -> own idx or -1
        self.users = engine.catalog.user_index(catalog.user_ids) if engine.catalog.n_users else None
        self.same = len(self.to_engine) == engine.catalog.n_items and np.array_equal(
            self.to_engine, np.arange(len(self.to_engine)))

    def score(self, batch: HistoryBatch) -> np.ndarray:
        if self.same:
            return self.engine.score(batch)
        items, events = [], []
        for h, e in zip(batch.items, batch.events):
            mapped = self.to_engine[h]
            items.append(mapped[mapped >= 0])
            events.append(np.asarray(e)[mapped >= 0])
        users = None
        if batch.users is not None:
            users = self.users[batch.users] if self.users is not None else np.full(len(batch.users), -1)
        own = np.asarray(self.engine.score(HistoryBatch(items, events, users)), np.float64)   # [B, own items]
        known = self.to_engine >= 0
        out = np.empty((len(batch), len(self.to_engine)))
        out[:, known] = own[:, self.to_engine[known]]
        out[:, ~known] = own.min(axis=1, keepdims=True) - 1.0 if own.size else 0.0
        return out


def register_gated(engine: Engine, ds: PreparedDataset, name: str, candidate_val: dict,
                   config: GateConfig | None = None) -> tuple[str, str]:
    """Register `engine` as a new version of `name` and give it @champion or @challenger.
    Needs an active MLflow run (the trainer's). Returns (version, alias)."""
    config = config or _config
    previous = tracking.model_version(name, "champion")
    version = tracking.log_engine(engine, name, alias="")
    key = config.metric
    ours = float(candidate_val[key]) if key in candidate_val else None
    if ours is None:
        raise ValueError(f"gate metric {key!r} is not among the validation metrics {sorted(candidate_val)}; "
                         "set gate.metric to one of them")
    if not config.enabled or previous is None:
        alias, theirs = "champion", None
        why = "gate disabled" if not config.enabled else "no champion yet"
    else:
        champ = Engine.load(tracking.resolve_artifact(f"models:/{name}/{previous}"))
        theirs = float(evaluate(CatalogBridge(champ, ds.catalog), ds, "val")[key])
        alias = "champion" if ours > theirs + config.margin else "challenger"
        why = f"val {key} {ours:.4f} vs champion v{previous} {theirs:.4f} (margin {config.margin})"
    tracking.configured_mlflow().MlflowClient().set_registered_model_alias(name, alias, version)
    tracking.log_params({"gate_decision": alias, "gate_metric": key, "gate_margin": config.margin,
                         "gate_previous_champion": previous or "none", "gate_version": version})
    figures = {"val_gate_candidate": ours, **({"val_gate_champion": theirs} if theirs is not None else {})}
    tracking.log_metrics(figures)
    verdict = "promoted to @champion" if alias == "champion" else "kept as @challenger (champion unchanged)"
    if logs.verbose() or not logs.in_pipeline_stage():  # a pipeline reports each stage's gate in its summary
        print(f"[gate] {name} v{version} {verdict}: {why}", flush=True)
    return version, alias
