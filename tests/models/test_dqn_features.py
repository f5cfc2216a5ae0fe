"""The candidate-feature contract of the DQN, shared by the simulator and serving."""
import numpy as np
import pytest

from models.dqn.features import CANDIDATE_FEATURES, build_candidate_features, rank_normalize, rank_normalize_rows


def test_feature_names_begin_with_the_contract():
    assert CANDIDATE_FEATURES[:6] == ("score_sequence", "score_discovery", "score_similarity",
                                      "score_popularity", "log_price", "same_category_as_last")


def test_rank_normalization_nan_and_ties():
    f = build_candidate_features(
        {"sequence": np.array([0.1, np.nan, 3.0, -2.0]), "popularity": np.array([5.0, 5.0, 1.0, 7.0])},
        prices=np.array([10.0, np.nan, 0.0, 99.0]), categories=np.array(["a", "b", None, "a"], dtype=object),
        last_category="a")
    assert f.shape == (4, len(CANDIDATE_FEATURES)) and f.dtype == np.float32
    # sequence: 3 scored (best = 3.0 -> 1); NaN -> 0; worst scored stays above 0
    np.testing.assert_allclose(f[:, 0], [2 / 3, 0.0, 1.0, 1 / 3], rtol=1e-6)
    # popularity: ties share the mean rank
    np.testing.assert_allclose(f[:, 3], [0.625, 0.625, 0.25, 1.0], rtol=1e-6)
    assert (f[:, 1] == 0).all() and (f[:, 2] == 0).all()            # engines absent -> 0
    np.testing.assert_allclose(f[:, 4], [np.log1p(10.0), 0.0, 0.0, np.log1p(99.0)], rtol=1e-6)
    np.testing.assert_array_equal(f[:, 5], [1, 0, 0, 1])
    np.testing.assert_allclose(f[:, 6], [0.5, 0.25, 0.5, 0.5])
    np.testing.assert_array_equal(f[:, 7], [1, 0, 1, 1])


def test_unknown_last_category_and_bad_inputs():
    f = build_candidate_features({}, np.array([1.0, 2.0]), np.array([1, 2]), None)
    assert (f[:, 5] == 0).all()
    with pytest.raises(ValueError, match="use keys from"):
        build_candidate_features({"vae": np.ones(2)}, np.ones(2), np.ones(2), 1)
    with pytest.raises(ValueError, match="scores for 2 candidates"):
        build_candidate_features({"sequence": np.ones(3)}, np.ones(2), np.ones(2), 1)


def test_row_wise_rank_normalization_matches_the_contract_function():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 4, (50, 10)).astype(float)  # many ties
    expect = np.stack([rank_normalize(r) for r in s])
    np.testing.assert_array_equal(rank_normalize_rows(s), expect)
