"""Popularity: every user gets the items with the most (weighted) training interactions.

The baseline printed beside every metric in this project. Optionally recency-weighted: with a
half-life, an interaction `d` days before the newest one counts 0.5 ** (d / half_life), which is
what "trending" means in a shop whose catalog turns over.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.base import Engine
from recdata.dataset import Interactions
from recdata.schema import HistoryBatch


@dataclass
class PopularityConfig:
    use_weights: bool = False
    """Count event weights (purchase > cart > view) instead of one per interaction."""
    half_life_days: float | None = None
    """Recency decay of counts in days; None counts all history equally."""


class PopularityEngine(Engine):
    name = "popularity"
    config_class = PopularityConfig

    def fit(self, train: Interactions, val: Interactions | None = None) -> "PopularityEngine":
        f = train.frame
        w = f["weight"].to_numpy(np.float64) if self.config.use_weights else np.ones(len(f))
        if self.config.half_life_days:
            age_days = (f["ts"].max() - f["ts"].to_numpy()) / 86400.0
            w = w * 0.5 ** (age_days / self.config.half_life_days)
        self.counts = np.bincount(f["iidx"].to_numpy(), weights=w, minlength=train.n_items)
        return self

    def score(self, batch: HistoryBatch) -> np.ndarray:
        # A read-only view: every caller copies before masking, so a second copy here would be waste.
        return np.broadcast_to(self.counts, (len(batch), len(self.counts)))  # [B, n_items]

    def _save_weights(self, folder: Path) -> None:
        np.save(folder / "counts.npy", self.counts)

    def _load_weights(self, folder: Path) -> None:
        self.counts = np.load(folder / "counts.npy")
