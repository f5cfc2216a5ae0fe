"""Markov: item-to-item transition counts, scored from the last items of a history.

A first-order Markov chain over items (as in the FPMC/"next basket" line of work: Rendle et al.,
"Factorizing Personalized Markov Chains for Next-Basket Recommendation", WWW 2010, without the
factorization): T[i, j] counts how often item j followed item i in a user's training sequence,
within `window` steps. A history is scored by the rows of its last `last_n` items, the older
ones down-weighted by `decay`, plus a tiny popularity term that only breaks ties (so a history
whose last item was never seen falls back to popularity). It is the cheapest model that knows
what came *next*; the sequence engines should beat it, and popularity should not.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from models.base import Engine
from recdata.dataset import Interactions
from recdata.schema import HistoryBatch


@dataclass
class MarkovConfig:
    window: int = 1
    """Count j after i when j is at most this many steps after i in a user's sequence."""
    last_n: int = 3
    """Score from the transitions of the history's last n items."""
    decay: float = 0.5
    """Weight of the k-th last item is decay ** k (k = 0 for the last one)."""
    popularity_weight: float = 1e-6
    """Weight of normalized popularity added to every score (tie-break / cold fallback)."""


class MarkovEngine(Engine):
    name = "markov"
    config_class = MarkovConfig

    def fit(self, train: Interactions, val: Interactions | None = None) -> "MarkovEngine":
        indptr, items, _ = train.sequences()  # CSR over users, items in time order  [N]
        n = train.n_items
        user_of = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        rows, cols = [], []
        for step in range(1, self.config.window + 1):
            same_user = user_of[step:] == user_of[:-step]
            rows.append(items[:-step][same_user])
            cols.append(items[step:][same_user])
        r, c = np.concatenate(rows), np.concatenate(cols)
        self.trans = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n, n))  # [I, I]
        self.trans.sum_duplicates()
        counts = np.bincount(items, minlength=n).astype(np.float64)
        self.popularity = counts / max(counts.max(), 1.0)  # [I] in [0, 1]
        return self

    def score(self, batch: HistoryBatch) -> np.ndarray:
        cfg = self.config
        B = len(batch)
        rows, cols, w = [], [], []
        for b, hist in enumerate(batch.items):
            last = hist[-cfg.last_n:][::-1]  # most recent first
            last = last[(last >= 0) & (last < self.trans.shape[0])]
            rows.append(np.full(len(last), b))
            cols.append(last)
            w.append(cfg.decay ** np.arange(len(last)))
        sel = sp.csr_matrix((np.concatenate(w) if w else [], (np.concatenate(rows) if rows else [],
                             np.concatenate(cols) if cols else [])), shape=(B, self.trans.shape[0]))
        scores = (sel @ self.trans).toarray().astype(np.float64)  # [B, I]
        return scores + cfg.popularity_weight * self.popularity[None, :]

    def _save_weights(self, folder: Path) -> None:
        sp.save_npz(folder / "transitions.npz", self.trans)
        np.save(folder / "popularity.npy", self.popularity)

    def _load_weights(self, folder: Path) -> None:
        self.trans = sp.load_npz(folder / "transitions.npz").tocsr()
        self.popularity = np.load(folder / "popularity.npy")
