"""Policies run in the vectorized simulator, and their evaluation: the trainer's final greedy evaluation
of the DQN and the benchmark's baselines share these functions.

A policy here is `actor(sim: ShopperSim) -> actions [N]` (candidate positions), for all N shoppers at once.

Myopic baselines, strongest last. All but the oracle see only what the DQN sees (the observation: the
history of shown items with their responses, the K candidates' ids and features -- engine ranks, price,
same category):
- `greedy(j)` / `blended`: argmax of one engine's rank (or of their mean). Stateless: after a skip they
  show the same item again.
- `fresh(score)`: the same ranking, never re-showing an item the shopper skipped within the visible
  history (while any candidate was not skipped there).
- `ExpectedRevenueGreedy`: P(click) x (view + P(convert | click) x (cart or price-weighted purchase))
  from response models fitted on a logged session sample of the logging policy (the CTR/CVR models a
  production team would fit on impressions), over the same features + the history matches; never
  re-shows skipped items.
- `myopic_oracle`: the immediate expected reward from the simulator's hidden state (true click and
  conversion probabilities) -- a ceiling for every myopic policy, not a deployable one.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from envs.shopping import HIST_SKIP, ShopperSim, SimConfig, logging_policy, run_episodes
from envs.user_model import UserModel
from models.dqn.prior import ResponsePrior, RewardTerms, one_thread
from models.dqn.prior import response_features as prior_features
from reccore.constants import CART, PURCHASE, VIEW

Actor = Callable[[ShopperSim], np.ndarray]


def evaluate_policy(um: UserModel, cfg: SimConfig, actor: Actor, n_episodes: int, seed: int = 0,
                    expected_rewards: bool = False) -> dict:
    """`n_episodes` shoppers, one episode each (one session, or a window of sessions when
    cfg.sessions_max > 1): per-episode return, length, purchases, engaged items, sessions. With
    `expected_rewards`, each step's return is its expected reward given the hidden state (the same
    expectation as the drawn rewards -- an unbiased estimate of the same value with about half the
    confidence interval in the 8-session simulator); the trajectories are drawn as usual."""
    sim = ShopperSim(um, cfg, n=n_episodes, seed=seed)
    sim.expected_rewards = expected_rewards
    return run_episodes(sim, actor, np.random.default_rng(seed))


def dqn_actor(policy, chunk: int = 4096) -> Actor:
    """Greedy actor of a `models.dqn.policy.DecisionPolicy` (argmax of its Q-values), in chunks of rows
    so memory stays flat for many shoppers."""
    def act(sim: ShopperSim) -> np.ndarray:
        return dqn_q_values(policy, sim, chunk).argmax(1)
    return act


def dqn_q_values(policy, sim: ShopperSim, chunk: int = 4096) -> np.ndarray:
    """Q-values [N, K] of a DecisionPolicy for the active shoppers' current candidates (0 elsewhere)."""
    out = np.zeros(sim.cand.shape, np.float32)
    rows = np.flatnonzero(sim.active)
    for s in range(0, len(rows), chunk):
        r = rows[s:s + chunk]
        out[r] = policy.q_values(sim.hist_items[r], sim.hist_events[r], sim.feats[r], sim.cand[r])
    return out


def greedy(j: int) -> Actor:
    """Greedy by candidate feature column j (0..3: one engine's rank-normalized score)."""
    return lambda sim: sim.feats[:, :, j].argmax(1)


def blended(sim: ShopperSim) -> np.ndarray:
    """Greedy by the mean of the four engines' rank-normalized scores."""
    return sim.feats[:, :, :4].mean(2).argmax(1)


# -- what the history says about each candidate (the DQN's "seen / skipped / engaged" counts) ----------
def history_matches(sim: ShopperSim) -> tuple[np.ndarray, np.ndarray]:
    """(shown [N, K], skipped [N, K]): candidate k appears in the visible history at all / as a skip."""
    same = sim.cand[:, :, None] == sim.hist_items[:, None, :]                  # [N, K, L]
    skipped = same & (sim.hist_events == HIST_SKIP)[:, None, :]
    return same.any(-1), skipped.any(-1)


def mask_skipped(scores: np.ndarray, skipped: np.ndarray) -> np.ndarray:
    """Scores with skipped candidates pushed below every other one (rows where all were skipped keep
    their order: something must be shown)."""
    low = scores.min(1, keepdims=True) - 1.0 - (scores.max(1, keepdims=True) - scores.min(1, keepdims=True))
    return np.where(skipped & ~skipped.all(1, keepdims=True), low, scores)


def fresh(score: Callable[[ShopperSim], np.ndarray]) -> Actor:
    """Argmax of score(sim) [N, K] that never re-shows an item skipped within the visible history."""
    def act(sim: ShopperSim) -> np.ndarray:
        return mask_skipped(score(sim), history_matches(sim)[1]).argmax(1)
    return act


def engine_score(j: int) -> Callable[[ShopperSim], np.ndarray]:
    return lambda sim: sim.feats[:, :, j]


def blend_score(sim: ShopperSim) -> np.ndarray:
    return sim.feats[:, :, :4].mean(2)


# -- expected-revenue greedy -------------------------------------------------------------------------
def response_features(sim: ShopperSim) -> np.ndarray:
    """Per-candidate inputs of the response models [N, K, F + 4] (models.dqn.prior.response_features): the
    DQN's candidate features, the history matches (shown, skipped), and the candidate's log price relative
    to the last engaged item's and to the mean of the engaged history items' (what serving knows too)."""
    lp = sim.um.log_price
    return prior_features(sim.hist_items, sim.hist_events, sim.feats, sim.cand, lp[sim.cand], lp)


class ExpectedRevenueGreedy:
    """Myopic expected reward from fitted response models (models.dqn.prior.ResponsePrior):

        E[r | show k] = P(click) * (view + P(convert | click) * ((1 - s) * cart + s * value(price_k)))
                        + (1 - P(click)) * skip,

    s = P(purchase | convert) measured on the same logged sample; value = the reward's price-weighted
    purchase. P(click) and P(convert | click) are gradient-boosted classifiers (scikit-learn) over
    `response_features`, fitted on the impressions of `n_sessions` sessions of the logging policy.
    Skipped items are never re-shown (`mask_skipped`). The same prior is the DQN's starting point
    (trainers/train_dqn.py --prior expected_revenue)."""

    def __init__(self, prior: ResponsePrior):
        self.prior = prior

    @classmethod
    def fit(cls, um: UserModel, cfg: SimConfig, n_sessions: int = 6000, seed: int = 0,
            max_iter: int = 60) -> "ExpectedRevenueGreedy":
        from sklearn.ensemble import HistGradientBoostingClassifier  # lazy: only where the baseline is fitted

        sim = ShopperSim(um, cfg, n=n_sessions, seed=seed)
        rng = np.random.default_rng(seed)
        sim.reset()
        xs, resps = [], []
        alive = np.ones(sim.n, bool)
        while alive.any():
            a, _ = logging_policy(sim, rng)
            x = response_features(sim)[np.arange(sim.n), a]
            _, te, tr, resp = sim.step(a)
            xs.append(x[alive])
            resps.append(resp[alive])
            alive &= ~(te | tr)
        x, resp = np.concatenate(xs), np.concatenate(resps)
        click = resp >= VIEW
        conv = resp[click] >= CART
        if click.sum() < 50 or conv.sum() < 10 or conv.all():
            raise ValueError(f"too few logged clicks ({click.sum()}) or conversions ({conv.sum()}) to fit the "
                             "response models; raise n_sessions")
        kw = dict(max_iter=max_iter, learning_rate=0.1, max_leaf_nodes=15, random_state=seed)
        with one_thread():
            cm = HistGradientBoostingClassifier(**kw).fit(x, click)
            vm = HistGradientBoostingClassifier(**kw).fit(x[click], conv)
        rc = cfg.reward
        terms = RewardTerms(skip=rc.skip, view=rc.view, cart=rc.cart, purchase=rc.purchase,
                            price_weight=rc.price_weight, price_cap=rc.price_cap,
                            median_price=float(um.cal.median_price),
                            purchase_share=float((resp == PURCHASE).sum() / max((resp >= CART).sum(), 1)))
        return cls(ResponsePrior(cm, vm, terms, um.log_price))

    def expected_reward(self, sim: ShopperSim) -> np.ndarray:
        """[N, K] expected immediate reward of each candidate (active rows; 0 elsewhere)."""
        return prior_values(self.prior, sim)

    def __call__(self, sim: ShopperSim) -> np.ndarray:
        return mask_skipped(self.expected_reward(sim), history_matches(sim)[1]).argmax(1)


def prior_values(prior: ResponsePrior, sim: ShopperSim) -> np.ndarray:
    """[N, K] the prior's expected reward for the active rows (0 elsewhere)."""
    rows = np.flatnonzero(sim.active)
    out = np.zeros(sim.cand.shape, np.float32)
    if len(rows):
        out[rows] = prior.expected_reward(sim.hist_items[rows], sim.hist_events[rows], sim.feats[rows],
                                          sim.cand[rows])
    return out


# -- the hidden-state ceiling ------------------------------------------------------------------------
def oracle_expected_reward(sim: ShopperSim) -> np.ndarray:
    """[N, K] immediate expected reward from the hidden state (true click prob, conversion prob, value)."""
    n, K = sim.cand.shape
    value = np.zeros((n, K))
    rc, sh = sim.cfg.reward, sim.um.cal.purchase_share
    for k in range(K):
        it = sim.cand[:, k]
        pc = sim.click_prob(it)
        same = sim.um.item_cat[it] == sim.um.item_cat[sim.last]
        ni = np.where(same, sim.interest, sim.interest * sim.cfg.switch_keep)
        ni = ni + sim.alpha * (1 - ni)
        q = sim.conversion_prob(it, ni)
        value[:, k] = (pc * ((1 - q) * rc.view + q * (sh * sim.purchase_value(it) + (1 - sh) * rc.cart))
                       + (1 - pc) * rc.skip)
    return value


def myopic_oracle(sim: ShopperSim) -> np.ndarray:
    """Argmax of the hidden-state immediate expected reward: a ceiling for myopic policies."""
    return oracle_expected_reward(sim).argmax(1)


def myopic_baselines(um: UserModel, cfg: SimConfig, seed: int = 0, fit_sessions: int = 6000) -> dict[str, Actor]:
    """Every deployable myopic baseline by name (the benchmark takes the best of them)."""
    from reccore.constants import ENGINE_ROLES

    out: dict[str, Actor] = {"popularity": greedy(3)}
    for j, e in enumerate(ENGINE_ROLES[:3]):
        out[f"greedy_{e}"] = greedy(j)
    out["greedy_blend"] = blended
    for j, e in enumerate(ENGINE_ROLES):
        out[f"fresh_{e}"] = fresh(engine_score(j))
    out["fresh_blend"] = fresh(blend_score)
    out["expected_revenue"] = ExpectedRevenueGreedy.fit(um, cfg, n_sessions=fit_sessions, seed=seed)
    return out


NEVER_RESHOWS_SKIPPED = ("fresh_", "expected_revenue")
"""Name prefixes of the baselines that claim never to re-show an item skipped in the visible history."""


def ci95(x: np.ndarray) -> float:
    """Half-width of the normal-approximation 95% confidence interval of the mean."""
    return float(1.96 * x.std(ddof=1) / np.sqrt(len(x)))
