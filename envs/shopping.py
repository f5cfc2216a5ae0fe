"""The shopping simulator: one shopper's session as a Gymnasium env, and N shoppers stepped as arrays.

Each step the shopper's state yields K candidates from real retrieval sources (the fitted next-item
model's top successors, co-occurrence with the earlier history, same-category items, popular items),
each scored by all four engine proxies; the agent shows one (action = candidate position); the shopper
skips, views, carts or buys it; the session ends when the shopper leaves.

User dynamics (hidden state per shopper) and why each exists -- they make the myopic choice wrong:
- Preference: P(click j | last item i) follows the next-item model fitted on the log (envs/user_model.py)
  times a per-shopper taste factor (people differ; the policy cannot see it) and a price penalty
  above the shopper's reference price (set from the session's first item and the log's in-session price
  spread): shoppers browse near their budget.
- Interest builds toward a purchase: each viewed item of the current category raises interest I by
  alpha*(1-I); switching category keeps only part of it (a new need restarts the comparison); buying
  resets it (the need is met). Conversion per view = calibrated rate * I / mean-interest, so a purchase
  comes after comparing a few items -- alpha is set so I reaches 1/2 after the log's mean number of views
  before a purchase. Myopic effect: a relevant cheap item now makes the expensive one convert later.
- Fatigue: every skip adds 1, re-showing an item already shown in the session adds `repeat_fatigue`,
  a view halves it. Logs hold no impressions, so these are config values, not calibrated.
- Patience: after a view/cart the shopper leaves with 1 - (1 - s * base_leave) * exp(-s * fatigue_leave * F),
  after a skip with 1 - exp(-s * fatigue_leave * F); base_leave = 1 / (mean distinct items per real
  session); leaving after a purchase has the log's rate. Myopic effect: a skipped recommendation costs
  the rest of the session, not just this step.
- Calibrated session length: sessions under the logging policy have the log's mean number of engaged
  items. `click_max` is fitted for it first; when even the highest click_max leaves sessions short (a
  shopper who clicks what is shown only sometimes, and tires of skips, ends sooner than one who likes
  everything), the leave scale s (1 otherwise) is fitted too (`fit_engagement`).
Reward per response: skip < view < cart < purchase, purchases weighted by (price / median price)^w.

The horizon (`sessions_max` > 1; 1 is the single-session simulator): an episode is one shopper over a
window of up to `sessions_max` sessions. When a session ends the shopper comes back for another with

    P(return) = sigmoid(b + w_buy * purchases + w_click * click_share + w_repeat * repeat_share
                        + w_fatigue * fatigue at the end)

(click_share, repeat_share: of the session's shows), b fitted so that sessions of the logging policy
return at `return_rate` on average (`fit_return_intercept`). What the log backs: the mean return rate and
the purchase effect (REES46: a session's user starts another one later in the log 11% of the time, 14%
after a purchase; a 2h50m sample, so a lower bound) and how often the next session starts a new need
(34% of returns start in a category the previous session did not touch). What it cannot back (logs hold
no impressions): the effects of relevant, repeated and tiring shows -- named `SimConfig` fields below.
Between sessions interest drifts: the next session starts from a real session start of the log (a new
need) with `new_interest`, otherwise from an item of the category of one of the last engaged items (the
old need); the reference price follows the new first item; fatigue carries over in part; the same
person keeps the same taste; the history (the policy's observation) runs on across sessions.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from envs.user_model import UserModel
from models.dqn.features import ENGINES, N_FEATURES, rank_normalize_rows
from reccore.constants import CART, PURCHASE, VIEW

SKIP = -1                                    # response code of a skip; VIEW/CART/PURCHASE are event codes
HIST_SKIP = 3                                # history event code of a skipped (shown, not clicked) item
ENV_ID = "recsys/Shopping-v0"
RLLIB_ENV = "recsys-shopping"


@dataclass
class RewardConfig:
    """Reward per response type."""

    skip: float = 0.0
    """Shown and ignored."""
    view: float = 0.05
    """Clicked / viewed."""
    cart: float = 0.3
    """Added to cart (strongest event of the impression)."""
    purchase: float = 1.0
    """Bought; multiplied by (price / median price) ** price_weight."""
    price_weight: float = 1.0
    """0 = every purchase counts the same; 1 = revenue-proportional."""
    price_cap: float = 10.0
    """Cap of the price multiplier (one luxury item should not dominate a return estimate)."""


@dataclass
class SimConfig:
    """Simulator settings; everything not here is calibrated from the log (envs/user_model.py)."""

    n_candidates: int = 10
    """K: candidates per step = the action space."""
    history_len: int = 16
    """L: history items in the observation (shown items incl. skips; most recent last, -1 pad left)."""
    max_steps: int = 30
    """Episode truncation."""
    slots: tuple = (3, 2, 3, 2)
    """Candidates per source: next-item model, co-occurrence with earlier history, same category, popular."""
    click_max: float | None = None
    """P(click) of the shopper's most wanted next item. Logs hold no impressions, so by default (None) it
    is fitted: the value for which sessions under the logging policy have the log's mean number of
    engaged items (`fit_engagement`)."""
    pref_temperature: float = 0.5
    """click ~ (P(j|i) / P(best|i)) ** temperature: how sharply preference falls off the favourite."""
    taste_sigma: float = 0.5
    """Spread of the per-shopper, per-item taste factor (log scale)."""
    price_sensitivity: float = 1.0
    """Click and conversion fall as exp(-s * log(price / reference price)) above the reference."""
    repeat_click: float = 0.3
    """Click multiplier of an item already shown this session (the shopper already passed on it)."""
    repeat_fatigue: float = 1.0
    """Extra fatigue of re-showing an item (annoyance on top of the skip)."""
    fatigue_leave: float = 0.35
    """Leave probability grows as 1 - (1 - base) * exp(-fatigue_leave * fatigue)."""
    leave_scale: float | None = None
    """s, multiplying base_leave and fatigue_leave. None: 1, or fitted with click_max when click_max is
    None and the click_max fit alone cannot reach the log's session length (`fit_engagement`)."""
    switch_keep: float = 0.5
    """Share of interest kept when the shopper views an item of another category."""
    # -- the horizon: sessions over a window (see the module docstring) --
    sessions_max: int = 1
    """Sessions per episode (the window). 1: one session per episode (the single-session simulator)."""
    return_rate: float | None = None
    """Mean P(return) after a session of the logging policy. None: the log's own rate (Calibration.return_rate;
    REES46 head 0.11 over a 2h50m window, a lower bound for longer windows), 0.1 if the log has no sessions.
    An assumption whenever set: the log's window is shorter than any product's."""
    return_purchase: float | None = None
    """Logit of returning per purchase in the session. None: the log's log odds ratio of returning after a
    purchase vs without (Calibration.return_logit_purchase; REES46 head 0.28 from 200 purchase sessions),
    0 when the log cannot tell."""
    return_click: float = 2.0
    """Logit of returning per unit of the session's click share (relevant shows). Assumption: logs hold no
    impressions, so no log measures it."""
    return_repeat: float = -2.0
    """Logit of returning per unit of the session's share of repeated shows (an item shown again in the
    session). Assumption, as return_click."""
    return_fatigue: float = -0.25
    """Logit of returning per unit of fatigue at the session's end (skips not since relieved by views).
    Assumption, as return_click."""
    return_intercept: float | None = None
    """b of the return model. None: fitted so that the logging policy's sessions return at return_rate."""
    new_interest: float | None = None
    """P(a returning shopper starts from a new need: a real session start drawn from the log) rather than from
    the category of a recently engaged item. None: the log's share of returns whose first item's category
    the previous session did not touch (Calibration.next_session_new_category; REES46 head 0.34), 0.5 when
    the log cannot tell."""
    fatigue_carry: float = 0.5
    """Share of the fatigue at a session's end that the next session starts with. Assumption."""
    reward: RewardConfig = field(default_factory=RewardConfig)


class ShopperSim:
    """N shoppers stepped together with numpy (the vectorized simulator)."""

    def __init__(self, um: UserModel, cfg: SimConfig | None = None, n: int = 1, seed: int | None = None):
        self.um, self.cfg, self.n = um, cfg or SimConfig(), n
        if sum(self.cfg.slots) != self.cfg.n_candidates:
            raise ValueError(f"slots {self.cfg.slots} must add up to n_candidates={self.cfg.n_candidates}")
        self.rng = np.random.default_rng(seed)
        if self.cfg.click_max is None:
            click_max, leave_scale = fit_engagement(um, self.cfg)
            self.cfg = dataclasses.replace(self.cfg, click_max=click_max, leave_scale=leave_scale)
        self.leave_scale = 1.0 if self.cfg.leave_scale is None else float(self.cfg.leave_scale)
        if self.cfg.sessions_max < 1:
            raise ValueError(f"sessions_max must be >= 1 (1 = single-session episodes); got {self.cfg.sessions_max}")
        if self.cfg.sessions_max > 1 and self.cfg.return_intercept is None:
            self.cfg = dataclasses.replace(self.cfg, return_intercept=fit_return_intercept(um, self.cfg))
        self.return_purchase = resolve(self.cfg.return_purchase, um.cal.return_logit_purchase, 0.0)
        self.new_interest = resolve(self.cfg.new_interest, um.cal.next_session_new_category, 0.5)
        cal = um.cal
        self.base_leave = 1.0 / max(cal.mean_session_items, 1.0)
        self.alpha = 1.0 - 0.5 ** (1.0 / max(cal.views_before_purchase, 1.0))
        # mean interest at a view of a real session: session lengths ~ geometric with the log's mean
        k = np.arange(200)
        p_len = self.base_leave * (1 - self.base_leave) ** k                 # P(len = k + 1)
        interest_at = 1 - (1 - self.alpha) ** (k + 1)                           # interest at the (k+1)-th view
        views_at = np.cumsum(p_len[::-1])[::-1]                                 # P(len >= k + 1)
        self.mean_interest = float((interest_at * views_at).sum() / views_at.sum())
        self.price = np.exp(um.log_price)
        # P(best next item | i) for every i: normaliser of the click model
        t = um.trans
        all_i = np.arange(um.n_items)
        top = np.where(t.nbr[:, 0] >= 0, t.nbr[:, 0], 0)
        best_backoff = ((t.cat_trans[t.item_cat][:, t.item_cat] * t.in_cat[None, :]).max(1)
                        if um.n_items <= 4000 else None)
        if best_backoff is None:  # big catalogs: max over categories of (cat transition x best in-category share)
            best_in = np.zeros(t.cat_trans.shape[0], np.float32)
            np.maximum.at(best_in, t.item_cat, t.in_cat)
            best_backoff = (t.cat_trans * best_in[None, :]).max(1)[t.item_cat]
        lam = t.row_n / (t.row_n + t.kappa)
        self.p_top = np.maximum(t.prob(all_i, top[:, None])[:, 0], (1 - lam) * best_backoff).astype(np.float32)
        L, K = self.cfg.history_len, self.cfg.n_candidates
        self.hist_items = np.full((n, L), -1, np.int64)
        self.hist_events = np.zeros((n, L), np.int64)
        self.recent = np.full((n, 3), -1, np.int64)  # last 3 engaged items, most recent last
        self.last = np.zeros(n, np.int64)
        self.interest = np.zeros(n)
        self.fatigue = np.zeros(n)
        self.log_ref = np.zeros(n)
        self.taste_key = np.zeros(n, np.uint64)
        self.steps = np.zeros(n, np.int64)
        self.cand = np.zeros((n, K), np.int64)
        self.feats = np.zeros((n, K, N_FEATURES), np.float32)
        self.scores = {}
        # the horizon: session index in the episode, and this session's tallies for the return model
        self.session = np.zeros(n, np.int64)
        self.s_shows, self.s_clicks = np.zeros(n), np.zeros(n)
        self.s_repeats, self.s_buys = np.zeros(n), np.zeros(n)
        self.end_score = np.zeros(n)   # return-model score (without b) of each row's last ended session
        self.prior = None  # a models.dqn.prior.ResponsePrior: observations carry its cand_prior when set
        # Training signal only (env_config "train_reward": "expected"): each step pays its expected reward
        # given the hidden state instead of a sampled one. Every policy's expected return is unchanged (tower
        # property), so the optimal policy is too, but a purchase worth 10x the median price no longer lands
        # in a TD target as a rare jump: the regression target of the immediate part has no noise left.
        self.expected_rewards = False
        self.active = np.ones(n, bool)  # rows a driver still needs actions for (run_episodes clears ended
        #                                 ones; an expensive actor may answer only these, anything elsewhere)

    # -- sessions ---------------------------------------------------------------------------------
    def reset(self, mask: np.ndarray | None = None) -> None:
        """Start new sessions for the rows in `mask` (all by default) from real session starts."""
        idx = np.arange(self.n) if mask is None else np.flatnonzero(mask)
        if len(idx) == 0:
            return
        m, rng, um = len(idx), self.rng, self.um
        seed_items = um.start_items[rng.integers(0, len(um.start_items), m)]
        self.hist_items[idx] = -1
        self.hist_events[idx] = 0
        self.hist_items[idx, -1] = seed_items
        self.recent[idx] = -1
        self.recent[idx, -1] = seed_items
        self.last[idx] = seed_items
        self.interest[idx] = self.alpha  # the first view
        self.fatigue[idx] = 0.0
        self.log_ref[idx] = um.log_price[seed_items] + rng.normal(0.0, um.cal.log_price_spread, m)
        self.taste_key[idx] = rng.integers(1, 2**62, m, dtype=np.int64).astype(np.uint64)
        self.steps[idx] = 0
        self.session[idx] = 0
        self._clear_tallies(idx)
        self._candidates(idx)

    def _clear_tallies(self, idx: np.ndarray) -> None:
        for a in (self.s_shows, self.s_clicks, self.s_repeats, self.s_buys):
            a[idx] = 0.0

    def satisfaction(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Return-model score of the rows' current sessions, without the intercept b."""
        rows = np.arange(self.n) if rows is None else rows
        cfg, shows = self.cfg, np.maximum(self.s_shows[rows], 1.0)
        return (self.return_purchase * self.s_buys[rows] + cfg.return_click * self.s_clicks[rows] / shows
                + cfg.return_repeat * self.s_repeats[rows] / shows + cfg.return_fatigue * self.fatigue[rows])

    def return_prob(self, rows: np.ndarray | None = None) -> np.ndarray:
        """P(the shopper comes back for another session) if their current session ended now."""
        b = self.cfg.return_intercept or 0.0
        return 1.0 / (1.0 + np.exp(-(b + self.satisfaction(rows))))

    def next_session(self, idx: np.ndarray) -> None:
        """Start the rows' next session: a new need (a real session start) with P(new_interest), else an
        item of the category of one of the last engaged items; the history runs on."""
        if len(idx) == 0:
            return
        m, rng, um = len(idx), self.rng, self.um
        r = self.recent[idx]
        pick = r[np.arange(m), rng.integers(0, 3, m)]
        pick = np.where(pick >= 0, pick, self.last[idx])
        same_need = self._same_category_sample(um.item_cat[pick], 1)[:, 0]
        fresh = um.start_items[rng.integers(0, len(um.start_items), m)]
        seed_items = np.where(rng.random(m) < self.new_interest, fresh, same_need)
        self.hist_items[idx, :-1] = self.hist_items[idx, 1:]
        self.hist_events[idx, :-1] = self.hist_events[idx, 1:]
        self.hist_items[idx, -1] = seed_items
        self.hist_events[idx, -1] = VIEW
        self.recent[idx] = np.concatenate([r[:, 1:], seed_items[:, None]], 1)
        self.last[idx] = seed_items
        self.interest[idx] = self.alpha
        self.fatigue[idx] *= self.cfg.fatigue_carry
        self.log_ref[idx] = um.log_price[seed_items] + rng.normal(0.0, um.cal.log_price_spread, m)
        self.steps[idx] = 0
        self.session[idx] += 1
        self._clear_tallies(idx)
        self._candidates(idx)

    def _engaged(self, idx: np.ndarray, items: np.ndarray) -> np.ndarray:
        h, e = self.hist_items[idx], self.hist_events[idx]
        return ((items[:, :, None] == h[:, None, :]) & (e < HIST_SKIP)[:, None, :]).any(-1)

    def _same_category_sample(self, cats: np.ndarray, k: int) -> np.ndarray:
        um = self.um
        lo, hi = um.cat_start[cats], um.cat_start[cats + 1]
        u = self.rng.random((len(cats), k)) ** 2                      # skewed toward popular items
        return um.cat_items[lo[:, None] + (u * (hi - lo)[:, None]).astype(np.int64)]

    def _candidates(self, idx: np.ndarray) -> None:
        """K candidates from four retrieval sources + their engine scores and features."""
        um, rng, cfg = self.um, self.rng, self.cfg
        n_seq, n_disc, n_sim, n_pop = cfg.slots
        last = self.last[idx]
        m = len(idx)
        cat_last = um.item_cat[last]
        # next-item model: best successors not already engaged
        pool = um.trans.nbr[last, :8]
        bad = (pool < 0) | self._engaged(idx, np.maximum(pool, 0))
        order = np.argsort(bad * 100 + np.arange(8), axis=1, kind="stable")[:, :n_seq]
        seq = np.take_along_axis(pool, order, 1)
        seq_bad = np.take_along_axis(bad, order, 1)
        seq = np.where(seq_bad, self._same_category_sample(cat_last, n_seq), seq)
        # co-occurrence with an earlier engaged item
        r = self.recent[idx]
        pick = r[np.arange(m), rng.integers(0, 3, m)]
        pick = np.where(pick >= 0, pick, last)
        dpool = um.trans.nbr[pick, :8]
        dsel = np.take_along_axis(dpool, rng.integers(0, 8, (m, n_disc)), 1)
        disc = np.where(dsel >= 0, dsel, um.popular[rng.integers(0, len(um.popular), (m, n_disc))])
        sim = self._same_category_sample(cat_last, n_sim)
        pop = um.popular[(rng.random((m, n_pop)) ** 2 * len(um.popular)).astype(np.int64)]
        cand = np.concatenate([seq, disc, sim, pop], axis=1)          # [m, K]
        self.cand[idx] = cand
        # engine scores (raw), one per source, for every candidate
        p_last = um.trans.prob(last, cand)
        valid = r >= 0
        p_hist = sum(um.trans.prob(np.maximum(r[:, j], 0), cand) * valid[:, j:j + 1] for j in range(3))
        p_hist = p_hist / np.maximum(valid.sum(1, keepdims=True), 1)
        lp = um.log_price[cand]
        simil = ((um.item_cat[cand] == cat_last[:, None]) + 0.5 * (um.brand[cand] == um.brand[last][:, None])
                 - 0.5 * np.abs(lp - um.log_price[last][:, None]))
        scores = {"sequence": np.log(p_last + 1e-12), "discovery": np.log(p_hist + 1e-12), "similarity": simil,
                  "popularity": np.log1p(um.counts[cand])}
        for k_, v in scores.items():
            self.scores.setdefault(k_, np.zeros((self.n, cfg.n_candidates)))[idx] = v
        f = self.feats
        for j, k_ in enumerate(ENGINES):
            f[idx, :, j] = rank_normalize_rows(scores[k_])
        f[idx, :, 4] = np.log1p(np.exp(lp)) if um.has_price else 0.0
        f[idx, :, 5] = um.item_cat[cand] == cat_last[:, None]
        f[idx, :, 6] = 1.0
        f[idx, :, 7] = 1.0 if um.has_price else 0.0

    # -- one step for every row -------------------------------------------------------------------
    def click_prob(self, items: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """P(click) of showing items [m] to the shoppers `rows` (all by default) in their current state."""
        rows = np.arange(self.n) if rows is None else rows
        um, cfg = self.um, self.cfg
        last = self.last[rows]
        pref = np.minimum(um.trans.prob(last, items[:, None])[:, 0] / self.p_top[last], 1.0)
        # per-shopper taste: a deterministic hash of (shopper, item) -> normal-ish noise, mean factor ~1
        h = ((self.taste_key[rows] ^ (items.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)))
             * np.uint64(0xBF58476D1CE4E5B9))
        u = ((h >> np.uint64(11)).astype(np.float64) / 2.0**53)
        taste = np.exp(cfg.taste_sigma * (u - 0.5) * 3.46 - 0.5 * cfg.taste_sigma**2)
        over = np.maximum(um.log_price[items] - self.log_ref[rows], 0.0)
        shown = (self.hist_items[rows] == items[:, None]).any(1)
        p = cfg.click_max * pref**cfg.pref_temperature * taste * np.exp(-cfg.price_sensitivity * over)
        return np.minimum(np.where(shown, p * cfg.repeat_click, p), 0.95)

    def conversion_prob(self, items: np.ndarray, interest: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        rows = np.arange(self.n) if rows is None else rows
        over = np.maximum(self.um.log_price[items] - self.log_ref[rows], 0.0)
        q = self.um.cal.conv_per_view * interest / self.mean_interest * np.exp(-self.cfg.price_sensitivity * over)
        return np.minimum(q, 0.9)

    def purchase_value(self, items: np.ndarray) -> np.ndarray:
        rc = self.cfg.reward
        mult = np.minimum((self.price[items] / self.um.cal.median_price) ** rc.price_weight, rc.price_cap)
        return rc.purchase * mult

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """actions [N] candidate positions -> (reward [N], terminated [N], truncated [N], response [N]).
        Rows that end stay ended until `reset(mask)`; the caller decides when to restart them."""
        cfg, um, rng, n = self.cfg, self.um, self.rng, self.n
        actions = np.asarray(actions, np.int64).reshape(n)
        if ((actions < 0) | (actions >= cfg.n_candidates)).any():
            raise ValueError(f"actions must be candidate positions in [0, {cfg.n_candidates})")
        items = self.cand[np.arange(n), actions]
        shown_before = (self.hist_items == items[:, None]).any(1)
        p_click = self.click_prob(items)
        click = rng.random(n) < p_click
        same_cat = um.item_cat[items] == um.item_cat[self.last]
        new_interest = np.where(same_cat, self.interest, self.interest * cfg.switch_keep)
        new_interest = new_interest + self.alpha * (1 - new_interest)
        p_convert = self.conversion_prob(items, new_interest)
        convert = click & (rng.random(n) < p_convert)
        share = um.cal.purchase_share
        buy = convert & (rng.random(n) < share)
        response = np.where(buy, PURCHASE, np.where(convert, CART, np.where(click, VIEW, SKIP)))
        rc = cfg.reward
        value = self.purchase_value(items)
        if self.expected_rewards:  # E[reward | hidden state, action]: the same expected return, far less noise
            reward = (p_click * ((1 - p_convert) * rc.view + p_convert * (share * value + (1 - share) * rc.cart))
                      + (1 - p_click) * rc.skip)
        else:
            reward = np.select([buy, convert, click], [value, rc.cart, rc.view], rc.skip)

        # state updates
        self.interest = np.where(click, np.where(buy, 0.0, new_interest), self.interest)
        self.fatigue = np.where(click, self.fatigue * 0.5, self.fatigue + 1.0) + cfg.repeat_fatigue * shown_before
        self.last = np.where(click, items, self.last)
        self.hist_items[:, :-1] = self.hist_items[:, 1:]
        self.hist_events[:, :-1] = self.hist_events[:, 1:]
        self.hist_items[:, -1] = items
        self.hist_events[:, -1] = np.where(click, response, HIST_SKIP)
        rc_ = np.where(click[:, None], np.concatenate([self.recent[:, 1:], items[:, None]], 1), self.recent)
        self.recent = rc_
        self.steps += 1
        self.s_shows += 1
        self.s_clicks += click
        self.s_repeats += shown_before
        self.s_buys += buy
        # base_leave applies per engaged item (the log's session length counts engaged items only);
        # a skip risks the session through fatigue alone
        ls = self.leave_scale
        stay = np.exp(-ls * cfg.fatigue_leave * self.fatigue) * np.where(click, 1 - ls * self.base_leave, 1.0)
        p_leave = 1 - stay
        p_leave = np.where(buy, np.maximum(p_leave, um.cal.leave_after_purchase), p_leave)
        leave = rng.random(n) < p_leave
        if cfg.sessions_max == 1:
            terminated = leave
            truncated = ~terminated & (self.steps >= cfg.max_steps)
        else:  # a session ends (left, or max_steps); the shopper returns, or the episode ends
            ended = leave | (self.steps >= cfg.max_steps)
            self.end_score = np.where(ended, self.satisfaction(), self.end_score)
            comes_back = ended & (rng.random(n) < self.return_prob())
            in_window = self.session + 1 < cfg.sessions_max
            terminated = ended & ~comes_back                       # the shopper does not return
            truncated = ended & comes_back & ~in_window            # would return, after the window
            self.next_session(np.flatnonzero(ended & comes_back & in_window))
        live = np.flatnonzero(~(terminated | truncated) & (self.steps > 0))
        self._candidates(live)
        return reward, terminated, truncated, response

    def observation(self, rows=None) -> dict:
        rows = slice(None) if rows is None else rows
        obs = {"hist_items": self.hist_items[rows].copy(), "hist_events": self.hist_events[rows].copy(),
               "cand_items": self.cand[rows].copy(), "cand_feats": self.feats[rows].copy()}
        if self.prior is not None:  # the myopic expected reward per candidate (the residual DQN's base)
            obs["cand_prior"] = self.prior.expected_reward(obs["hist_items"], obs["hist_events"], obs["cand_feats"],
                                                           obs["cand_items"])
        return obs


def logging_policy(sim: "ShopperSim", rng: np.random.Generator,
                   temperature: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """A production-like logging policy: softmax over the blended (mean rank-normalized) engine score.
    Returns (actions [N], propensities [N])."""
    blend = sim.feats[:, :, :4].mean(2) / temperature
    p = np.exp(blend - blend.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    a = (p.cumsum(1) < rng.random((len(p), 1))).sum(1).clip(0, p.shape[1] - 1)
    return a, p[np.arange(len(p)), a]


def run_episodes(sim: "ShopperSim", policy, rng: np.random.Generator) -> dict:
    """Run one session per row with policy(sim) -> actions [N]; per-episode return, length, purchases."""
    sim.reset()
    n = sim.n
    ret, length, buys, engaged = np.zeros(n), np.zeros(n), np.zeros(n), np.ones(n)
    sessions = np.ones(n)
    alive = np.ones(n, bool)
    sim.active = alive
    while alive.any():
        before = sim.session.copy()
        r, te, tr, resp = sim.step(policy(sim))
        ret += r * alive
        length += alive
        buys += (resp == PURCHASE) * alive
        new = alive & (sim.session > before)                # a returning shopper's next session began
        engaged += ((resp >= VIEW) + new) * alive           # its first item counts, as a session's first does
        sessions += new
        alive &= ~(te | tr)
    sim.active = np.ones(n, bool)
    return {"return": ret, "length": length, "purchases": buys, "engaged": engaged, "sessions": sessions}


_FIT_CACHE: dict = {}
CLICK_MAX_RANGE = (0.05, 0.95)


def _bisect(f, lo: float, hi: float, target: float, increasing: bool, steps: int = 12) -> float:
    """x in [lo, hi] where the monotone f(x) crosses target (the bound when it never does)."""
    for _ in range(steps):
        mid = (lo + hi) / 2
        below = f(mid) < target
        lo, hi = (mid, hi) if below == increasing else (lo, mid)
    return round((lo + hi) / 2, 4)


def fit_engagement(um: UserModel, cfg: SimConfig, n: int = 4000, seed: int = 0) -> tuple[float, float]:
    """(click_max, leave_scale) for which sessions under `logging_policy` have the log's mean number of
    distinct engaged items (calibration.mean_session_items): click_max by bisection in CLICK_MAX_RANGE
    at leave scale 1; if the target is out of reach even at the top of that range, leave_scale by
    bisection in (0, 1] at the top click_max."""
    cfg = single_session(cfg)
    key = (id(um), dataclasses.astuple(dataclasses.replace(cfg, click_max=0.0, leave_scale=0.0)), n, seed)
    if key in _FIT_CACHE:
        return _FIT_CACHE[key]
    target = um.cal.mean_session_items

    def engaged(click_max: float, leave_scale: float) -> float:
        sim = ShopperSim(um, dataclasses.replace(cfg, click_max=click_max, leave_scale=leave_scale), n=n, seed=seed)
        rng = np.random.default_rng(seed)
        return float(run_episodes(sim, lambda s: logging_policy(s, rng)[0], rng)["engaged"].mean())

    click_max, leave_scale = _bisect(lambda c: engaged(c, 1.0), *CLICK_MAX_RANGE, target, increasing=True), 1.0
    top = CLICK_MAX_RANGE[1]
    if click_max > top - 0.01 and engaged(top, 1.0) < target:
        click_max = top
        leave_scale = _bisect(lambda s: engaged(top, s), 0.0, 1.0, target, increasing=False)
    _FIT_CACHE[key] = (click_max, leave_scale)
    return _FIT_CACHE[key]


def resolve(value: float | None, calibrated: float, fallback: float) -> float:
    """A config value; None -> the log's calibrated figure; NaN there -> the fallback."""
    if value is not None:
        return float(value)
    return float(calibrated) if np.isfinite(calibrated) else float(fallback)


def single_session(cfg: SimConfig) -> SimConfig:
    """The config with the horizon off: what the engagement fits see (calibrated per session)."""
    return dataclasses.replace(cfg, sessions_max=1, return_intercept=None)


def fit_return_intercept(um: UserModel, cfg: SimConfig, n: int = 4000, seed: int = 0) -> float:
    """b for which sessions of `logging_policy` return at `return_rate` on average: the satisfaction
    scores of n single sessions, then mean(sigmoid(b + score)) = rate solved by bisection."""
    rate = resolve(cfg.return_rate, um.cal.return_rate, 0.1)
    if not 0.0 < rate < 1.0:
        raise ValueError(f"return_rate must be in (0, 1); got {rate} (set sim.return_rate)")
    key = ("b", id(um), dataclasses.astuple(dataclasses.replace(cfg, return_intercept=0.0)), n, seed)
    if key in _FIT_CACHE:
        return _FIT_CACHE[key]
    one = dataclasses.replace(single_session(cfg), return_intercept=0.0)
    sim = ShopperSim(um, one, n=n, seed=seed)
    rng = np.random.default_rng(seed)
    sim.reset()
    score, alive = np.zeros(n), np.ones(n, bool)
    while alive.any():
        _, te, tr, _ = sim.step(logging_policy(sim, rng)[0])
        end = alive & (te | tr)
        score[end] = sim.satisfaction(np.flatnonzero(end))
        alive &= ~(te | tr)
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.mean(1 / (1 + np.exp(-(mid + score)))) < rate else (lo, mid)
    _FIT_CACHE[key] = round((lo + hi) / 2, 5)
    return _FIT_CACHE[key]


def observation_space(cfg: SimConfig, n_items: int, prior: bool = False) -> gym.spaces.Dict:
    """The env's observation; with `prior`, also cand_prior [K]: the myopic expected reward per candidate."""
    L, K = cfg.history_len, cfg.n_candidates
    spaces = {
        "hist_items": gym.spaces.Box(-1, n_items - 1, (L,), np.int64),
        "hist_events": gym.spaces.Box(0, HIST_SKIP, (L,), np.int64),
        "cand_items": gym.spaces.Box(0, n_items - 1, (K,), np.int64),
        "cand_feats": gym.spaces.Box(-np.inf, np.inf, (K, N_FEATURES), np.float32),
    }
    if prior:
        spaces["cand_prior"] = gym.spaces.Box(-np.inf, np.inf, (K,), np.float32)
    return gym.spaces.Dict(spaces)
