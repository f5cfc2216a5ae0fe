"""The shopping simulator: Gymnasium API, calibration from a log, reward bookkeeping, and the calibrated
session length. Fed by the embedded synthetic generator (a REES46-schema log calibrated on the REES46
sample), so it runs without ../shared."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs.env import ShoppingEnv, register_gym, sim_config, user_model
from envs.shopping import (CART, ENV_ID, HIST_SKIP, PURCHASE, SKIP, VIEW, ShopperSim, logging_policy,
                           run_episodes)
from envs.user_model import UserModel
from models.dqn.features import build_candidate_features
from recdata.loaders import load
from recdata.synthetic import SyntheticConfig, write_csv
from support import write_cyclic_log


@pytest.fixture(scope="module")
def rees(tmp_path_factory):
    """A REES46-schema log (sessions, prices, categories, the view -> cart -> purchase funnel)."""
    path = tmp_path_factory.mktemp("data") / "synthetic.csv"
    write_csv(SyntheticConfig(n_users=1500, n_items=1000, seed=0), path)
    return path


@pytest.fixture(scope="module")
def um(rees):
    return user_model({"data": str(rees)})


def test_check_env_and_make_by_name(um, rees):
    register_gym()
    env = gym.make(ENV_ID, env_config={"data": str(rees), "sim": {"click_max": 0.8}})
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    done, steps = False, 0
    while not done:
        obs, r, term, trunc, info = env.step(env.action_space.sample())
        done, steps = term or trunc, steps + 1
        assert info["response"] in (SKIP, VIEW, CART, PURCHASE)
    assert 1 <= steps <= 30


def test_calibration_is_derived_from_the_log(um, rees, tmp_path):
    cal = um.cal
    ev = load("rees46", rees).events
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


def test_simulated_sessions_have_the_calibrated_length(um):
    """With the fitted engagement (click_max, and the leave scale when click_max alone falls short),
    fresh sessions under the logging policy have the log's mean number of engaged items."""
    sim = ShopperSim(um, sim_config({}), n=4000, seed=11)   # fitted on seed 0; measured on others
    rng = np.random.default_rng(11)
    r = run_episodes(sim, lambda s: logging_policy(s, rng)[0], rng)
    target = um.cal.mean_session_items
    assert abs(r["engaged"].mean() - target) < 0.05 * target, (r["engaged"].mean(), target, sim.cfg)


def test_logs_without_purchases_borrow_a_rees46_funnel(rees, tmp_path):
    log = write_cyclic_log(tmp_path, users=80, items=40)   # `user item` lines: views only
    env = ShoppingEnv({"data": str(log), "fmt": "sasrec", "funnel_data": str(rees), "sim": {"click_max": 0.7}})
    assert str(rees) in env.um.cal.funnel_source
    obs, _ = env.reset(seed=0)
    obs, r, *_ = env.step(0)
    assert env.observation_space.contains(obs)


# -- the horizon: a shopper's sessions over a window ---------------------------------------------------
def test_single_session_is_the_default(um):
    r = run_episodes(ShopperSim(um, sim_config({"click_max": 0.8}), n=2000, seed=2), lambda s: np.zeros(s.n, np.int64),
                     None)
    assert (r["sessions"] == 1).all()


def test_a_satisfied_shopper_returns_more_often(um):
    """Same seed, same sessions ended at the same step; half the shoppers bought and clicked every show,
    half skipped repeated shows and tired: the satisfied half comes back more often."""
    cfg = sim_config({"click_max": 0.8, "sessions_max": 2, "max_steps": 1, "return_rate": 0.4})
    n = 6000
    sim = ShopperSim(um, cfg, n=n, seed=4)
    sim.reset()
    happy, unhappy = np.arange(n) < n // 2, np.arange(n) >= n // 2
    sim.s_shows[:] = 3
    sim.s_buys[happy], sim.s_clicks[happy] = 1, 3
    sim.s_repeats[unhappy], sim.fatigue[unhappy] = 2, 3.0
    assert (sim.return_prob()[happy] > sim.return_prob()[unhappy]).all()
    _, te, tr, _ = sim.step(np.zeros(n, np.int64))          # max_steps=1: every session ends now
    returned = sim.session == 1
    assert (te == ~returned).all() and not tr.any()
    p_happy, p_unhappy = returned[happy].mean(), returned[unhappy].mean()
    assert p_happy > p_unhappy + 0.2, (p_happy, p_unhappy)
    # ... and over whole episodes: a policy that shows what the shopper wants keeps them coming back
    # more than one that shows the first candidate again and again
    long = sim_config({"click_max": 0.8, "sessions_max": 6, "return_rate": 0.5})
    from envs.policies import myopic_oracle

    good = run_episodes(ShopperSim(um, long, n=3000, seed=8), myopic_oracle, None)["sessions"]
    bad = run_episodes(ShopperSim(um, long, n=3000, seed=8), lambda s: np.zeros(s.n, np.int64), None)["sessions"]
    assert good.mean() > bad.mean() + 0.2, (good.mean(), bad.mean())


def test_return_rate_is_calibrated_on_the_logging_policy(um):
    """The fitted intercept makes the logging policy's first sessions return at return_rate."""
    for rate in (0.3, 0.6):
        sim = ShopperSim(um, sim_config({"sessions_max": 50, "return_rate": rate}), n=4000, seed=11)
        rng = np.random.default_rng(11)
        s = run_episodes(sim, lambda x: logging_policy(x, rng)[0], rng)["sessions"]
        assert abs((s >= 2).mean() - rate) < 0.035, (rate, (s >= 2).mean())
        assert s.max() < 50


def test_interest_drifts_between_sessions(um):
    """new_interest=0: the next session starts in the category of a recently engaged item; =1: from a
    real session start of the log."""
    for new_interest in (0.0, 1.0):
        sim = ShopperSim(um, sim_config({"click_max": 0.8, "sessions_max": 3, "return_rate": 0.5,
                                         "new_interest": new_interest}), n=500, seed=1)
        sim.reset()
        rows = np.arange(sim.n)
        before = sim.recent.copy()
        sim.next_session(rows)
        assert (sim.session == 1).all() and (sim.steps == 0).all()
        if new_interest == 0.0:
            cats = um.item_cat[np.maximum(before, 0)]
            assert all(um.item_cat[sim.last[i]] in set(cats[i][before[i] >= 0].tolist()) for i in rows)
        else:
            assert np.isin(sim.last, um.start_items).all()
        assert (sim.hist_items[:, -1] == sim.last).all() and (sim.hist_items[:, -2] == before[:, -1]).all()


def test_gym_episode_spans_sessions_with_one_history(um, rees):
    env = ShoppingEnv({"data": str(rees), "sim": {"click_max": 0.8, "sessions_max": 3, "return_rate": 0.9}})
    sessions = []
    for ep in range(30):
        obs, _ = env.reset(seed=ep)
        done, prev_session = False, 0
        while not done:
            shown = obs["cand_items"].copy()
            a = env.action_space.sample()
            obs, r, term, trunc, info = env.step(a)
            assert env.observation_space.contains(obs)
            done = term or trunc
            if info["session"] > prev_session and not done:
                # the history runs on: the item shown last session sits just before the new first item
                assert obs["hist_items"][-2] == shown[a]
            prev_session = info["session"]
        sessions.append(prev_session + 1)
        assert not trunc or prev_session == 2       # truncation only when the window is full
    assert max(sessions) == 3 and min(sessions) >= 1
