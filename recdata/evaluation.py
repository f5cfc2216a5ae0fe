"""The evaluation protocol: histories in, full-ranking metrics out, any engine.

Leave-one-out (`split="loo"`): to score the test item the model sees train + validation events (and
any funnel steps between the two held-out items); for the validation item, train events only --
never anything after the held-out item's own time. User-holdout (`split="users"`): held-out users' fold-in
events are the history and their remaining events the targets (the Mult-VAE protocol).
"""
from __future__ import annotations

from typing import Iterator, Protocol

import numpy as np

from reccore.progress import Progress
from recdata.dataset import TEST, TEST_CONTEXT, TEST_FOLD_IN, TRAIN, VAL, VAL_FOLD_IN, PreparedDataset
from recdata.metrics import NonFiniteScores, RankingEvaluator, mask_seen, nonfinite_rows, sampled_metrics
from recdata.schema import HistoryBatch


class Scorer(Protocol):
    def score(self, batch: HistoryBatch) -> np.ndarray: ...


def evaluation_batches(
    ds: PreparedDataset, split: str = "test", batch_size: int = 1024
) -> Iterator[tuple[HistoryBatch, list[np.ndarray]]]:
    """(histories, targets) for the users that have a `split` target."""
    f = ds.interactions.frame
    codes = f["split"].to_numpy()
    target_code = {"test": TEST, "val": VAL}[split]
    if ds.meta.get("split", "loo") == "users":
        history_codes = [{TEST: TEST_FOLD_IN, VAL: VAL_FOLD_IN}[target_code]]
    else:
        history_codes = [TRAIN] if split == "val" else [TRAIN, VAL, TEST_CONTEXT]
    uidx, iidx, ev = f["uidx"].to_numpy(), f["iidx"].to_numpy(), f["event"].to_numpy()
    users = np.unique(uidx[codes == target_code])
    hist_mask = np.isin(codes, history_codes)
    # Rows are sorted by user, so each user's rows are a contiguous block: slice by boundaries.
    h_u, h_i, h_e = uidx[hist_mask], iidx[hist_mask], ev[hist_mask]
    h_start = np.searchsorted(h_u, users, "left")
    h_end = np.searchsorted(h_u, users, "right")
    t_mask = codes == target_code
    t_u, t_i = uidx[t_mask], iidx[t_mask]
    t_start, t_end = np.searchsorted(t_u, users, "left"), np.searchsorted(t_u, users, "right")
    for lo in range(0, len(users), batch_size):
        sl = slice(lo, lo + batch_size)
        batch = HistoryBatch(
            [h_i[a:b] for a, b in zip(h_start[sl], h_end[sl])],
            [h_e[a:b] for a, b in zip(h_start[sl], h_end[sl])],
            users[sl],
        )
        yield batch, [t_i[a:b] for a, b in zip(t_start[sl], t_end[sl])]


def evaluate(
    engine: Scorer, ds: PreparedDataset, split: str = "test", ks=(10, 20), batch_size: int = 1024,
    sampled_negatives: int = 0, seed: int = 0, max_users: int | None = None,
) -> dict[str, float]:
    """Full-ranking metrics of `engine` on `split`, seen items filtered. With `sampled_negatives`,
    adds `sampled_hr@10` / `sampled_ndcg@10` (labelled; leave-one-out only)."""
    who = getattr(engine, "name", None) or type(engine).__name__
    ev = RankingEvaluator(ds.catalog.n_items, ks)
    rng = np.random.default_rng(seed)
    sampled: dict[str, float] = {}
    done = bad_users = 0
    f = ds.interactions.frame
    n_users = len(np.unique(f["uidx"].to_numpy()[f["split"].to_numpy() == {"test": TEST, "val": VAL}[split]]))
    n_users = min(n_users, max_users) if max_users is not None else n_users
    with Progress(n_users, desc=f"evaluate {who} ({split})", unit="user") as bar:
        for batch, targets in evaluation_batches(ds, split, batch_size):
            if max_users is not None and done >= max_users:
                break
            if max_users is not None and done + len(batch) > max_users:
                keep = max_users - done
                batch = HistoryBatch(batch.items[:keep], batch.events[:keep], batch.users[:keep])
                targets = targets[:keep]
            # order="C": a broadcast score (popularity) would otherwise copy column-major, and every row-wise
            # pass below (partition, nonzero, the rank counts) would stride across memory.
            scores = np.array(engine.score(batch), dtype=np.float64, order="C")
            done += len(batch)
            bar.update(len(batch))
            # An engine's own scores must all be finite (-inf too: only the seen-item mask may set it).
            bad = nonfinite_rows(scores, allow_neg_inf=False)
            if bad.any() or bad_users:
                bad_users += int(bad.sum())
                continue  # keep scoring only to count every affected user; no metric from here on
            mask_seen(scores, batch.items)
            ev.add(scores, targets, checked=True)
            if sampled_negatives:
                single = np.array([t[0] for t in targets])
                for key, vals in sampled_metrics(scores, single, batch.items, rng, sampled_negatives).items():
                    sampled[key] = sampled.get(key, 0.0) + float(vals.sum())
    if bad_users:
        raise NonFiniteScores(
            f"engine {who!r} returned non-finite scores (NaN/inf) for {bad_users} of {done} users on the "
            f"{split} split; no metric is reported. Fix the model (a diverged run, log(0), 0/0) and evaluate again")
    out = ev.result()
    out.update({k: v / max(out["users"], 1) for k, v in sampled.items()})
    return out


def format_table(rows: dict[str, dict[str, float]], keys=None, title: str = "") -> str:
    """Plain-text table: one row per model, one column per metric."""
    keys = keys or ["hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr", "coverage@10"]
    keys = [k for k in keys if any(k in r for r in rows.values())]
    w = max([len(n) for n in rows] + [5])
    lines = [title] if title else []
    lines.append(f"{'model':<{w}}  " + "  ".join(f"{k:>12}" for k in keys))
    for name, r in rows.items():
        lines.append(f"{name:<{w}}  " + "  ".join(
            f"{r[k]:>12.4f}" if k in r and isinstance(r[k], float) else f"{r.get(k, ''):>12}" for k in keys))
    return "\n".join(lines)
