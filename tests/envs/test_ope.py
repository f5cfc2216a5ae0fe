"""Off-policy estimators against a toy log whose values are worked out by hand here, and against the
simulated value of the same policy in the simulator."""

import numpy as np
import pytest

from envs.env import sim_config, user_model
from envs.ope import LoggedEpisodes, check, doubly_robust, epsilon_greedy, ips, snips, weights
from envs.policies import engine_score, fresh, oracle_expected_reward
from envs.shopping import ShopperSim
from recdata.synthetic import SyntheticConfig, write_csv


@pytest.fixture
def toy():
    """Two episodes. Episode 1: two steps; episode 2: one step (then padded, mask False).
        ep1 t0: r=1, mu=0.5,  pi=1.0, q=0.8, v=0.9     ep1 t1: r=0, mu=0.5, pi=0.5, q=0.2, v=0.3
        ep2 t0: r=0, mu=0.25, pi=0.5, q=0.1, v=0.4"""
    return LoggedEpisodes(reward=np.array([[1.0, 0.0], [0.0, 0.0]]), mu=np.array([[0.5, 0.5], [0.25, 0.0]]),
                          pi=np.array([[1.0, 0.5], [0.5, 0.0]]), q=np.array([[0.8, 0.2], [0.1, 0.0]]),
                          v=np.array([[0.9, 0.3], [0.4, 0.0]]), mask=np.array([[True, True], [True, False]]))


def test_estimators_on_a_hand_computed_log(toy):
    # weights: ep1 w0 = 1.0/0.5 = 2, w1 = 2 * 0.5/0.5 = 2; ep2 w0 = 0.5/0.25 = 2, carried: w1 = 2
    np.testing.assert_allclose(weights(toy), [[2.0, 2.0], [2.0, 2.0]])
    # IPS: ep1 2*1 + 2*0 = 2, ep2 0 -> mean 1.0
    assert ips(toy)[0] == pytest.approx(1.0)
    # SNIPS: t0 (2*1 + 2*0) / (2 + 2) = 0.5; t1 0 / 4 = 0 -> 0.5
    assert snips(toy, n_boot=0)[0] == pytest.approx(0.5)
    # DR: ep1 t0 2*(1 - 0.8) + 1*0.9 = 1.3, t1 2*(0 - 0.2) + 2*0.3 = 0.2 -> 1.5; ep2 t0 2*(0 - 0.1) + 0.4 = 0.2
    #     -> mean (1.5 + 0.2) / 2 = 0.85
    value, ci, terms = doubly_robust(toy)
    np.testing.assert_allclose(terms, [1.5, 0.2])
    assert value == pytest.approx(0.85)
    # CI: 1.96 * sd([1.5, 0.2], ddof=1) / sqrt(2) = 1.96 * 0.919239 / 1.414214 = 1.274
    assert ci == pytest.approx(1.274, abs=1e-3)


def test_clipped_and_discounted_estimates(toy):
    # clip 1.5: every weight 2 -> 1.5
    assert ips(toy, clip=1.5)[0] == pytest.approx(0.75)              # (1.5*1 + 0) / 2
    assert snips(toy, clip=1.5, n_boot=0)[0] == pytest.approx(0.5)   # 1.5 / 3 at t0
    # DR: ep1 1.5*0.2 + 0.9 = 1.2, t1 1.5*(-0.2) + 1.5*0.3 = 0.15 -> 1.35; ep2 1.5*(-0.1) + 0.4 = 0.25
    assert doubly_robust(toy, clip=1.5)[0] == pytest.approx((1.35 + 0.25) / 2)
    # gamma 0.5 (unclipped): DR ep1 1.3 + 0.5*0.2 = 1.4, ep2 0.2 -> 0.8
    assert doubly_robust(toy, gamma=0.5)[0] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="same shape"):
        LoggedEpisodes(reward=np.zeros((2, 2)), mu=np.ones((2, 3)), pi=np.ones((2, 2)), q=np.zeros((2, 2)),
                       v=np.zeros((2, 2)), mask=np.ones((2, 2), bool))


def test_estimates_land_near_the_simulated_value_of_the_same_policy(tmp_path):
    """Short (single-session) episodes and a logging policy that explores (temperature 1): IPS, SNIPS
    and DR (q = the hidden state's immediate expected reward) of an eps-greedy target agree with that
    target's simulated value within their CIs."""
    path = tmp_path / "synthetic.csv"
    write_csv(SyntheticConfig(n_users=1500, n_items=1000, seed=0), path)
    um = user_model({"data": str(path)})
    cfg = ShopperSim(um, sim_config({"click_max": 0.8}), n=1, seed=0).cfg
    out = check(um, cfg, epsilon_greedy(fresh(engine_score(0)), 0.2), oracle_expected_reward, n=6000, seed=3,
                clip=None, temperature=1.0)
    for k in ("ope_ips", "ope_snips", "ope_dr"):
        gap = abs(out[k] - out["ope_truth"])
        assert gap < 1.5 * (out[f"{k}_ci95"] + out["ope_truth_ci95"]), (k, out)
    # the target is not the logging policy: the check is not trivially satisfied
    assert abs(out["ope_truth"] - out["ope_logging_value"]) > 2 * out["ope_truth_ci95"]
