import math

import numpy as np
import pytest

from recdata.metrics import RankingEvaluator, mask_seen, sampled_metrics, target_ranks, top_k


def test_ranks_and_ties_follow_index_order():
    s = np.array([[0.1, 0.9, 0.5, 0.5]])
    assert target_ranks(s, [2]).tolist() == [1]
    assert target_ranks(s, [3]).tolist() == [2]  # tie with item 2 breaks by index
    assert top_k(s, 3).tolist() == [[1, 2, 3]]


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
