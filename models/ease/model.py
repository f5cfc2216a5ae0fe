"""Discovery engine: EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019),
cornac's `EASE` formulation.

One closed-form item x item matrix: P = (X^T X + lambda I)^-1, B = I - P / diag(P), so diag(B) = 0 (an
item never recommends itself). cornac's `EASE.fit` computes it with a general inverse and rebuilds the
Gram matrix for every lambda; here the Gram matrix is built once for the whole lambda grid and inverted
by Cholesky (it is symmetric positive definite): half the floating-point work, the same B as cornac's
(a test). A history x (event weights, the strongest event per item) scores every item as x @ B --
fold-in, like the VAE, so a brand-new history gets personal candidates with no retraining. On sparse
store logs it is the strongest simple discovery model (bench.sequence on Amazon Toys / Sports: above
VAE-CF), and on ML-1M it beats VAE-CF too (bench.vae_ml1m, VAE 0.87x EASE).

The cost is the dense B: items^2 floats (18k items: 1.3 GB as float32; fitting holds the Gram matrix
and its inverse in float64 besides, 2.6 GB each), so `max_items` bounds the catalog it accepts with an
error that says so; the pipeline's `ease` stage skips itself above it, and the VAE serves discovery
there. lambda is chosen on validation NDCG@10 from `lambdas` when `fit` gets a validation split (the
first one otherwise).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from models.base import Engine
from models.vae.data import interaction_matrix
from reccore.progress import Progress
from recdata import evaluation
from recdata.dataset import VAL, VAL_FOLD_IN, Interactions
from recdata.evaluation import sample_users
from recdata.metrics import RankingEvaluator, mask_seen
from recdata.schema import EventWeights, HistoryBatch


@dataclass
class EaseConfig:
    lambdas: list[float] = field(default_factory=lambda: [30.0, 100.0, 300.0])
    """L2 strengths tried, each a full fit; the best validation NDCG@10 is kept (the first without
    validation). The best sat inside this grid on ML-1M, Amazon Toys and Sports."""
    event_weights: dict = field(default_factory=lambda: {"view": 1.0, "cart": 3.0, "purchase": 5.0})
    """Input strength of each event type (the VAE's defaults); 0 < view <= cart <= purchase."""
    max_train_minutes: float = 0.0
    """Wall-clock budget of the lambda grid (0: none). One fit cannot be interrupted, so a fit starts only
    when the last one's time (inversion and validation) still fits in what is left; the first always runs
    (a model is needed). The best lambda validated so far is kept."""
    max_items: int = 20_000
    """Largest catalog accepted: B is items^2 float32 (20k items: 1.6 GB), and fitting holds the items^2
    Gram matrix and its inverse in float64 (3.2 GB each) besides."""

    def __post_init__(self) -> None:
        self.weights = EventWeights(**self.event_weights)  # validates, with the fix in its error
        if not self.lambdas or any(x <= 0 for x in self.lambdas):
            raise ValueError(f"lambdas={self.lambdas}: give one or more positive L2 strengths, e.g. [30, 100, 300]")
        if self.max_train_minutes < 0:
            raise ValueError(f"max_train_minutes={self.max_train_minutes} must be >= 0 (0: no budget)")
        if self.max_items < 1:
            raise ValueError(f"max_items={self.max_items} must be >= 1")


def ease_weights(gram: np.ndarray, lamb: float, block: int = 2048) -> np.ndarray:
    """B = I - P / diag(P) with P = (gram + lamb I)^-1, by Cholesky (LAPACK potrf + potri, in place on a
    copy of gram); float32 [n, n], zero diagonal. `gram` is left unchanged for the next lambda."""
    from scipy.linalg import lapack

    n = gram.shape[0]
    a = gram.copy(order="F")
    a[np.diag_indices(n)] += lamb
    a, info = lapack.dpotrf(a, lower=False, overwrite_a=True, clean=False)
    if info == 0:
        a, info = lapack.dpotri(a, lower=False, overwrite_c=True)
    if info != 0:  # gram + lamb I is positive definite for lamb > 0; a failure is numerical
        raise np.linalg.LinAlgError(f"EASE: the Cholesky inverse failed (LAPACK info {info}) at lambda={lamb}; "
                                    "try a larger lambda")
    for lo in range(0, n, block):  # potri fills the upper triangle: mirror it, a block of rows at a time
        a[lo + block:, lo:lo + block] = a[lo:lo + block, lo + block:].T
        hi = min(lo + block, n)
        tile = a[lo:hi, lo:hi]
        a[lo:hi, lo:hi] = np.triu(tile) + np.triu(tile, 1).T
    a /= -np.diag(a)
    b = a.astype(np.float32)
    del a
    b[np.diag_indices(n)] = 0.0
    return b


class EaseEngine(Engine):
    name = "ease"
    config_class = EaseConfig

    def fit(self, train: Interactions, val: Interactions | None = None) -> "EaseEngine":
        if train.n_items > self.config.max_items:
            raise ValueError(f"ease: {train.n_items} items > max_items={self.config.max_items}; its item x item "
                             f"matrix would need {train.n_items ** 2 * 4 / 2 ** 30:.1f} GB as float32. Serve "
                             "discovery with the VAE on this catalog, or raise ease.max_items if memory allows")
        X = interaction_matrix(train, self.config.weights)
        self.history, best = [], None
        started, budget_s, fit_seconds = time.monotonic(), 60 * self.config.max_train_minutes, 0.0
        X64 = X.astype(np.float64)
        gram = (X64.T @ X64).toarray()                                       # [n_items, n_items], every lambda's
        del X64
        # One fit is a single matrix inversion (tens of seconds at 10^4 items): the bar's heartbeat keeps
        # a line coming every 30 s while it runs, with the ETA from the fits done so far.
        with Progress(len(self.config.lambdas), desc="ease lambda grid", unit="fit", heartbeat=True) as bar:
            for lamb in self.config.lambdas:
                if self.history and budget_s and time.monotonic() - started + fit_seconds > budget_s:
                    print(f"[ease] lambda grid stopped on the {self.config.max_train_minutes:g}-minute budget after "
                          f"{len(self.history)} of {len(self.config.lambdas)} fits (one takes {fit_seconds:.1f} s)",
                          flush=True)
                    break
                fitting = time.monotonic()
                self.B = ease_weights(gram, lamb)                                    # [n_items, n_items]
                row = {"lambda": float(lamb), **(self._validate(X, val) if val is not None else {})}
                fit_seconds = time.monotonic() - fitting
                self.history.append(row)
                shown = {"val ndcg@10": row["val_ndcg@10"]} if val is not None else {}
                bar.update(**{"lambda": float(lamb), **shown})
                if val is None:
                    break
                if best is None or row["val_ndcg@10"] > best[0]:
                    best = (row["val_ndcg@10"], lamb, self.B)
        if best is not None:
            _, lamb, self.B = best
        self.lamb = float(lamb if best is None else best[1])
        return self

    def history_matrix(self, batch: HistoryBatch) -> sp.csr_matrix:
        """[B, n_items] event weights of each history, the strongest event per item."""
        w = self.config.weights.as_array()
        rows = np.repeat(np.arange(len(batch)), [len(i) for i in batch.items])
        cols = np.concatenate(batch.items).astype(np.int64) if len(rows) else np.empty(0, np.int64)
        vals = w[np.concatenate(batch.events).astype(np.int64)] if len(rows) else np.empty(0, np.float32)
        order = np.lexsort((-vals, cols, rows))                       # strongest first within (row, item)
        rows, cols, vals = rows[order], cols[order], vals[order]
        first = np.ones(len(rows), bool)
        first[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
        return sp.csr_matrix((vals[first], (rows[first], cols[first])), shape=(len(batch), self.n_items))

    def score(self, batch: HistoryBatch) -> np.ndarray:
        return np.asarray(self.history_matrix(batch) @ self.B)        # sparse [B, n] x dense [n, n]

    def _validate(self, X: sp.csr_matrix, val: Interactions) -> dict[str, float]:
        """Validation NDCG/HR: a user's fold-in rows when `val` carries them (user-holdout), otherwise
        their training rows (leave-one-out), scored against their validation items."""
        f = val.frame
        split = f["split"].to_numpy() if "split" in f else np.full(len(f), VAL)
        tgt = f.loc[split != VAL_FOLD_IN]
        settings = evaluation.current()
        users = sample_users(np.unique(tgt["uidx"].to_numpy()), settings.max_users, settings.seed)
        tgt = tgt.loc[tgt["uidx"].isin(users)]
        targets = tgt.groupby("uidx")["iidx"].apply(np.asarray).reindex(users).tolist()
        if (split == VAL_FOLD_IN).any():
            X = interaction_matrix(Interactions(f.loc[split == VAL_FOLD_IN], val.n_users, val.n_items),
                                   self.config.weights)
        ev = RankingEvaluator(self.n_items, (10, 20))
        for lo in range(0, len(users), 1024):
            h = X[users[lo:lo + 1024]]
            scores = np.asarray(h @ self.B, np.float64)
            mask_seen(scores, np.split(h.indices, h.indptr[1:-1]))
            ev.add(scores, targets[lo:lo + 1024])
        return {f"val_{k}": v for k, v in ev.result().items() if k != "users"}

    def _save_weights(self, folder: Path) -> None:
        np.save(folder / "ease_B.npy", self.B)
        (folder / "ease_lambda.txt").write_text(f"{self.lamb:g}\n")

    def _load_weights(self, folder: Path) -> None:
        self.B = np.load(folder / "ease_B.npy", mmap_mode="r")        # shared page cache across replicas
        if self.B.shape != (self.n_items, self.n_items):
            raise ValueError(f"{folder}: B is {self.B.shape}, the catalog has {self.n_items} items")
        self.lamb = float((folder / "ease_lambda.txt").read_text())
        self.history = []
