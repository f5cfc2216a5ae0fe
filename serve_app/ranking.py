"""The ranking logic of /recommend as pure functions (no Ray, no I/O): the ingress calls them between
its engine calls, and tests/serve_app/test_ranking.py checks them without a cluster.

    merge_session      the request's own history + the live session's events, newest `window` kept
    candidate_union    per candidate item, each engine's (rank, score)
    unknown_history    history items that no answering engine knows
    rrf_blend          reciprocal-rank fusion of the engines' ranks (the ranking without a decision engine)
    decision_body      what the decision engine scores: the union with each engine's score (None = not proposed)
    decision_merge     the decision engine's Q-values, candidates it cannot score after, in blend order
    top_items          the final order: best first, ties in union order
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from reccore.constants import ENGINE_ROLES

RRF_K = 60  # reciprocal-rank fusion constant (Cormack et al. 2009)

Candidates = dict[Any, dict[str, tuple[int, float]]]  # item -> {role: (rank, score)}


def merge_session(items: list, events: list[int], live_items: Iterable, live_events: Iterable[int],
                  window: int) -> tuple[list, list[int]]:
    """History then live session events (both oldest first); the newest `window` of them."""
    items, events = list(items) + list(live_items), list(events) + list(live_events)
    return items[-window:], events[-window:]


def candidate_union(answers: Mapping[str, dict]) -> Candidates:
    """{role: {"items": [...], "scores": [...]}} (best first) -> {item: {role: (rank, score)}}, items in
    order of first appearance over the roles as given."""
    cands: Candidates = {}
    for role, out in answers.items():
        for rank, (item, score) in enumerate(zip(out["items"], out["scores"])):
            cands.setdefault(item, {})[role] = (rank, score)
    return cands


def unknown_history(history: list, answers: Mapping[str, dict]) -> list:
    """History items (once each, in order) that every answering engine reported as unknown."""
    if not answers:
        return []
    unknown = set.intersection(*(set(map(str, out["unknown"])) for out in answers.values()))
    return list(dict.fromkeys(x for x in history if str(x) in unknown))


def rrf_blend(cands: Candidates) -> np.ndarray:
    """[len(cands)] reciprocal-rank fusion score of each candidate: sum over engines of 1/(RRF_K + rank)."""
    return np.array([sum(1.0 / (RRF_K + rank + 1) for rank, _ in c.values()) for c in cands.values()])


def decision_body(history: list, events: list[int], cands: Candidates) -> dict:
    """The decision engine's request for one /recommend: candidates and each role's raw score."""
    ids = list(cands)
    return {"history": history, "events": events, "candidates": ids,
            "engine_scores": {r: [cands[c][r][1] if r in cands[c] else None for c in ids] for r in ENGINE_ROLES}}


def decision_merge(q: list[float | None], blend: np.ndarray) -> np.ndarray | None:
    """Final scores from the Q-values (None where the policy could not score a candidate): scored
    candidates by Q, the others after all of them in blend order. None when no candidate was scored."""
    qv = np.array([np.nan if v is None else v for v in q], np.float64)
    known = np.isfinite(qv)
    if not known.any():
        return None
    # Below every scored one, best blend first (the ingress once subtracted the blend itself: reversed).
    return np.where(known, qv, qv[known].min() - 1.0 - (blend.max() - blend))


def top_items(cands: Candidates, final: np.ndarray, k: int) -> list[tuple[Any, float, list[str]]]:
    """(item, score, engines that proposed it) of the best k, best first; ties keep union order."""
    ids = list(cands)
    order = np.lexsort((np.arange(len(ids)), -final))[:k]
    return [(ids[o], float(final[o]), [r for r in ENGINE_ROLES if r in cands[ids[o]]]) for o in order]
