"""Top-k metrics over a full ranking of the catalog.

Conventions (the honesty rules of README.md's "Evaluation protocol"):
- Scores cover *all* items; items the user already saw are set to -inf by the caller (`mask_seen`).
- Ranks are pessimistic: the 0-based rank of a target is the number of *other* items scoring at least
  as high, so every tie counts against the target. A model that gives everything the same score ranks
  each target last among its equals -- never better than random. (Breaking ties by item index instead
  would flatter: indices follow first appearance, which tracks popularity.)
- Scores must be finite (masked -inf aside): NaN or +inf raise `NonFiniteScores`, never a rank.
- `top_k` lists break ties by item index, for a deterministic answer; a target tied at the cut-off may
  appear in a list and still not count as a hit.
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


class NonFiniteScores(ValueError):
    """A model returned NaN or +inf scores: such a score has no rank, so no metric may use it."""


def mask_seen(scores: np.ndarray, seen: list[np.ndarray]) -> np.ndarray:
    """Set each row's already-seen items to -inf, in place; returns scores."""
    rows = np.repeat(np.arange(len(seen)), [len(s) for s in seen])
    if len(rows):
        scores[rows, np.concatenate(seen).astype(np.int64)] = NEG_INF
    return scores


def nonfinite_rows(scores: np.ndarray, allow_neg_inf: bool = True) -> np.ndarray:
    """Boolean [B]: rows holding a NaN or +inf (or -inf, unless `allow_neg_inf`: the seen-item mask)."""
    # One pass: a row sum is NaN or +inf if the row holds NaN or +inf (or overflows: checked exactly
    # below), -inf if it holds -inf only. Only the suspect rows get the element-wise check.
    with np.errstate(invalid="ignore", over="ignore"):
        row_sum = scores.sum(axis=1)
    bad = ~np.isfinite(row_sum)
    if allow_neg_inf:
        bad &= row_sum != NEG_INF
    for b in np.flatnonzero(bad):
        row = scores[b]
        bad[b] = bool(np.isnan(row).any() or (row == np.inf).any() or (not allow_neg_inf and (row == NEG_INF).any()))
    return bad


def check_finite(scores: np.ndarray, who: str = "model", allow_neg_inf: bool = True) -> None:
    """Raise `NonFiniteScores` naming `who` and how many rows (users) are affected."""
    bad = nonfinite_rows(scores, allow_neg_inf)
    if bad.any():
        raise NonFiniteScores(
            f"{who} returned non-finite scores (NaN/inf) for {int(bad.sum())} of {len(bad)} users; "
            "fix the model (e.g. a diverged training run, log(0), or 0/0 in a normalisation) -- "
            "such scores have no rank and are never counted as hits")


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Pessimistic 0-based rank of targets[b] in row b (one target per row): the number of other items
    scoring >= the target. Ties count against the target."""
    scores = np.asarray(scores)
    check_finite(scores)
    return _ranks(scores, np.asarray(targets, dtype=np.int64))


def _ranks(scores: np.ndarray, t: np.ndarray) -> np.ndarray:
    ts = scores[np.arange(len(t)), t][:, None]
    return (scores >= ts).sum(axis=1) - 1


TOP_K_BLOCK = 32  # columns per group when bounding the k-th best score (top_k)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best items per row, best first, ties by item index. Items scored -inf
    (seen / filtered) are never returned: such slots are -1. No full sort, and no (arg)partition over
    the whole row, which degrades badly on the many ties of count-like scores: the k-th best of the
    maxima of disjoint column groups bounds the row's k-th best score from below (k groups hold a score at least that
    high), so only the few items at or above it are sorted, by (score, index)."""
    scores = np.asarray(scores)
    B, n = scores.shape
    k = min(k, n)
    if k == 0:
        return np.empty((B, 0), np.int64)
    full = n // TOP_K_BLOCK
    if full >= k:
        # Group j holds columns j, j + full, j + 2 full, ...: the max over the middle axis is an element-wise
        # maximum of contiguous slices (vectorised), where contiguous blocks would reduce 32 values at a time.
        block_max = scores[:, :full * TOP_K_BLOCK].reshape(B, TOP_K_BLOCK, full).max(axis=1)   # [B, full]
        if n > full * TOP_K_BLOCK:
            block_max = np.concatenate([block_max, scores[:, full * TOP_K_BLOCK:].max(axis=1, keepdims=True)], 1)
        nb = block_max.shape[1]
        bound = np.partition(block_max, nb - k, axis=1)[:, nb - k:nb - k + 1]   # [B, 1] <= the k-th best
        rows, cols = np.divmod(np.flatnonzero(np.ascontiguousarray(scores >= bound)), n)  # >= k per row
    else:  # a catalog of few blocks: every item is a candidate
        rows, cols = np.divmod(np.arange(B * n), n)
    order = np.lexsort((cols, -scores[rows, cols], rows))                        # row, best score, index
    rows, cols = rows[order], cols[order]
    pos = np.arange(len(rows)) - np.searchsorted(rows, rows, "left")             # place within its row
    keep = pos < k
    out = np.full((B, k), -1, np.int64)
    out[rows[keep], pos[keep]] = cols[keep]
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

    def add(self, scores: np.ndarray, targets, checked: bool = False) -> None:
        """Scores [B, n_items] with seen items at -inf; `checked`: the caller already refused NaN/+inf."""
        scores = np.asarray(scores)
        if not checked:
            check_finite(scores)
        lists = top_k(scores, max(self.ks))
        for k in self.ks:
            shown = lists[:, :k]
            self.recommended[k][shown[shown >= 0]] = True
        tgts = [np.atleast_1d(np.asarray(t, dtype=np.int64)) for t in targets]
        single = np.array([len(t) == 1 for t in tgts], bool)
        if single.any():  # leave-one-out: one vectorised pass over the batch
            rows = np.flatnonzero(single)
            sub = scores if len(rows) == len(scores) else scores[rows]
            ranks = _ranks(sub, np.array([tgts[r][0] for r in rows], np.int64))
            self._add_ranks(ranks, np.ones(len(rows), np.int64))
        for b in np.flatnonzero(~single):  # several targets (user-holdout)
            if len(tgts[b]) == 0:
                continue
            ranks = _ranks(np.broadcast_to(scores[b], (len(tgts[b]), scores.shape[1])), tgts[b])
            self._add_ranks(ranks[None, :], np.array([len(tgts[b])]))

    def _add_ranks(self, ranks: np.ndarray, n_targets: np.ndarray) -> None:
        """ranks [U, T] (one row per user; T targets, or [U] for one each); n_targets [U]."""
        ranks = ranks.reshape(len(n_targets), -1)
        self.n += len(n_targets)
        self._acc("mrr", (1.0 / (ranks.min(axis=1) + 1)).sum())
        for k in self.ks:
            hit = ranks < k
            denom = np.minimum(k, n_targets)
            ideal = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(k) + 2))])[denom]
            self._acc(f"hr@{k}", hit.any(axis=1).sum())
            self._acc(f"recall@{k}", (hit.sum(axis=1) / denom).sum())
            self._acc(f"ndcg@{k}", (np.where(hit, 1.0 / np.log2(ranks + 2), 0.0).sum(axis=1) / ideal).sum())

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
    check_finite(scores)
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
