"""RLlib DQN on the simulator, tiny budgets: registration by name, a training iteration, checkpoint
save/restore, plain-torch export matching the RLlib module, and the trainer end to end with resume."""
import json
import os

import numpy as np
import pytest

from recdata.synthetic import SyntheticConfig, write_csv

os.environ["RLLIB_TEST_NO_TF_IMPORT"] = "1"
pytestmark = [pytest.mark.ray_session, pytest.mark.slow]


@pytest.fixture(scope="module")
def rees(tmp_path_factory):
    """The simulator's log: the embedded synthetic REES46-schema data (no ../shared needed)."""
    path = tmp_path_factory.mktemp("data") / "synthetic.csv"
    write_csv(SyntheticConfig(n_users=1500, n_items=1000, seed=0), path)
    return path


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    os.environ["RAY_AUTH_MODE"] = "disabled"
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             _temp_dir=str(tmp_path_factory.mktemp("ray")))
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def um_dir(tmp_path_factory, rees):
    from envs.env import user_model

    return str(user_model({"data": str(rees)}).save(tmp_path_factory.mktemp("um") / "user_model"))


@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory, um_dir):
    """The expected-revenue prior fitted on the tiny configs' simulator (what train_dqn fits by default)."""
    from envs.env import sim_config, user_model
    from envs.policies import ExpectedRevenueGreedy

    er = ExpectedRevenueGreedy.fit(user_model({"user_model": um_dir}), sim_config({"click_max": 0.8}),
                                   n_sessions=1500, seed=0)
    return str(er.prior.save(tmp_path_factory.mktemp("prior") / "prior"))


def _tiny_config(um_dir, sim=None, extra=(), prior=None):
    from trainers.train_dqn import build_config, parse_args

    args = parse_args(["--timesteps", "400", "--d-model", "16", "--batch", "32", "--envs-per-runner", "2", *extra])
    env_config = {"user_model": um_dir, "sim": {"click_max": 0.8, **(sim or {})}, "seed": 0}
    if prior:
        env_config["prior"] = prior
    return build_config(env_config, args).reporting(min_sample_timesteps_per_iteration=200)


def test_sim_flags_fit_the_horizon_once_and_gamma_zero_is_myopic(um_dir, tmp_path):
    """--sim fields reach the env config with the fitted engagement and return intercept (workers do not
    refit); --gamma 0 is the myopic DQN; a typo in a field fails before Ray starts."""
    import shutil
    from pathlib import Path

    from trainers.train_dqn import parse_args, prepare_env_config

    out = tmp_path / "work"
    shutil.copytree(um_dir, out / "user_model")
    args = parse_args(["--sim", "sessions_max=4", "--sim", "return_rate=0.5", "--gamma", "0"])
    env_config, um, cfg = prepare_env_config(args, out)
    sim = env_config["sim"]
    assert sim["sessions_max"] == 4 and sim["return_rate"] == 0.5 and Path(env_config["user_model"]).exists()
    assert {"click_max", "leave_scale", "return_intercept"} <= set(sim)
    assert cfg.return_intercept == sim["return_intercept"]
    assert _tiny_config(um_dir, extra=["--gamma", "0"]).gamma == 0.0
    with pytest.raises(ValueError, match="valid keys"):
        prepare_env_config(parse_args(["--sim", "sesions_max=4"]), out)


def test_rllib_trains_on_episodes_over_sessions(ray_local, um_dir):
    cfg = _tiny_config(um_dir, sim={"sessions_max": 3, "return_rate": 0.6}, extra=["--gamma", "0"])
    algo = cfg.build_algo()
    try:
        result = algo.train()
        assert result["env_runners"]["num_env_steps_sampled_lifetime"] >= 200
        assert np.isfinite(result["env_runners"]["episode_return_mean"])
    finally:
        algo.stop()


def _obs_batch(um_dir, n=6, prior=None):
    from envs.env import response_prior, sim_config, user_model
    from envs.shopping import ShopperSim

    sim = ShopperSim(user_model({"user_model": um_dir}), sim_config({"click_max": 0.8}), n=n, seed=3)
    sim.prior = response_prior({"prior": prior})
    sim.reset()
    sim.step(np.arange(n) % 10)
    return sim.observation()


def test_rllib_trains_by_name_checkpoints_and_exports(ray_local, um_dir, prior_dir, tmp_path):
    """The residual-over-prior network (train_dqn's default): the env's observations carry the prior, and
    the exported artifact, which computes the prior itself, gives the RLlib module's Q-values."""
    import torch
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.rl_module.rl_module import RLModule

    from envs.env import response_prior, user_model
    from envs.shopping import RLLIB_ENV
    from models.dqn.policy import DecisionPolicy
    from trainers.dqn_selection import export_policy, learner_module

    cfg = _tiny_config(um_dir, prior=prior_dir)
    assert cfg.env == RLLIB_ENV  # the env is given by its registered name
    algo = cfg.build_algo()
    try:
        result = algo.train()
        assert result["env_runners"]["num_env_steps_sampled_lifetime"] >= 200
        assert np.isfinite(result["env_runners"]["episode_return_mean"])
        module = learner_module(algo)
        assert module.encoder.cfg.prior
        obs = _obs_batch(um_dir, prior=prior_dir)
        assert obs["cand_prior"].shape == obs["cand_items"].shape
        tobs = {k: torch.from_numpy(v) for k, v in obs.items()}
        with torch.no_grad():
            q_rllib = module.compute_q_values({Columns.OBS: tobs})["qf_preds"].numpy()
        algo.save_to_path(str(tmp_path / "ckpt"))
        pol = DecisionPolicy.load(export_policy(algo, user_model({"user_model": um_dir}), tmp_path / "policy",
                                                prior=response_prior({"prior": prior_dir})))
    finally:
        algo.stop()
    # plain-torch export == RLlib module
    q_plain = pol.q_values(obs["hist_items"], obs["hist_events"].astype(np.int8), obs["cand_feats"], obs["cand_items"])
    np.testing.assert_allclose(q_plain, q_rllib, rtol=1e-5, atol=1e-6)
    # restore: the module from the checkpoint alone, and a whole algorithm restored from it
    restored = RLModule.from_checkpoint(
        tmp_path / "ckpt" / "learner_group" / "learner" / "rl_module" / "default_policy")
    with torch.no_grad():
        q_restored = restored.compute_q_values({Columns.OBS: tobs})["qf_preds"].numpy()
    np.testing.assert_allclose(q_restored, q_rllib, rtol=1e-5, atol=1e-6)
    algo2 = _tiny_config(um_dir, prior=prior_dir).build_algo()
    try:
        algo2.restore_from_path(str(tmp_path / "ckpt"))
        with torch.no_grad():
            q2 = learner_module(algo2).compute_q_values({Columns.OBS: tobs})["qf_preds"].numpy()
        np.testing.assert_allclose(q2, q_rllib, rtol=1e-5, atol=1e-6)
    finally:
        algo2.stop()


def test_trainer_logs_registers_and_resumes(ray_local, rees, tmp_path, monkeypatch):
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    import torch

    from models.dqn.policy import DecisionPolicy
    from reccore import tracking
    from trainers.train_dqn import main

    common = ["--format", "rees46", "--path", str(rees),
              "--d-model", "16", "--batch", "32", "--envs-per-runner", "2", "--eval-episodes", "500",
              "--checkpoint-every", "1", "--prior-sessions", "1500", "--out", str(tmp_path / "work"),
              "--select-every", "400", "--select-episodes", "300", "--average-steps", "2000"]
    first = main(["--timesteps", "1000", *common])
    state = json.loads((tmp_path / "work" / "state.json").read_text())
    n_first = len(state["history"])
    assert first["timesteps"] >= 1000 and first["version"] == "1" and np.isfinite(first["eval_return"])
    # epsilon anneals over the first 1,000 steps: the first selection is the end of the first run
    # (the weight average starts there too, so it is not a candidate yet)
    assert [(s["timesteps"], s["weights"]) for s in state["selection"]] == [(first["timesteps"], "last")]
    second = main(["--timesteps", "2000", *common])
    state2 = json.loads((tmp_path / "work" / "state.json").read_text())
    assert state2["run_id"] == state["run_id"] and len(state2["history"]) > n_first  # resumed, same run
    assert state2["history"][n_first]["timesteps"] > state["history"][-1]["timesteps"]
    assert second["version"] == "2"
    # the resumed run kept scoring; the exported policy is the best-scoring checkpoint's, bit for bit
    scores = state2["selection"]
    assert len(scores) >= 3 and scores[0] == state["selection"][0] and scores[-1]["timesteps"] == second["timesteps"]
    assert {s["weights"] for s in scores if s["timesteps"] == second["timesteps"]} == {"last", "average"}
    best = max(scores, key=lambda s: s["return"])
    assert second["selected_timesteps"] == best["timesteps"]
    assert DecisionPolicy.load(tmp_path / "work" / "policy").meta["selected_weights"] == best["weights"]
    exported = torch.load(tmp_path / "work" / "policy" / "weights.pt")
    kept = torch.load(tmp_path / "work" / "best_policy" / "weights.pt")
    assert all(torch.equal(exported[k], kept[k]) for k in kept)
    mlflow = tracking.configured_mlflow()
    run = mlflow.get_run(state["run_id"])
    assert {"return", "epsilon", "loss", "eval_return"} <= set(run.data.metrics)
    arts = [a.path for a in mlflow.MlflowClient().list_artifacts(state["run_id"])]
    assert "reward_epsilon.png" in arts and "policy" in arts
    pol = DecisionPolicy.load(tracking.resolve_artifact("models:/dqn@champion", tmp_path / "dl"))
    assert pol.feature_names[0] == "score_sequence"
    assert pol.prior is not None and pol.meta["prior"] == "expected_revenue"  # the default: residual over ER


def test_a_budget_that_ends_training_before_epsilon_anneals_is_called_out():
    from trainers.train_dqn import budget_ends_exploration

    schedule = [(0, 1.0), (4_000_000, 0.05)]  # 40% of --timesteps 10^7
    warn = budget_ends_exploration(steps=3_000, seconds=10.0, budget_s=900, schedule=schedule)  # 300 steps/s
    assert "ends training near 270,000 steps" in warn and "--timesteps to about 270,000" in warn
    assert "still be 0.94" in warn
    early = [(0, 1.0), (100_000, 0.05)]
    assert budget_ends_exploration(steps=3_000, seconds=10.0, budget_s=900, schedule=early) is None


def test_an_iteration_starts_only_when_it_ends_inside_the_budget():
    from trainers.train_dqn import next_iteration_fits

    assert next_iteration_fits(40.0, 3.0, 45.0) and not next_iteration_fits(43.0, 3.0, 45.0)
    assert not next_iteration_fits(46.0, 0.0, 45.0)          # spent: even the first would not start
    assert next_iteration_fits(1e6, 10.0, None) and next_iteration_fits(1e6, 10.0, 0)  # no budget
