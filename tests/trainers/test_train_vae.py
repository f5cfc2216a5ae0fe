"""`python -m trainers.train_vae` end to end on a tiny CSV: trains, evaluates, logs to a tmp MLflow
store, registers `discovery@champion`, and the registered artifact scores a brand-new user."""
from __future__ import annotations

import numpy as np
import pandas as pd

from models.base import Engine
from recdata.schema import HistoryBatch
from reccore import tracking
from trainers.train_vae import main

MAP = ["--map", "user=user", "--map", "item=item", "--map", "ts=ts", "--map", "event=event"]


def write_events(path, n_users=60, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        base = 100 if u % 2 else 200
        for t, it in enumerate(rng.choice(12, 7, replace=False)):
            rows.append((f"u{u}", base + it, t, rng.choice(["view", "view", "cart", "purchase"])))
    pd.DataFrame(rows, columns=["user", "item", "ts", "event"]).to_csv(path, index=False)


def test_train_vae_registers_champion(recsys_home, tmp_path, capsys):
    csv = tmp_path / "events.csv"
    write_events(csv)
    cfg = tmp_path / "vae.yaml"
    cfg.write_text("hidden: [16]\nlatent: 4\nbatch_size: 16\neval_every: 2\ntorch_threads: 1\n"
                   "event_weights: {view: 1.0, cart: 2.0, purchase: 4.0}\n")
    assert main(["--format", "csv", "--path", str(csv), *MAP, "--config", str(cfg), "--epochs", "4"]) == 0
    out = capsys.readouterr().out
    assert "recall@20" in out and "popularity" in out
    assert tracking.model_version("discovery") == "1"
    engine = Engine.load(tracking.resolve_artifact("models:/discovery@champion", tmp_path / "dl"))
    assert engine.name == "vae" and engine.config.event_weights["purchase"] == 4.0
    items = engine.catalog.item_index([100, 101, 102])
    scores = engine.score(HistoryBatch.of([items], [[0, 1, 2]], users=[-1]))
    assert scores.shape == (1, engine.n_items) and np.isfinite(scores).all()
    import mlflow

    run = mlflow.search_runs(experiment_names=["vae"]).iloc[0]
    assert 0 <= run["metrics.test_recall_at_20"] <= 1 and "metrics.popularity_test_recall_at_20" in run
    assert run["params.recipe"] == "mult-vae"


def test_train_vae_bad_config_is_a_clear_error(recsys_home, tmp_path, capsys):
    csv = tmp_path / "events.csv"
    write_events(csv, n_users=10)
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("hiden: [16]\n")
    assert main(["--format", "csv", "--path", str(csv), *MAP, "--config", str(cfg)]) == 2
    assert "valid keys" in capsys.readouterr().err
