"""Data-derived SASRec settings on synthetic logs of different shapes (no training: milliseconds)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.sasrec.defaults import derive_config
from recdata.dataset import Interactions


def log_of(lengths: np.ndarray, n_items: int, seed: int = 0) -> Interactions:
    """Training interactions: user u has lengths[u] random items (only the shape matters here)."""
    rng = np.random.default_rng(seed)
    uidx = np.repeat(np.arange(len(lengths)), lengths)
    frame = pd.DataFrame({"uidx": uidx, "iidx": rng.integers(0, n_items, len(uidx)), "ts": np.arange(len(uidx)),
                          "event": np.zeros(len(uidx), np.int8), "weight": np.ones(len(uidx), np.float32),
                          "split": np.zeros(len(uidx), np.int8)})
    return Interactions(frame, len(lengths), n_items)


def sparse_lengths(users: int, seed: int = 0) -> np.ndarray:
    """Amazon-like: median ~4, a long tail (geometric + 3)."""
    return np.random.default_rng(seed).geometric(0.2, users) + 2


def test_short_histories_small_catalog_get_a_short_window_and_full_ce():
    cfg, reasons = derive_config(log_of(sparse_lengths(3000), 2000), budget_minutes=30)
    lengths = sparse_lengths(3000)
    p99 = np.percentile(lengths, 99)
    assert cfg.max_len == max(20, int(np.ceil(p99 / 10) * 10)) and cfg.max_len <= 50
    assert cfg.loss == "ce" and cfg.dropout == 0.5 and cfg.hidden == 64 and cfg.train_windows == "last"
    assert cfg.val_users is None and cfg.max_train_minutes == 30
    assert any(r.startswith("max_len") and "99%" in r for r in reasons)
    assert any("loss ce" in r for r in reasons)
    # sparse data: lr decay on plateaus after a warm-up, and the weight average (chosen on amazon-toys validation)
    assert (cfg.lr_decay_factor, cfg.lr_decay_after, cfg.ema_decay) == (0.5, 15, 0.998)


def test_long_histories_get_the_capped_window_and_dense_settings():
    lengths = np.random.default_rng(1).integers(100, 900, 500)
    cfg, reasons = derive_config(log_of(lengths, 3000), budget_minutes=None)
    assert cfg.max_len == 200 and cfg.hidden == 128 and cfg.dropout == 0.2 and cfg.train_windows == "all"
    assert cfg.loss == "ce" and cfg.max_train_minutes is None
    assert cfg.lr_decay_factor == 1.0 and cfg.ema_decay == 0.0  # dense: the ML-1M schedule, unchanged


def test_large_catalog_on_a_tight_budget_gets_the_sampled_loss_and_a_validation_sample():
    lengths = sparse_lengths(40_000)
    big = log_of(lengths, 200_000)
    cfg, reasons = derive_config(big, budget_minutes=30)
    assert cfg.loss == "sampled" and cfg.sampler == "mixed" and cfg.logq_correction
    assert cfg.val_users == 10_000 and cfg.negatives == 1024
    assert any("sample of 10000 of 40000 users" in r for r in reasons)
    # A small catalog on a tight budget: at most a quarter of it as uniform negatives.
    small = derive_config(log_of(lengths, 2000), budget_minutes=1)[0]
    assert small.loss == "sampled" and small.negatives == 500
    # The same catalog with a generous budget affords full CE; without any budget, too big for it.
    assert derive_config(big, budget_minutes=24 * 60)[0].loss == "ce"
    assert derive_config(big, budget_minutes=None)[0].loss == "sampled"
    # The budget decides between the two on a mid-size catalog.
    mid = log_of(lengths, 20_000)
    assert derive_config(mid, budget_minutes=600)[0].loss == "ce"
    assert derive_config(mid, budget_minutes=30)[0].loss == "sampled"


def test_overrides_win_and_are_validated():
    train = log_of(sparse_lengths(500), 300)
    cfg, _ = derive_config(train, 10, hidden=32, epochs=3)
    assert cfg.hidden == 32 and cfg.epochs == 3
    with pytest.raises(ValueError, match="sampler='popular' is not one of"):
        derive_config(train, 10, loss="sampled", sampler="popular")
