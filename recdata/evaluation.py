"""The evaluation protocol: histories in, full-ranking metrics out, any engine.

Leave-one-out (`split="loo"`): to score the test item the model sees train + validation events (and
any funnel steps between the two held-out items); for the validation item, train events only --
never anything after the held-out item's own time. User-holdout (`split="users"`): held-out users' fold-in
events are the history and their remaining events the targets (the Mult-VAE protocol).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Literal, Protocol

import numpy as np

from reccore.progress import Progress
from recdata.dataset import TEST, TEST_CONTEXT, TEST_FOLD_IN, TRAIN, VAL, VAL_FOLD_IN, PreparedDataset
from recdata.metrics import NonFiniteScores, RankingEvaluator, mask_seen, nonfinite_rows, sampled_metrics
from recdata.schema import HistoryBatch


@dataclass
class EvaluationConfig:
    max_users: int | None = 50_000
    """Users evaluated per split. A split with more is evaluated on a fixed, seeded uniform sample of
    this many (the same users for every engine, so figures stay comparable and the promotion gate
    fair); null: every user. Why a cap: full ranking costs users x items, so a 10^5-item store with
    3.6*10^5 test users would spend most of a pipeline's budget on evaluation, while the standard
    error of NDCG@10 at 50,000 users (at most 0.5 / sqrt(50,000) = 0.0022) is below any difference worth acting on.
    The shared datasets (<= 35,598 users) are evaluated in full. The result says `users_total` when sampled."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_users is not None and (not isinstance(self.max_users, int) or self.max_users < 1):
            raise ValueError(f"evaluation max_users={self.max_users!r}: give a positive integer, or null for all users")


_config = EvaluationConfig()


def use(config: EvaluationConfig) -> None:
    """Set the evaluation settings of this process (a pipeline stage sets the pipeline's)."""
    global _config
    _config = config


def current() -> EvaluationConfig:
    """This process's evaluation settings."""
    return _config


def target_users(ds: PreparedDataset, split: str = "test", max_users: int | None = None, seed: int = 0) -> np.ndarray:
    """The users with a `split` target, sorted; a seeded uniform sample of `max_users` when there are more."""
    f = ds.interactions.frame
    users = np.unique(f["uidx"].to_numpy()[f["split"].to_numpy() == {"test": TEST, "val": VAL}[split]])
    return sample_users(users, max_users, seed)


def sample_users(users: np.ndarray, max_users: int | None, seed: int = 0) -> np.ndarray:
    """`users` (sorted) when there are at most `max_users`, else a seeded uniform sample of them, sorted."""
    if max_users is None or len(users) <= max_users:
        return users
    return np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))


class Scorer(Protocol):
    def score(self, batch: HistoryBatch) -> np.ndarray: ...


def evaluation_batches(
    ds: PreparedDataset, split: str = "test", batch_size: int = 1024, users: np.ndarray | None = None,
) -> Iterator[tuple[HistoryBatch, list[np.ndarray]]]:
    """(histories, targets) for the users that have a `split` target (or these sorted `users` of them)."""
    f = ds.interactions.frame
    codes = f["split"].to_numpy()
    target_code = {"test": TEST, "val": VAL}[split]
    if ds.meta.get("split", "loo") == "users":
        history_codes = [{TEST: TEST_FOLD_IN, VAL: VAL_FOLD_IN}[target_code]]
    else:
        history_codes = [TRAIN] if split == "val" else [TRAIN, VAL, TEST_CONTEXT]
    uidx, iidx, ev = f["uidx"].to_numpy(), f["iidx"].to_numpy(), f["event"].to_numpy()
    users = np.unique(uidx[codes == target_code]) if users is None else users
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
    sampled_negatives: int = 0, seed: int = 0, max_users: int | None | Literal["config"] = "config",
) -> dict[str, float]:
    """Full-ranking metrics of `engine` on `split`, seen items filtered. With `sampled_negatives`,
    adds `sampled_hr@10` / `sampled_ndcg@10` (labelled; leave-one-out only). `max_users`: evaluate a
    fixed seeded sample of that many users when the split has more (default: EvaluationConfig's,
    set by `use`; None: all users); the result then carries `users_total`."""
    who = getattr(engine, "name", None) or type(engine).__name__
    ev = RankingEvaluator(ds.catalog.n_items, ks)
    rng = np.random.default_rng(seed)
    sampled: dict[str, float] = {}
    done = bad_users = 0
    if max_users == "config":
        max_users = _config.max_users
    every = target_users(ds, split)
    users = sample_users(every, max_users, _config.seed)
    with Progress(len(users), desc=f"evaluate {who} ({split})", unit="user") as bar:
        for batch, targets in evaluation_batches(ds, split, batch_size, users):
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
    if len(users) < len(every):
        out["users_total"] = len(every)
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
