"""Candidate features of the decision engine: the one function that both the simulator (envs/) and the
serving graph (serve_app/) call -- the DQN's input contract, so it lives with the DQN.

The decision engine (DQN) re-ranks a request's candidate union. Whatever produced the candidates --
the shopping simulator's retrieval sources during training, the four real engines in serving -- their
raw scores live on different scales (log-probabilities, cosine similarities, counts...), so each
engine's scores are normalized *per request by rank*: the policy learns "this candidate is the
sequence engine's best of this request", which transfers between the simulator and serving even
when the raw scales differ.

Contract (shared with serving; append new names at the end, never reorder):
    CANDIDATE_FEATURES[:6] == ("score_sequence", "score_discovery", "score_similarity",
                               "score_popularity", "log_price", "same_category_as_last")
    build_candidate_features(engine_scores, prices, categories, last_category) -> float32 [K, F]
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
from scipy.stats import rankdata

from reccore.constants import ENGINE_ROLES

ENGINES = ENGINE_ROLES  # the order of the score_* features below

CANDIDATE_FEATURES: tuple[str, ...] = (
    "score_sequence",        # rank-normalized sequence-engine score in (0, 1]; 1 = best, 0 = not scored
    "score_discovery",       # same for the discovery engine (VAE-CF / co-occurrence)
    "score_similarity",      # same for the similarity engine (content)
    "score_popularity",      # same for popularity
    "log_price",             # log1p(price); 0 when the price is unknown
    "same_category_as_last",  # 1.0 when the candidate's category equals the last history item's
    "engines_scored",        # share of the four engines that scored this candidate
    "has_price",             # 1.0 when the price is known
)
N_FEATURES = len(CANDIDATE_FEATURES)


def rank_normalize(scores: np.ndarray) -> np.ndarray:
    """Raw scores [K] -> (rank + 1) / n_scored in (0, 1] (1 = best; ties share their mean rank);
    NaN (engine did not score the candidate) -> 0. The worst *scored* candidate stays above 0 so the
    policy can tell "scored last" from "not scored"."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    out = np.zeros(len(s), np.float32)
    ok = ~np.isnan(s)
    if ok.any():
        out[ok] = (rankdata(s[ok]) / ok.sum()).astype(np.float32)  # rankdata: 1-based, ties averaged
    return out


def rank_normalize_rows(scores: np.ndarray) -> np.ndarray:
    """`rank_normalize` of every row of a NaN-free [N, K] array (the simulator's hot path)."""
    s = np.asarray(scores)
    return (rankdata(s, axis=1) / s.shape[1]).astype(np.float32)


def _is_missing(x) -> bool:
    if x is None:
        return True
    try:
        return bool(np.isnan(x))
    except (TypeError, ValueError):
        return False


def build_candidate_features(
    engine_scores: Mapping[str, np.ndarray],
    prices: np.ndarray,
    categories: np.ndarray,
    last_category,
) -> np.ndarray:
    """Features of K candidates of one request -> float32 [K, len(CANDIDATE_FEATURES)].

    engine_scores: "sequence" / "discovery" / "similarity" / "popularity" -> raw scores [K] (higher is
        better; NaN = that engine did not score that candidate). A missing key means no engine scores.
    prices: [K] floats, NaN when unknown. categories: [K] (strings or ints; None/NaN = unknown).
    last_category: the category of the last item in the history (None/NaN when unknown or no history).
    """
    prices = np.asarray(prices, dtype=np.float64).reshape(-1)
    k = len(prices)
    categories = np.asarray(categories, dtype=object).reshape(-1)
    if len(categories) != k:
        raise ValueError(f"prices has {k} candidates but categories has {len(categories)}; pass one per candidate")
    unknown = sorted(set(engine_scores) - set(ENGINES))
    if unknown:
        raise ValueError(f"unknown engine(s) {unknown} in engine_scores; use keys from {ENGINES}")
    feats = np.zeros((k, N_FEATURES), np.float32)
    scored = np.zeros(k, np.float32)
    for j, name in enumerate(ENGINES):
        if name not in engine_scores or engine_scores[name] is None:
            continue
        s = np.asarray(engine_scores[name], dtype=np.float64).reshape(-1)
        if len(s) != k:
            raise ValueError(f"engine_scores[{name!r}] has {len(s)} scores for {k} candidates")
        feats[:, j] = rank_normalize(s)
        scored += ~np.isnan(s)
    has_price = ~np.isnan(prices)
    feats[:, 4] = np.where(has_price, np.log1p(np.maximum(np.nan_to_num(prices), 0.0)), 0.0)
    if not _is_missing(last_category):
        # Elementwise on the object array (no per-candidate Python): None / NaN never equal a category.
        feats[:, 5] = (categories == last_category).astype(np.float32)
    feats[:, 6] = scored / len(ENGINES)
    feats[:, 7] = has_price
    return feats

