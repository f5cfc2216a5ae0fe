"""`python -m trainers.train_content` end to end on a tiny CSV with item metadata: embeds the
catalog, logs to a tmp MLflow store, registers `content@champion`; the artifact answers queries."""
from __future__ import annotations

import numpy as np
import pandas as pd

from models.base import Engine
from reccore import tracking
from trainers.train_content import main

TITLES = {1: ("Trail running shoes", "shoes", 120), 2: ("Leather boots", "shoes", 150),
          3: ("Android phone", "phones", 300), 4: ("Budget phone", "phones", 90),
          5: ("Pasta cookbook", "books", 15), 6: ("Space opera novel", "books", 12)}


def test_train_content_registers_champion(recsys_home, tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", it, t, "view", *TITLES[it]) for u in range(12)
            for t, it in enumerate(rng.choice(list(TITLES), 4, replace=False))]
    csv = tmp_path / "events.csv"
    pd.DataFrame(rows, columns=["user", "item", "ts", "event", "title", "category", "price"]).to_csv(csv, index=False)
    cfg = tmp_path / "content.yaml"
    cfg.write_text(f"cache_dir: {tmp_path / 'emb'}\ntorch_threads: 1\nprice_buckets: 3\n")
    args = ["--format", "csv", "--path", str(csv), "--config", str(cfg), "--no-progress"]
    for k in ("user", "item", "ts", "event", "title", "category", "price"):
        args += ["--map", f"{k}={k}"]
    assert main(args) == 0
    assert "popularity" in capsys.readouterr().out
    assert tracking.model_version("content") == "1"
    engine = Engine.load(tracking.resolve_artifact("models:/content@champion", tmp_path / "dl"))
    assert engine.name == "content" and engine.item_emb.shape == (6, 384)
    got, _ = engine.similar(int(engine.catalog.item_index([1])[0]), k=3, same_category=True)
    assert engine.catalog.item_raw(got).tolist() == [2]
    got, _ = engine.similar("mobile phone", k=1, max_price=100)
    assert engine.catalog.item_raw(got).tolist() == [4]
