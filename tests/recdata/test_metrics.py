import math

import numpy as np
import pytest

from recdata.metrics import NonFiniteScores, RankingEvaluator, mask_seen, sampled_metrics, target_ranks, top_k


def test_ties_count_against_the_target():
    s = np.array([[0.1, 0.9, 0.5, 0.5]])
    assert target_ranks(s, [1]).tolist() == [0]
    assert target_ranks(s, [2]).tolist() == [2]  # tied with item 3: both count as ahead of each other
    assert target_ranks(s, [3]).tolist() == [2]
    assert target_ranks(np.zeros((1, 50)), [0]).tolist() == [49]  # a constant scorer ranks last
    assert top_k(s, 3).tolist() == [[1, 2, 3]]  # lists still break ties by index, deterministically


def test_a_tie_at_the_cut_off_is_no_hit():
    ev = RankingEvaluator(20, ks=(10,))
    ev.add(np.ones((1, 20)), [0])  # item 0 would be first by index, but 19 items tie with it
    assert ev.result()["hr@10"] == 0.0 and ev.result()["mrr"] == pytest.approx(1 / 20)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_scores_raise(bad):
    s = np.array([[0.1, bad, 0.5], [0.3, 0.2, 0.1]])
    with pytest.raises(NonFiniteScores, match="1 of 2 users"):
        target_ranks(s, [0, 0])
    with pytest.raises(NonFiniteScores):
        RankingEvaluator(3, ks=(1,)).add(s, [1, 0])
    with pytest.raises(NonFiniteScores):
        sampled_metrics(s, np.array([0, 0]), [np.array([], np.int64)] * 2, np.random.default_rng(0), n_neg=1, k=1)


@pytest.mark.parametrize("n_items,levels,masked,order", [
    (40, 6, 0.3, "C"),       # fewer column groups than k: every item a candidate
    (1007, 6, 0.3, "C"),     # grouped bound; a ragged last group; heavy ties straddling the cut
    (1007, 400, 0.99, "C"),  # rows with fewer than k unmasked items
    (2048, 10**6, 0.0, "F"), # nearly distinct scores, column-major input (a copied broadcast)
])
def test_top_k_matches_a_full_sort_with_ties_and_masks(n_items, levels, masked, order):
    rng = np.random.default_rng(3)
    scores = rng.integers(0, levels, size=(200, n_items)).astype(float)
    scores[rng.random(scores.shape) < masked] = -np.inf
    scores[0] = -np.inf  # a user who has seen everything
    scores = np.asarray(scores, order=order)
    full = np.lexsort((np.broadcast_to(np.arange(n_items), scores.shape), -scores), axis=1)[:, :10]
    full = np.where(np.take_along_axis(scores, full, axis=1) > -np.inf, full, -1)
    assert top_k(scores, 10).tolist() == full.tolist()


def test_top_k_never_returns_filtered_items():
    s = mask_seen(np.array([[3.0, 2.0, 1.0]]), [np.array([0, 2])])
    assert top_k(s, 3).tolist() == [[1, -1, -1]]


def test_single_target_metrics_by_hand():
    # user 0: target ranked 0th; user 1: ranked 2nd (0-based); user 2: ranked 11th (outside top-10)
    n = 15
    scores = np.tile(np.arange(n, 0, -1, dtype=float), (3, 1))  # item i has rank i
    ev = RankingEvaluator(n, ks=(10,))
    ev.add(scores, [0, 2, 11])
    r = ev.result()
    assert r["hr@10"] == pytest.approx(2 / 3)
    assert r["recall@10"] == pytest.approx(2 / 3)
    assert r["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / 3)
    assert r["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 12) / 3)
    assert r["coverage@10"] == pytest.approx(10 / 15)  # every list is items 0..9


def test_multi_target_recall_and_ndcg_by_hand():
    scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0]])
    ev = RankingEvaluator(5, ks=(2,))
    ev.add(scores, [np.array([1, 3, 4])])
    r = ev.result()
    assert r["recall@2"] == pytest.approx(1 / 2)  # one hit of min(k=2, 3 targets)
    idcg = 1 + 1 / math.log2(3)
    assert r["ndcg@2"] == pytest.approx((1 / math.log2(3)) / idcg)
    assert r["hr@2"] == 1.0
    assert r["mrr"] == pytest.approx(1 / 2)


def test_coverage_counts_distinct_items_across_users():
    scores = np.array([[3.0, 2, 1, 0], [0, 1, 2, 3]])
    ev = RankingEvaluator(4, ks=(1,))
    ev.add(scores, [0, 3])
    assert ev.result()["coverage@1"] == pytest.approx(2 / 4)


def test_sampled_metrics_rank_against_negatives_only():
    rng = np.random.default_rng(0)
    scores = np.arange(200, dtype=float)[None, :]  # higher index, higher score
    out = sampled_metrics(scores, np.array([199]), [np.array([0])], rng, n_neg=100)
    assert out["sampled_hr@10"][0] == 1 and out["sampled_ndcg@10"][0] == 1.0
    out = sampled_metrics(scores, np.array([1]), [np.array([0])], rng, n_neg=100)
    assert out["sampled_hr@10"][0] == 0  # only item 0 scores lower, and it is seen (never sampled)
