"""The shopping simulator: Gymnasium API, calibration from real logs, reward bookkeeping."""
import dataclasses
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs.env import ShoppingEnv, register_gym, sim_config, user_model
from envs.shopping import ENV_ID, CART, HIST_SKIP, PURCHASE, SKIP, VIEW, ShopperSim, logging_policy, run_episodes
from envs.user_model import UserModel
from models.dqn.features import build_candidate_features

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
REES = SHARED / "rees46-oct2019-head"
pytestmark = pytest.mark.skipif(not REES.exists(), reason=f"{REES} absent (shared real data)")


@pytest.fixture(scope="module")
def um():
    return user_model({"data": str(REES)})


def test_check_env_and_make_by_name(um):
    register_gym()
    env = gym.make(ENV_ID, env_config={"data": str(REES), "sim": {"click_max": 0.8}})
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    done, steps = False, 0
    while not done:
        obs, r, term, trunc, info = env.step(env.action_space.sample())
        done, steps = term or trunc, steps + 1
        assert info["response"] in (SKIP, VIEW, CART, PURCHASE)
    assert 1 <= steps <= 30


def test_calibration_is_derived_from_the_log(um, tmp_path):
    from recdata.loaders import load

    cal = um.cal
    ev = load("rees46", REES).events
    assert cal.n_train_sessions + cal.n_heldout_sessions == ev["session"].nunique()
    assert 0 < cal.conv_per_view < 0.2 and 0 < cal.purchase_share <= 1
    assert cal.median_price > 0 and cal.mean_session_items > 1 and cal.funnel_source == "the log itself"
    # the next-item model reproduces observed transitions: a seen successor beats the back-off
    last = np.flatnonzero(um.trans.nbr[:, 0] >= 0)[:50]
    p = um.trans.prob(last, np.stack([um.trans.nbr[last, 0], (um.trans.nbr[last, 0] + 1) % um.n_items], 1))
    assert (p[:, 0] > p[:, 1]).mean() > 0.9
    back = UserModel.load(um.save(tmp_path / "um"))
    assert back.cal == cal
    np.testing.assert_array_equal(back.trans.nbr, um.trans.nbr)


def test_reward_bookkeeping_per_response_type(um):
    cfg = sim_config({"click_max": 0.9, "reward": {"skip": -0.1, "view": 0.2, "cart": 0.7, "purchase": 3.0,
                                                    "price_weight": 1.0}})
    sim = ShopperSim(um, cfg, n=3000, seed=0)
    sim.reset()
    seen = set()
    rng = np.random.default_rng(0)
    for _ in range(8):
        a = rng.integers(0, cfg.n_candidates, sim.n)
        items = sim.cand[np.arange(sim.n), a]
        r, te, tr, resp = sim.step(a)
        expect = np.select([resp == PURCHASE, resp == CART, resp == VIEW], [sim.purchase_value(items), 0.7, 0.2], -0.1)
        np.testing.assert_allclose(r, expect)
        mult = np.minimum(sim.price[items] / um.cal.median_price, cfg.reward.price_cap)
        np.testing.assert_allclose(r[resp == PURCHASE], 3.0 * mult[resp == PURCHASE])
        # the shown item enters the history with its response (skip code 3)
        np.testing.assert_array_equal(sim.hist_items[:, -1], items)
        np.testing.assert_array_equal(sim.hist_events[:, -1], np.where(resp == SKIP, HIST_SKIP, resp))
        seen |= set(np.unique(resp).tolist())
        sim.reset(te | tr)
    assert seen == {SKIP, VIEW, CART, PURCHASE}


def test_simulator_features_are_the_contract_function(um):
    sim = ShopperSim(um, sim_config({"click_max": 0.8}), n=20, seed=1)
    sim.reset()
    sim.step(np.zeros(20, np.int64))
    for b in range(5):
        f = build_candidate_features({k: v[b] for k, v in sim.scores.items()}, sim.price[sim.cand[b]],
                                     um.item_cat[sim.cand[b]], um.item_cat[sim.last[b]])
        np.testing.assert_allclose(sim.feats[b], f, rtol=1e-5, atol=1e-6)


def test_long_term_dynamics_fatigue_ends_sessions(um):
    """Re-showing the same skipped item (what a stateless greedy ranker does) ends sessions sooner than
    showing the next candidate each time."""
    cfg = sim_config({"click_max": 0.5})
    same = run_episodes(ShopperSim(um, cfg, n=4000, seed=5), lambda s: np.zeros(s.n, np.int64), None)
    rotate = run_episodes(ShopperSim(um, cfg, n=4000, seed=5),
                          lambda s: (s.steps % cfg.n_candidates).astype(np.int64), None)
    assert same["length"].mean() < rotate["length"].mean()


def test_click_max_is_fitted_to_session_length(um):
    cfg = dataclasses.replace(sim_config({}), max_steps=30)
    sim = ShopperSim(um, cfg, n=2000, seed=0)
    assert 0.05 <= sim.cfg.click_max <= 0.95
    rng = np.random.default_rng(0)
    r = run_episodes(sim, lambda s: logging_policy(s, rng)[0], rng)
    assert r["engaged"].mean() > 1.0


def test_other_datasets_use_the_rees46_funnel():
    ml = SHARED / "ml-100k"
    if not ml.exists():
        pytest.skip(f"{ml} absent")
    env = ShoppingEnv({"data": str(ml), "fmt": "recbole", "funnel_data": str(REES), "sim": {"click_max": 0.7}})
    assert "rees46" in env.um.cal.funnel_source
    obs, _ = env.reset(seed=0)
    obs, r, *_ = env.step(0)
    assert env.observation_space.contains(obs)
