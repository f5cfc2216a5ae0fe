"""The ranking logic of /recommend (serve_app/ranking.py), without Ray."""
import numpy as np
import pytest

from serve_app.ranking import (RRF_K, candidate_union, decision_body, decision_merge, merge_session, rrf_blend,
                               top_items, unknown_history)

ANSWERS = {
    "sequence": {"items": [10, 11, 12], "scores": [3.0, 2.0, 1.0], "unknown": ["99", "7"]},
    "popularity": {"items": [12, 13], "scores": [50.0, 40.0], "unknown": [99]},
}


def test_merge_session_appends_live_events_and_keeps_the_newest():
    items, events = merge_session([1, 2, 3], [0, 0, 1], [4, 5], [2, 0], window=4)
    assert items == [2, 3, 4, 5] and events == [0, 1, 2, 0]


def test_union_keeps_each_engines_rank_and_score():
    cands = candidate_union(ANSWERS)
    assert list(cands) == [10, 11, 12, 13]
    assert cands[12] == {"sequence": (2, 1.0), "popularity": (0, 50.0)}


def test_unknown_history_is_what_every_answering_engine_lacks():
    assert unknown_history([7, 99, 5, 99], ANSWERS) == [99]   # 7 is known to popularity
    assert unknown_history([7], {}) == []


def test_blend_is_reciprocal_rank_fusion():
    blend = rrf_blend(candidate_union(ANSWERS))
    np.testing.assert_allclose(blend, [1 / (RRF_K + 1), 1 / (RRF_K + 2), 1 / (RRF_K + 3) + 1 / (RRF_K + 1),
                                       1 / (RRF_K + 2)])
    assert [item for item, _, _ in top_items(candidate_union(ANSWERS), blend, 2)] == [12, 10]


def test_decision_body_marks_engines_that_did_not_propose_a_candidate():
    body = decision_body([1], [0], candidate_union(ANSWERS))
    assert body["candidates"] == [10, 11, 12, 13]
    assert body["engine_scores"]["popularity"] == [None, None, 50.0, 40.0]
    assert body["engine_scores"]["discovery"] == [None] * 4


def test_decision_merge_puts_unscored_candidates_after_in_blend_order():
    blend = np.array([0.1, 0.3, 0.2, 0.05])
    final = decision_merge([2.0, None, 5.0, float("nan")], blend)
    cands = {i: {"sequence": (0, 0.0)} for i in "abcd"}
    assert [item for item, _, _ in top_items(cands, final, 4)] == ["c", "a", "b", "d"]
    assert decision_merge([None, None], np.zeros(2)) is None


def test_top_items_breaks_ties_by_union_order_and_names_engines():
    cands = candidate_union(ANSWERS)
    top = top_items(cands, np.array([1.0, 2.0, 2.0, 0.0]), 3)
    assert [(i, s) for i, s, _ in top] == [(11, 2.0), (12, 2.0), (10, 1.0)]
    assert top[1][2] == ["sequence", "popularity"]


@pytest.mark.parametrize("k", [0, 1, 10])
def test_top_items_returns_at_most_k(k):
    cands = candidate_union(ANSWERS)
    assert len(top_items(cands, rrf_blend(cands), k)) == min(k, 4)
