"""Policies run in the vectorized simulator, and their evaluation: the trainer's final greedy evaluation
of the DQN and the benchmark's baselines share these functions.

A policy here is `actor(sim: ShopperSim) -> actions [N]` (candidate positions), for all N shoppers at once.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from envs.shopping import ShopperSim, SimConfig, run_episodes
from envs.user_model import UserModel

Actor = Callable[[ShopperSim], np.ndarray]


def evaluate_policy(um: UserModel, cfg: SimConfig, actor: Actor, n_episodes: int, seed: int = 0) -> dict:
    """One session per shopper, `n_episodes` shoppers: per-episode return, length, purchases, engaged."""
    sim = ShopperSim(um, cfg, n=n_episodes, seed=seed)
    return run_episodes(sim, actor, np.random.default_rng(seed))


def dqn_actor(policy, chunk: int = 4096) -> Actor:
    """Greedy actor of a `models.dqn.policy.DecisionPolicy` (argmax of its Q-values), in chunks of rows
    so memory stays flat for many shoppers."""
    def act(sim: ShopperSim) -> np.ndarray:
        out = np.empty(sim.n, np.int64)
        for s in range(0, sim.n, chunk):
            sl = slice(s, s + chunk)
            q = policy.q_values(sim.hist_items[sl], sim.hist_events[sl], sim.feats[sl], sim.cand[sl])
            out[sl] = q.argmax(1)
        return out
    return act


def greedy(j: int) -> Actor:
    """Greedy by candidate feature column j (0..3: one engine's rank-normalized score)."""
    return lambda sim: sim.feats[:, :, j].argmax(1)


def blended(sim: ShopperSim) -> np.ndarray:
    """Greedy by the mean of the four engines' rank-normalized scores."""
    return sim.feats[:, :, :4].mean(2).argmax(1)


def ci95(x: np.ndarray) -> float:
    """Half-width of the normal-approximation 95% confidence interval of the mean."""
    return float(1.96 * x.std(ddof=1) / np.sqrt(len(x)))
