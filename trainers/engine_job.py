"""The tail every engine trainer shares: fit, evaluate beside popularity, log, register.

    summary = fit_evaluate_register(engine, ds, register_as="vae", fit=lambda: engine.fit(train, val))

Inside the caller's MLflow run it: fits (timed), evaluates validation and test with full ranking (seen
items filtered), evaluates the popularity baseline on test beside it, prints the table, logs params
and metrics under the one naming convention (`reccore.tracking.metric_prefix`: `val_ndcg_at_10`,
`test_hr_at_10`, `popularity_test_hr_at_10`), logs the artifact and registers it through the promotion
gate (trainers/gate.py: @champion only if it beats the champion on this validation split). The summary it returns
(what the pipeline records per stage) uses the same keys, with '@'.
"""
from __future__ import annotations

import time
from typing import Callable

from models.base import Engine
from models.popularity import PopularityEngine
from reccore import logs, tracking
from recdata.dataset import PreparedDataset
from recdata.evaluation import evaluate, format_table
from trainers import gate

TABLE_KEYS = ("hr@10", "ndcg@10", "hr@20", "ndcg@20", "recall@20", "mrr", "coverage@10")
BASELINE = "popularity"


def _prefixed(metrics: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in metrics.items() if k != "users"}


def fit_evaluate_register(engine: Engine, ds: PreparedDataset, register_as: str | None,
                          fit: Callable[[], object] | None = None, params: dict | None = None,
                          alias: str = "champion", table_keys=TABLE_KEYS, title: str = "") -> dict:
    """Fit `engine` (by `fit()`, default `engine.fit(ds.train)`), evaluate, log, register under
    `register_as` (None: log the artifact only). Needs an active MLflow run (the caller's)."""
    tracking.log_params({"engine": engine.name, "split": ds.meta.get("split", "loo"), **(params or {})})
    t0 = time.perf_counter()
    (fit or (lambda: engine.fit(ds.train)))()
    engine.fit_seconds = time.perf_counter() - t0
    val, test = evaluate(engine, ds, "val"), evaluate(engine, ds, "test")
    rows = {engine.name: test}
    if engine.name != BASELINE:
        rows[BASELINE] = evaluate(PopularityEngine(catalog=ds.catalog).fit(ds.train), ds, "test")
    if logs.verbose() or not logs.in_pipeline_stage():  # a pipeline prints one table for every stage
        print(format_table(rows, list(table_keys), title or "test, full ranking over all items, seen items filtered"))
    tracking.log_metrics(val, prefix=tracking.metric_prefix("val"))
    tracking.log_metrics(test, prefix=tracking.metric_prefix("test"))
    if engine.name != BASELINE:
        tracking.log_metrics(rows[BASELINE], prefix=tracking.metric_prefix("test", BASELINE))
    tracking.log_metrics({"fit_seconds": engine.fit_seconds})
    if register_as and alias == "champion":  # the promotion gate decides champion or challenger
        version, alias = gate.register_gated(engine, ds, register_as, val)
    else:
        version = tracking.log_engine(engine, register_as or None, alias=alias)
    summary = {"artifact": f"models:/{register_as}@{alias}" if version else None, "version": version,
               "alias": alias if version else None,
               "fit_seconds": round(engine.fit_seconds, 2),
               **_prefixed(val, tracking.metric_prefix("val")), **_prefixed(test, tracking.metric_prefix("test"))}
    if engine.name != BASELINE:
        summary.update(_prefixed(rows[BASELINE], tracking.metric_prefix("test", BASELINE)))
    return summary
