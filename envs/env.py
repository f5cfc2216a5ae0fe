"""Gymnasium env of one shopper's session (over the vectorized core) and its registration by name.

    envs.env.register_gym()
    gymnasium.make("recsys/Shopping-v0", env_config={"data": "../shared/data/rees46-oct2019-head"})
    envs.env.register_rllib()  ->  DQNConfig().environment("recsys-shopping", env_config={...})

env_config keys: data (path of a log), fmt (loader format, default rees46), user_model (a folder saved by
UserModel.save; used instead of data when given), funnel_data (REES46-format log calibrating the funnel
when `data` has no purchases, e.g. MovieLens), sim (dict of SimConfig fields; reward as a nested dict),
prior (a folder written by models.dqn.prior.ResponsePrior.save: observations then carry cand_prior, the
myopic expected reward per candidate), train_reward ("sampled", the default, or "expected": each step pays
its expected reward given the simulator's hidden state -- the same expected return with far less variance;
for training in the simulator, never for evaluation), seed.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import gymnasium as gym
import numpy as np

from envs.shopping import ENV_ID, RLLIB_ENV, RewardConfig, ShopperSim, SimConfig, observation_space
from envs.user_model import UserModel
from models.dqn.prior import ResponsePrior
from reccore.config import config_from_dict
from reccore.constants import PURCHASE
from recdata.dataset import Catalog
from recdata.loaders import load

DEFAULT_FUNNEL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "rees46-oct2019-head"
_CACHE: dict = {}


def response_prior(env_config: dict):
    """The ResponsePrior an env_config names (None without "prior"); cached per process."""
    if not env_config.get("prior"):
        return None
    key = ("prior", str(env_config["prior"]))
    if key not in _CACHE:
        _CACHE[key] = ResponsePrior.load(env_config["prior"])
    return _CACHE[key]


def expected_rewards(env_config: dict) -> bool:
    """env_config "train_reward": "sampled" (default) or "expected"."""
    mode = env_config.get("train_reward", "sampled")
    if mode not in ("sampled", "expected"):
        raise ValueError(f"train_reward must be 'sampled' or 'expected'; got {mode!r}")
    return mode == "expected"


def sim_config(values: dict | None) -> SimConfig:
    """dict -> SimConfig; unknown keys fail with the valid ones."""
    values = dict(values or {})
    reward = config_from_dict(RewardConfig, values.pop("reward", None), "sim.reward")
    if "slots" in values:
        values["slots"] = tuple(values["slots"])
    return dataclasses.replace(config_from_dict(SimConfig, values, "sim"), reward=reward)


def user_model(env_config: dict) -> UserModel:
    """Fit (or load) the user model an env_config names; cached per process."""
    if env_config.get("user_model"):
        key = ("dir", str(env_config["user_model"]))
        if key not in _CACHE:
            _CACHE[key] = UserModel.load(env_config["user_model"])
        return _CACHE[key]
    data = env_config.get("data")
    if not data:
        raise ValueError("env_config needs 'data' (a log folder, e.g. ../shared/data/rees46-oct2019-head) "
                         "or 'user_model' (a folder written by UserModel.save)")
    fmt = env_config.get("fmt", "rees46")
    key = ("data", fmt, str(Path(data).resolve()), str(env_config.get("funnel_data")))
    if key not in _CACHE:
        log = load(fmt, data)
        funnel = env_config.get("funnel_data") or (str(DEFAULT_FUNNEL) if DEFAULT_FUNNEL.exists() else None)
        funnel_log = load("rees46", funnel) if funnel and (log.events["event"] == PURCHASE).sum() < 20 else None
        _CACHE[key] = UserModel.fit(log, Catalog.from_log(log), funnel_log=funnel_log,
                                    funnel_source=str(funnel) if funnel_log is not None else "")
    return _CACHE[key]


class ShoppingEnv(gym.Env):
    """One shopper. Observation: dict of hist_items [L], hist_events [L], cand_items [K], cand_feats [K, F]
    (see envs/shopping.py); action: Discrete(K), the candidate to show. info: response (-1 skip, 0 view,
    1 cart, 2 purchase), item, session (0-based index of the session in the episode: with
    sim.sessions_max > 1 an episode spans a shopper's sessions over a window); click/purchase
    probabilities are not exposed (hidden state)."""

    metadata = {"render_modes": []}

    def __init__(self, env_config: dict | None = None, **kw):
        env_config = {**(env_config or {}), **kw}
        self.env_config = env_config
        self.um = user_model(env_config)
        self.cfg = sim_config(env_config.get("sim"))
        self.sim = ShopperSim(self.um, self.cfg, n=1, seed=env_config.get("seed"))
        self.sim.prior = response_prior(env_config)
        self.sim.expected_rewards = expected_rewards(env_config)
        self.observation_space = observation_space(self.cfg, self.um.n_items, self.sim.prior is not None)
        self.action_space = gym.spaces.Discrete(self.cfg.n_candidates)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.sim.rng = np.random.default_rng(seed)
        self.sim.reset()
        return self._obs(), {}

    def step(self, action):
        item = int(self.sim.cand[0, int(action)])
        reward, term, trunc, resp = self.sim.step(np.array([int(action)]))
        return self._obs(), float(reward[0]), bool(term[0]), bool(trunc[0]), {
            "response": int(resp[0]), "item": item, "session": int(self.sim.session[0])}

    def _obs(self) -> dict:
        return {k: v[0] for k, v in self.sim.observation().items()}


class ShoppingVectorEnv(gym.vector.VectorEnv):
    """`num_envs` shoppers stepped as one numpy batch (one ShopperSim of n rows): what an RLlib env runner
    samples from with `gym_env_vectorize_mode="vector_entry_point"`. Gymnasium's default autoreset
    (NEXT_STEP): the step after a shopper's episode ends restarts that row, returning its first observation
    with reward 0 and no termination -- as SyncVectorEnv over ShoppingEnv does, without a Python loop
    over the rows (a step of one shopper costs about as much numpy overhead as a step of 64)."""

    metadata = {"render_modes": [], "autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, env_config: dict | None = None, num_envs: int = 1):
        env_config = dict(env_config or {})
        self.num_envs = int(env_config.pop("num_envs", num_envs))
        self.env_config = env_config
        self.um = user_model(env_config)
        self.cfg = sim_config(env_config.get("sim"))
        self.sim = ShopperSim(self.um, self.cfg, n=self.num_envs, seed=env_config.get("seed"))
        self.sim.prior = response_prior(env_config)
        self.sim.expected_rewards = expected_rewards(env_config)
        self.single_observation_space = observation_space(self.cfg, self.um.n_items, self.sim.prior is not None)
        self.single_action_space = gym.spaces.Discrete(self.cfg.n_candidates)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self._done = np.zeros(self.num_envs, bool)

    def reseed(self, offset: int) -> None:
        """Offset the seed (RLlib's vector entry point drops the worker index; see train_dqn)."""
        seed = self.env_config.get("seed")
        self.sim.rng = np.random.default_rng(None if seed is None else int(seed) + offset)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.sim.rng = np.random.default_rng(seed)
        self.sim.reset()
        self._done[:] = False
        return self.sim.observation(), {}

    def step(self, actions):
        actions = np.asarray(actions, np.int64).reshape(self.num_envs)
        restart = self._done.copy()
        items = self.sim.cand[np.arange(self.num_envs), actions]
        # rows that ended last step take a throwaway step here and are restarted below
        reward, term, trunc, resp = self.sim.step(actions)
        self.sim.reset(restart)
        reward = np.where(restart, 0.0, reward)
        term, trunc = term & ~restart, trunc & ~restart
        self._done = term | trunc
        stepped = ~restart
        info = {"response": resp, "_response": stepped, "item": items, "_item": stepped,
                "session": self.sim.session.copy(), "_session": stepped}
        return self.sim.observation(), reward.astype(np.float32), term, trunc, info


def make_env(env_config: dict | None = None) -> ShoppingEnv | ShoppingVectorEnv:
    """RLlib env creator (also applies the worker index to the seed so runners differ). With "num_envs"
    in the config (RLlib's vector entry point) it makes the vectorized env."""
    cfg = dict(env_config or {})
    idx = getattr(env_config, "worker_index", 0) * 1000 + getattr(env_config, "vector_index", 0)
    if cfg.get("seed") is not None:
        cfg["seed"] = int(cfg["seed"]) + idx
    if "num_envs" in cfg:
        return ShoppingVectorEnv(cfg)
    return ShoppingEnv(cfg)


def reseed_vector_env(env_runner=None, metrics_logger=None, env=None, env_context=None, **kw) -> None:
    """RLlib `on_environment_created` callback: a vectorized env learns its runner's index here (RLlib's
    vector entry point passes a plain dict without it), so runners sample different shoppers."""
    if isinstance(env, ShoppingVectorEnv):
        env.reseed(1000 * int(getattr(env_context, "worker_index", 0) or 0))


def register_gym() -> None:
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point="envs.env:ShoppingEnv")


def register_rllib() -> str:
    """Register the env with Ray Tune/RLlib by name; returns the name."""
    os.environ.setdefault("RLLIB_TEST_NO_TF_IMPORT", "1")
    from ray import tune  # lazy: Ray (and RLlib's import of TensorFlow) only where the env goes to RLlib

    tune.register_env(RLLIB_ENV, make_env)
    return RLLIB_ENV
