"""The natively vectorized env RLlib's runners sample from: gymnasium's vector API with NEXT_STEP autoreset,
the same shoppers as the one-shopper env, and per-runner seeds."""
import numpy as np
import pytest

from envs.env import ShoppingEnv, ShoppingVectorEnv, make_env, reseed_vector_env, user_model
from recdata.synthetic import SyntheticConfig, write_csv


@pytest.fixture(scope="module")
def um_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "synthetic.csv"
    write_csv(SyntheticConfig(n_users=1500, n_items=1000, seed=0), path)
    return str(user_model({"data": str(path)}).save(tmp_path_factory.mktemp("um") / "user_model"))


def _config(um_dir, **sim):
    return {"user_model": um_dir, "seed": 5, "sim": {"click_max": 0.8, **sim}}


def test_spaces_and_next_step_autoreset(um_dir):
    env = ShoppingVectorEnv(_config(um_dir, sessions_max=3, return_rate=0.5), num_envs=16)
    obs, _ = env.reset()
    assert env.observation_space.contains(obs) and env.action_space.shape == (16,)
    rng = np.random.default_rng(0)
    ended_rows = 0
    for _ in range(200):
        obs, reward, term, trunc, info = env.step(rng.integers(0, 10, 16))
        assert env.observation_space.contains(obs)
        done = term | trunc
        if done.any():
            ended_rows += done.sum()
            rows = np.flatnonzero(done)
            obs2, reward2, term2, trunc2, info2 = env.step(rng.integers(0, 10, 16))
            # the step after an end restarts the row: reward 0, not done, a fresh history (the seed item only)
            assert (reward2[rows] == 0).all() and not (term2[rows] | trunc2[rows]).any()
            assert ((obs2["hist_items"][rows, :-1] == -1).all(1)).all() and (obs2["hist_items"][rows, -1] >= 0).all()
            assert not info2["_response"][rows].any() and info2["_response"][~done].all()
            assert (info2["session"][rows] == 0).all()
    assert ended_rows > 20


def test_same_shoppers_as_the_one_shopper_env(um_dir):
    """Random actions: mean episode return and length of the vectorized env match the one-shopper env's
    within their 95% confidence intervals (same simulator, so same distribution)."""
    def run_vector(n_episodes):
        env = ShoppingVectorEnv(_config(um_dir), num_envs=64)
        env.reset()
        rng, ret, length = np.random.default_rng(1), np.zeros(64), np.zeros(64)
        rets, lens = [], []
        restart = np.zeros(64, bool)
        while len(rets) < n_episodes:
            _, r, te, tr, _ = env.step(rng.integers(0, 10, 64))
            ret += np.where(restart, 0, r)
            length += ~restart
            done = te | tr
            rets += list(ret[done])
            lens += list(length[done])
            ret[done], length[done] = 0, 0
            restart = done
        return np.array(rets), np.array(lens)

    def run_single(n_episodes):
        env = ShoppingEnv(_config(um_dir))
        rng, rets, lens = np.random.default_rng(2), [], []
        for _ in range(n_episodes):
            env.reset()
            ret, n, done = 0.0, 0, False
            while not done:
                _, r, te, tr, _ = env.step(int(rng.integers(0, 10)))
                ret, n, done = ret + r, n + 1, te or tr
            rets.append(ret)
            lens.append(n)
        return np.array(rets), np.array(lens)

    (vr, vl), (sr, sl) = run_vector(3000), run_single(1500)
    for v, s in ((vr, sr), (vl, sl)):
        half = 1.96 * np.sqrt(v.var() / len(v) + s.var() / len(s))
        assert abs(v.mean() - s.mean()) < max(half, 1e-9), (v.mean(), s.mean(), half)
    assert vl.mean() > 1.5  # episodes are more than one show long: the check compares something


def test_make_env_and_runner_seeds(um_dir):
    """RLlib's vector entry point passes a plain dict with num_envs (no worker index): the callback
    reseeds each runner's env apart."""
    from ray.rllib.env.env_context import EnvContext

    envs = []
    for worker in (1, 2):
        env = make_env({**_config(um_dir), "num_envs": 8})
        assert isinstance(env, ShoppingVectorEnv) and env.num_envs == 8
        reseed_vector_env(env=env, env_context=EnvContext({}, worker_index=worker))
        envs.append(env.reset()[0]["hist_items"][:, -1])
    assert not np.array_equal(envs[0], envs[1])
    assert isinstance(make_env(_config(um_dir)), ShoppingEnv)


def test_expected_rewards_pay_each_steps_mean_and_leave_the_shoppers_unchanged(um_dir, tmp_path):
    """train_reward="expected": the same shoppers and responses (same seed) as sampled rewards, each step
    paying the expectation of the sampled reward -- equal means over many steps, far lower variance; the
    prior's observation key appears with a prior and is inside the space."""
    from envs.policies import ExpectedRevenueGreedy

    sampled = ShoppingVectorEnv(_config(um_dir, sessions_max=2, return_rate=0.5), num_envs=4000)
    cfg = {**_config(um_dir, sessions_max=2, return_rate=0.5), "train_reward": "expected"}
    er = ExpectedRevenueGreedy.fit(user_model({"user_model": um_dir}), sampled.sim.cfg, n_sessions=1500, seed=0)
    cfg["prior"] = str(er.prior.save(tmp_path / "prior"))
    expected = ShoppingVectorEnv(cfg, num_envs=4000)
    obs_s, _ = sampled.reset()
    obs_e, _ = expected.reset()
    assert "cand_prior" in obs_e and "cand_prior" not in obs_s and expected.observation_space.contains(obs_e)
    rng = np.random.default_rng(1)
    rs, re = [], []
    for _ in range(6):
        a = rng.integers(0, 10, 4000)
        obs_s, r_s, *_, info_s = sampled.step(a)
        obs_e, r_e, *_, info_e = expected.step(a)
        np.testing.assert_array_equal(info_s["response"], info_e["response"])  # the same draws
        rs.append(r_s)
        re.append(r_e)
    rs, re = np.concatenate(rs), np.concatenate(re)
    se = np.sqrt(rs.var() / len(rs))
    assert abs(rs.mean() - re.mean()) < 4 * se, (rs.mean(), re.mean(), se)
    assert re.var() < 0.5 * rs.var()
    with pytest.raises(ValueError, match="train_reward"):
        ShoppingVectorEnv({**cfg, "train_reward": "mean"}, num_envs=2)
