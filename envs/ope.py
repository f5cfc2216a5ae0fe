"""Off-policy evaluation that checks itself: IPS, SNIPS and doubly-robust estimates of a target policy's
value from episodes logged by another policy in the simulator, beside the simulated value of the *same*
(stochastic) target policy as the ground truth.

Estimators (per-decision, for episodes of any length; Precup et al. 2000; Jiang & Li 2016, "Doubly
Robust Off-policy Value Evaluation for Reinforcement Learning"). With w_t = min(prod_{t'<=t} pi/mu, clip)
the clipped cumulative importance weight of episode i at step t (w_{-1} = 1; after an episode ends its
weight stays and its rewards are 0):

    IPS    = 1/N sum_i sum_t g^t w_it r_it
    SNIPS  = sum_t g^t (sum_i w_it r_it) / (sum_i w_it)
    DR     = 1/N sum_i sum_t g^t [ w_it (r_it - q(s_it, a_it)) + w_i,t-1 v(s_it) ],  v(s) = sum_a pi(a|s) q(s, a)

q is any model of the target's action values (DR is unbiased for any q when nothing is clipped; a good q
cuts the variance). Clipping trades bias for variance: the report shows how far the truth lies.
IPS and DR carry normal 95% CIs over episodes; SNIPS a bootstrap CI over episodes.

The simulator side: `log_episodes` runs the logging policy and records, per decision, the reward, the
logging propensity mu(a|s), the target's probability pi(a|s) and q / v; `simulate_value` runs the
target policy itself (sampling its actions) for the truth.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from envs.shopping import ShopperSim, SimConfig, logging_policy
from envs.user_model import UserModel

Probs = Callable[[ShopperSim], np.ndarray]          # sim -> action probabilities [N, K] (rows sum to 1)
QModel = Callable[[ShopperSim], np.ndarray]         # sim -> action values [N, K]


@dataclass
class LoggedEpisodes:
    """N logged episodes, per decision, padded to T steps: arrays [N, T]; `mask` is False after the end."""

    reward: np.ndarray
    mu: np.ndarray
    """Logging policy's probability of the logged action."""
    pi: np.ndarray
    """Target policy's probability of the logged action."""
    q: np.ndarray
    """q(s_t, a_t) of the logged action (0 where masked)."""
    v: np.ndarray
    """sum_a pi(a | s_t) q(s_t, a) (0 where masked)."""
    mask: np.ndarray

    def __post_init__(self):
        shapes = {k: np.shape(getattr(self, k)) for k in ("reward", "mu", "pi", "q", "v", "mask")}
        if len(set(shapes.values())) != 1 or len(shapes["mask"]) != 2:
            raise ValueError(f"every field must be [N, T] and the same shape; got {shapes}")
        m = np.asarray(self.mask, bool)
        if (np.asarray(self.mu)[m] <= 0).any():
            raise ValueError("logging propensities mu must be > 0 where the mask is set")

    @property
    def n(self) -> int:
        return int(np.shape(self.mask)[0])


def weights(log: LoggedEpisodes, clip: float | None = None) -> np.ndarray:
    """Cumulative importance weights w_t [N, T], each clipped at `clip` (None: unclipped); ratio 1 after
    an episode's end so its last weight carries on."""
    m = np.asarray(log.mask, bool)
    ratio = np.where(m, np.asarray(log.pi, float) / np.where(m, np.asarray(log.mu, float), 1.0), 1.0)
    w = np.cumprod(ratio, axis=1)
    return w if clip is None else np.minimum(w, clip)


def _discount(log: LoggedEpisodes, gamma: float) -> np.ndarray:
    return gamma ** np.arange(np.shape(log.mask)[1])[None, :]


def ips(log: LoggedEpisodes, clip: float | None = None, gamma: float = 1.0) -> tuple[float, float, np.ndarray]:
    """(estimate, 95% CI half-width, per-episode terms [N])."""
    w = weights(log, clip)
    terms = (_discount(log, gamma) * w * np.where(log.mask, log.reward, 0.0)).sum(1)
    return float(terms.mean()), _ci95(terms), terms


def snips(log: LoggedEpisodes, clip: float | None = None, gamma: float = 1.0, n_boot: int = 300,
          seed: int = 0) -> tuple[float, float]:
    """(estimate, 95% bootstrap CI half-width over episodes)."""
    w = weights(log, clip)
    wr = w * np.where(log.mask, log.reward, 0.0)
    disc = _discount(log, gamma)[0]

    def est(idx: np.ndarray) -> float:
        return float((disc * wr[idx].sum(0) / np.maximum(w[idx].sum(0), 1e-300)).sum())
    value = est(np.arange(log.n))
    rng = np.random.default_rng(seed)
    boot = np.array([est(rng.integers(0, log.n, log.n)) for _ in range(n_boot)]) if n_boot else np.array([value])
    return value, float(1.96 * boot.std(ddof=1)) if n_boot > 1 else float("nan")


def doubly_robust(log: LoggedEpisodes, clip: float | None = None,
                  gamma: float = 1.0) -> tuple[float, float, np.ndarray]:
    """(estimate, 95% CI half-width, per-episode terms [N])."""
    w = weights(log, clip)
    w_prev = np.concatenate([np.ones((log.n, 1)), w[:, :-1]], axis=1)
    m = np.asarray(log.mask, bool)
    step = np.where(m, w * (log.reward - log.q) + w_prev * log.v, 0.0)
    terms = (_discount(log, gamma) * step).sum(1)
    return float(terms.mean()), _ci95(terms), terms


def _ci95(x: np.ndarray) -> float:
    return float(1.96 * x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


# -- the simulator side ------------------------------------------------------------------------------
def epsilon_greedy(actor: Callable[[ShopperSim], np.ndarray], eps: float) -> Probs:
    """pi(a | s) of `actor` made eps-greedy: 1 - eps + eps / K on its action, eps / K elsewhere."""
    def probs(sim: ShopperSim) -> np.ndarray:
        k = sim.cand.shape[1]
        p = np.full(sim.cand.shape, eps / k)
        p[np.arange(sim.n), actor(sim)] += 1.0 - eps
        return p
    return probs


def sample(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One action per row of probabilities [N, K]."""
    return (probs.cumsum(1) < rng.random((len(probs), 1))).sum(1).clip(0, probs.shape[1] - 1)


def log_episodes(um: UserModel, cfg: SimConfig, target: Probs, q_model: QModel | None, n: int, seed: int,
                 temperature: float = 0.1) -> tuple[LoggedEpisodes, np.ndarray]:
    """n episodes of `logging_policy` (softmax of the blended engine rank at `temperature`), recorded for
    OPE of `target`. Returns (the log, each episode's logged return [N])."""
    sim = ShopperSim(um, cfg, n=n, seed=seed)
    rng = np.random.default_rng(seed)
    sim.reset()
    alive = np.ones(n, bool)
    sim.active = alive
    cols = {k: [] for k in ("reward", "mu", "pi", "q", "v", "mask")}
    rows = np.arange(n)
    while alive.any():
        p = target(sim)
        qa = q_model(sim) if q_model is not None else np.zeros(sim.cand.shape)
        a, mu = logging_policy(sim, rng, temperature)
        r, te, tr, _ = sim.step(a)
        for k, val in (("reward", r), ("mu", mu), ("pi", p[rows, a]), ("q", qa[rows, a]),
                       ("v", (p * qa).sum(1)), ("mask", alive.copy())):
            cols[k].append(np.where(alive, val, 0.0) if k != "mask" else val)
        alive &= ~(te | tr)
    sim.active = np.ones(n, bool)
    log = LoggedEpisodes(**{k: np.stack(v, 1) for k, v in cols.items()})
    return log, (log.reward * log.mask).sum(1)


def simulate_value(um: UserModel, cfg: SimConfig, target: Probs, n: int, seed: int) -> np.ndarray:
    """Returns [N] of n episodes run by the (stochastic) target policy itself: the ground truth."""
    sim = ShopperSim(um, cfg, n=n, seed=seed)
    rng = np.random.default_rng(seed + 1)
    sim.reset()
    ret, alive = np.zeros(n), np.ones(n, bool)
    sim.active = alive
    while alive.any():
        r, te, tr, _ = sim.step(sample(target(sim), rng))
        ret += r * alive
        alive &= ~(te | tr)
    sim.active = np.ones(n, bool)
    return ret


def check(um: UserModel, cfg: SimConfig, target: Probs, q_model: QModel | None, n: int = 20000,
          seed: int = 7, clip: float | None = 100.0, temperature: float = 0.1) -> dict:
    """IPS / SNIPS / DR of `target` from n logged episodes beside its simulated value on other seeds."""
    log, logged = log_episodes(um, cfg, target, q_model, n, seed, temperature)
    truth = simulate_value(um, cfg, target, n, seed + 1000)
    i, i_ci, _ = ips(log, clip)
    s, s_ci = snips(log, clip)
    d, d_ci, _ = doubly_robust(log, clip)
    w = weights(log, None)[np.asarray(log.mask, bool)]
    return {"ope_truth": float(truth.mean()), "ope_truth_ci95": _ci95(truth), "ope_ips": i, "ope_ips_ci95": i_ci,
            "ope_snips": s, "ope_snips_ci95": s_ci, "ope_dr": d, "ope_dr_ci95": d_ci,
            "ope_logging_value": float(logged.mean()), "ope_episodes": n, "ope_clip": clip,
            "ope_clipped_share": float((w > clip).mean()) if clip else 0.0,
            "ope_min_mu": float(np.asarray(log.mu)[np.asarray(log.mask, bool)].min()),
            "ope_logging_temperature": temperature}
