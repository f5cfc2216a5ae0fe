"""Top-k metrics over a full ranking of the catalog.

Conventions (the honesty rules of DESIGN.md):
- Scores cover *all* items; items the user already saw are set to -inf by the caller (`mask_seen`).
- Ranks are 0-based positions in the order (score descending, item index ascending). The index
  tie-break is deterministic and the same one `top_k` uses, so a list and its metrics agree; a model
  that gives everything the same score gets no credit from ties beyond what that order gives.
- Recall@k = hits / min(k, |targets|) (Liang et al. 2018); with one target it equals HR@k.
  NDCG@k: binary gains, ideal DCG over min(k, |targets|) targets. MRR: 1 / (rank of first hit + 1)
  over the full ranking (no cut-off).
- Coverage@k: distinct items in the model's own top-k lists / catalog size. Never padded.
- Sampled metrics (target among `n_neg` random unseen items) exist only as a labelled extra, to
  compare with papers that report them (SASRec's 100 negatives); they are always prefixed `sampled_`.
"""
from __future__ import annotations

import numpy as np

NEG_INF = -np.inf


def mask_seen(scores: np.ndarray, seen: list[np.ndarray]) -> np.ndarray:
    """Set each row's already-seen items to -inf, in place; returns scores."""
    rows = np.repeat(np.arange(len(seen)), [len(s) for s in seen])
    if len(rows):
        scores[rows, np.concatenate(seen).astype(np.int64)] = NEG_INF
    return scores


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of targets[b] in row b (one target per row), ties broken by item index."""
    scores = np.asarray(scores)
    t = np.asarray(targets, dtype=np.int64)
    ts = scores[np.arange(len(t)), t][:, None]
    idx = np.arange(scores.shape[1])[None, :]
    return ((scores > ts) | ((scores == ts) & (idx < t[:, None]))).sum(axis=1)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best items per row, best first, ties by item index (matches target_ranks).
    Items scored -inf (seen / filtered) are never returned: such slots are -1."""
    scores = np.asarray(scores)
    k = min(k, scores.shape[1])
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        # Ties at the cut-off: argpartition may pick any of them; re-select by (score, index).
        kth = np.take_along_axis(scores, part, axis=1).min(axis=1, keepdims=True)
        cand_mask = scores >= kth
        out = np.empty((scores.shape[0], k), np.int64)
        for b in range(scores.shape[0]):
            cand = np.flatnonzero(cand_mask[b])
            order = np.lexsort((cand, -scores[b, cand]))[:k]
            out[b] = cand[order]
    else:
        out = np.lexsort((np.broadcast_to(np.arange(scores.shape[1]), scores.shape), -scores), axis=1)
    valid = np.take_along_axis(scores, out, axis=1) > NEG_INF
    return np.where(valid, out, -1)


class RankingEvaluator:
    """Accumulates metrics over batches of users. `targets` per row: an int (leave-one-out) or an
    array of item indices (user-holdout)."""

    def __init__(self, n_items: int, ks: tuple[int, ...] = (10, 20)):
        self.n_items, self.ks = n_items, tuple(sorted(ks))
        self.sums: dict[str, float] = {}
        self.n = 0
        self.recommended = {k: np.zeros(n_items, bool) for k in self.ks}

    def add(self, scores: np.ndarray, targets) -> None:
        lists = top_k(scores, max(self.ks))
        for k in self.ks:
            shown = lists[:, :k]
            self.recommended[k][shown[shown >= 0]] = True
        for b, tgt in enumerate(targets):
            tgt = np.atleast_1d(np.asarray(tgt, dtype=np.int64))
            if len(tgt) == 0:
                continue
            ranks = target_ranks(np.broadcast_to(scores[b], (len(tgt), scores.shape[1])), tgt)
            self.n += 1
            self._acc("mrr", 1.0 / (ranks.min() + 1))
            for k in self.ks:
                hit = ranks < k
                ideal = (1.0 / np.log2(np.arange(min(k, len(tgt))) + 2)).sum()
                self._acc(f"hr@{k}", float(hit.any()))
                self._acc(f"recall@{k}", hit.sum() / min(k, len(tgt)))
                self._acc(f"ndcg@{k}", (1.0 / np.log2(ranks[hit] + 2)).sum() / ideal)

    def _acc(self, key: str, value: float) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + float(value)

    def result(self) -> dict[str, float]:
        out = {key: v / max(self.n, 1) for key, v in sorted(self.sums.items())}
        for k in self.ks:
            out[f"coverage@{k}"] = float(self.recommended[k].mean())
        out["users"] = self.n
        return out


def sampled_metrics(
    scores: np.ndarray, targets: np.ndarray, seen: list[np.ndarray], rng: np.random.Generator,
    n_neg: int = 100, k: int = 10,
) -> dict[str, np.ndarray]:
    """The SASRec paper's protocol: rank the target among `n_neg` uniformly drawn items the user has
    not interacted with. Per-row hits/NDCG (sum them); labelled `sampled_` by the caller."""
    B, n_items = scores.shape
    hits, ndcg = np.zeros(B), np.zeros(B)
    for b in range(B):
        banned = np.zeros(n_items, bool)
        banned[seen[b]] = True
        banned[targets[b]] = True
        pool = np.flatnonzero(~banned)
        negs = rng.choice(pool, size=min(n_neg, len(pool)), replace=False)
        s_t = scores[b, targets[b]]
        rank = (scores[b, negs] >= s_t).sum()  # ties count against the target
        hits[b] = rank < k
        ndcg[b] = 1.0 / np.log2(rank + 2) if rank < k else 0.0
    return {f"sampled_hr@{k}": hits, f"sampled_ndcg@{k}": ndcg}
