"""The decision engine's myopic prior: response features from what serving knows, an artifact that loads
without pickle and gives the same values, and a residual Q-network that starts exactly at the prior."""
import numpy as np
import pytest
import torch
from sklearn.ensemble import HistGradientBoostingClassifier

from models.dqn.features import CANDIDATE_FEATURES, N_FEATURES
from models.dqn.network import QNetwork, QNetworkConfig
from models.dqn.policy import DecisionPolicy
from models.dqn.prior import ResponsePrior, RewardTerms, response_features
from recdata.dataset import Catalog

LOG_PRICE = np.log(np.array([10.0, 20.0, 40.0, 5.0, 80.0]))


def test_response_features_read_the_history_like_the_hand_computed_values():
    # history, most recent last: item 0 viewed, item 1 skipped, item 2 carted (-1 pads on the left)
    h = np.array([[-1, 0, 1, 2]])
    e = np.array([[0, 0, 3, 1]])
    cand = np.array([[1, 2, 4]])
    feats = np.zeros((1, 3, N_FEATURES), np.float32)
    x = response_features(h, e, feats, cand, LOG_PRICE[cand], LOG_PRICE)
    assert x.shape == (1, 3, N_FEATURES + 4)
    shown, skipped, rel_last, rel_mean = x[0, :, N_FEATURES:].T
    np.testing.assert_array_equal(shown, [1, 1, 0])
    np.testing.assert_array_equal(skipped, [1, 0, 0])
    # the last *engaged* item is 2 (40.0), not the skipped 1; the engaged mean is over items 0 and 2
    np.testing.assert_allclose(rel_last, LOG_PRICE[[1, 2, 4]] - LOG_PRICE[2], rtol=1e-6)
    np.testing.assert_allclose(rel_mean, LOG_PRICE[[1, 2, 4]] - (LOG_PRICE[0] + LOG_PRICE[2]) / 2, rtol=1e-6)
    # no engaged history: no relative price (0), nothing shown
    x0 = response_features(np.full((1, 4), -1), np.zeros((1, 4)), feats, cand, LOG_PRICE[cand], LOG_PRICE)
    assert not x0[0, :, N_FEATURES:].any()


def _fitted_prior(seed=0) -> ResponsePrior:
    rng = np.random.default_rng(seed)
    x = rng.random((3000, N_FEATURES + 4)).astype(np.float32)
    click = rng.random(3000) < 0.1 + 0.6 * x[:, 0]          # clicks follow the first engine's rank
    conv = rng.random(3000) < 0.05 + 0.3 * x[:, 1]
    kw = dict(max_iter=20, max_leaf_nodes=7, random_state=0)
    cm = HistGradientBoostingClassifier(**kw).fit(x, click)
    vm = HistGradientBoostingClassifier(**kw).fit(x[click], conv[click])
    terms = RewardTerms(skip=0.0, view=0.05, cart=0.3, purchase=1.0, price_weight=1.0, price_cap=10.0,
                        median_price=20.0, purchase_share=0.4)
    return ResponsePrior(cm, vm, terms, LOG_PRICE)


def _request(rng, b=3, k=4, L=6):
    h = rng.integers(-1, 5, (b, L))
    e = rng.integers(0, 4, (b, L))
    feats = rng.random((b, k, N_FEATURES)).astype(np.float32)
    cand = rng.integers(0, 5, (b, k))
    feats[..., 4] = np.log1p(np.exp(LOG_PRICE[cand]))       # log1p(price), as build_candidate_features
    feats[..., 7] = 1.0
    return h, e, feats, cand


def test_prior_is_the_expected_reward_and_round_trips_without_pickle(tmp_path):
    prior = _fitted_prior()
    h, e, feats, cand = _request(np.random.default_rng(1))
    r = prior.expected_reward(h, e, feats, cand)
    x = prior.features(h, e, feats, cand).reshape(-1, N_FEATURES + 4)
    pc = prior.click_model.predict_proba(x)[:, 1].reshape(r.shape)
    pq = prior.convert_model.predict_proba(x)[:, 1].reshape(r.shape)
    value = np.minimum(np.exp(LOG_PRICE[cand]) / 20.0, 10.0)
    np.testing.assert_allclose(r, pc * (0.05 + pq * (0.6 * 0.3 + 0.4 * value)), rtol=1e-5)
    back = ResponsePrior.load(prior.save(tmp_path / "prior"))
    np.testing.assert_array_equal(back.expected_reward(h, e, feats, cand), r)
    assert not list((tmp_path / "prior").glob("*.pkl"))
    # an item the artifact's catalog does not know (-1) is priced from its features, not dropped
    unknown = cand.copy()
    unknown[0, 0] = -1
    np.testing.assert_allclose(prior.candidate_log_price(unknown, feats)[0, 0], LOG_PRICE[cand[0, 0]], rtol=1e-5)


def test_a_missing_prior_folder_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_dqn"):
        ResponsePrior.load(tmp_path)


def test_residual_network_starts_at_the_prior_and_learns_away_from_it(tmp_path):
    torch.manual_seed(0)
    prior = _fitted_prior()
    net = QNetwork(QNetworkConfig(n_features=N_FEATURES, history_len=6, d_model=16, prior=True))
    policy = DecisionPolicy(net, Catalog(np.array(["u"]), np.arange(5) + 100), CANDIDATE_FEATURES, prior=prior)
    h, e, feats, cand = _request(np.random.default_rng(2))
    expected = prior.expected_reward(h, e, feats, cand)
    np.testing.assert_allclose(policy.q_values(h, e, feats, cand), expected, atol=1e-7)  # residual = 0
    with pytest.raises(ValueError, match="cand_prior"):
        net(torch.from_numpy(h), torch.from_numpy(e), torch.from_numpy(feats), torch.from_numpy(cand))
    # one gradient step toward a target 1 above the prior moves Q (the zero layer still passes gradients)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    args = [torch.from_numpy(a) for a in (h, e, feats, cand, expected)]
    for _ in range(3):
        opt.zero_grad()
        loss = ((net(*args) - (args[-1] + 1.0)) ** 2).mean()
        loss.backward()
        opt.step()
    net.eval()
    assert (policy.q_values(h, e, feats, cand) - expected).mean() > 0.05
    back = DecisionPolicy.load(policy.save(tmp_path / "dqn"))
    assert back.prior is not None
    np.testing.assert_allclose(back.q_values(h, e, feats, cand), policy.q_values(h, e, feats, cand), rtol=1e-5)


def test_without_candidate_ids_a_candidate_is_seen_through_its_features_and_history_only():
    """candidate_ids=False (train_dqn's default): relabelling candidates that are not in the history leaves
    Q unchanged; with ids on it does not (so the check can fail)."""
    rng = np.random.default_rng(3)
    h, e, feats, cand = _request(rng, b=2, k=4)
    h = np.where(h >= 0, h + 1000, h)                           # history items disjoint from the candidates
    other = cand + 500
    args = lambda c: [torch.from_numpy(a) for a in (h, e, feats, c)]  # noqa: E731
    for ids, same in ((False, True), (True, False)):
        torch.manual_seed(0)
        net = QNetwork(QNetworkConfig(n_features=N_FEATURES, history_len=6, d_model=16, candidate_ids=ids)).eval()
        with torch.no_grad():
            q1, q2 = net(*args(cand)), net(*args(other))
        assert torch.allclose(q1, q2, atol=1e-6) == same
