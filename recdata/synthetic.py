"""The embedded default data: a synthetic e-commerce event log in the REES46 schema.

    python -m recdata.synthetic --users 5000 --items 3000 --days 30 --seed 0 --out synthetic.csv

Columns and formats are those of the REES46 "eCommerce behavior data from multi category store"
(`event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session`,
event_time like `2019-10-01 00:00:00 UTC`), so every loader, engine and test that reads REES46 reads
this too. Output is a pure function of the config: same seed and sizes, same bytes.

Calibrated from the REES46 sample (`recdata/calibration/rees46_oct2019_head.json`, made by
`python -m recdata.calibrate`): category shares and brand mix per category, log-normal prices per
top-level category, Zipf item popularity, session lengths, gaps between events, repeat views, and the
per-session funnel view -> cart -> purchase (outcome shares and items per converting session).

Planted structure -- what a good model can learn and a popularity ranking cannot:
1. Category chains (`CHAINS`): after a purchase in category A, the shopper's next `chain_span`
   sessions move, with probability `chain_strength`, to A's accessory categories (smartphone ->
   phone case -> charger / headphones; notebook -> mouse -> keyboard ...); the items looked at are
   often (`compat_strength`) the few accessories compatible with the bought item (mostly its brand).
   Reason: this is why "people who bought X next buy Y" exists; only a model of the sequence
   (what was bought last) can predict it -- it is invisible in global counts.
2. Brand loyalty: each shopper has a personal brand per category and picks it with probability
   `brand_loyalty`, raised to `brand_loyalty_after_purchase` once they bought that brand there (and in
   the accessory categories of that purchase). Reason: personal taste that differs between users.
3. Interest drift: each shopper has a few dominant categories at the start and a different set at
   the end of the window; their mix moves linearly in time (`interest_drift`). Reason: recent history
   should weigh more than old history; a static profile is wrong late in the window.
Besides: shoppers come back to the category of their previous session (`category_persistence`), as
real ones do, and sometimes browse anywhere (`explore`).

Deliberate deviation from the sample: users have tens of events (`sessions_per_user` sessions each)
instead of the sample's median 2, which comes from a 3-hour window, so that sequence models have
histories to learn from. Time of day and the gaps between a user's sessions are not calibrated (the
sample spans under 3 hours): session starts are uniform over `n_days`, at least 30 minutes apart.
A session starts in one category and switches to another of the user's interests at the calibrated
rate of category changes between consecutive events.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from recdata.calibrate import load_calibration

EVENT_TYPE_NAMES = np.array(["view", "cart", "purchase"], dtype=object)
COLUMNS = ("event_time", "event_type", "product_id", "category_id", "category_code", "brand", "price",
           "user_id", "user_session")

# Accessory categories that follow a purchase; earlier successors are likelier (weights 1, 1/2, 1/3).
CHAINS: dict[str, tuple[str, ...]] = {
    "electronics.smartphone": ("accessories.phone_case", "electronics.charger", "electronics.audio.headphone"),
    "accessories.phone_case": ("electronics.charger", "electronics.audio.headphone"),
    "electronics.charger": ("electronics.audio.headphone", "electronics.clocks"),
    "electronics.tablet": ("accessories.phone_case", "electronics.charger"),
    "computers.notebook": ("computers.peripherals.mouse", "accessories.bag", "computers.peripherals.keyboard"),
    "computers.peripherals.mouse": ("computers.peripherals.keyboard",),
    "computers.desktop": ("computers.peripherals.monitor", "computers.peripherals.keyboard",
                          "computers.peripherals.mouse"),
    "computers.peripherals.monitor": ("computers.peripherals.keyboard", "computers.peripherals.mouse"),
    "computers.components.motherboard": ("computers.components.cpu", "computers.components.memory"),
    "computers.components.cpu": ("computers.components.cooler", "computers.components.memory"),
    "computers.components.videocards": ("computers.components.power_supply",),
    "computers.peripherals.printer": ("stationery.cartrige",),
    "electronics.video.tv": ("electronics.audio.subwoofer", "electronics.audio.acoustic"),
    "electronics.camera.photo": ("accessories.bag",),
    "kids.carriage": ("kids.toys", "kids.fmcg.diapers"),
    "furniture.bedroom.bed": ("furniture.bedroom.pillow", "furniture.bedroom.blanket"),
    "furniture.living_room.sofa": ("furniture.living_room.chair", "furniture.living_room.cabinet"),
    "auto.accessories.player": ("auto.accessories.videoregister", "auto.accessories.alarm"),
    "appliances.kitchen.oven": ("appliances.kitchen.hood", "appliances.kitchen.hob"),
    "appliances.iron": ("appliances.ironing_board",),
    "construction.tools.drill": ("construction.tools.light",),
    "apparel.shoes": ("apparel.sock",),
}
# Categories the chains need that the 3-hour sample lacks: a small base share, their own prices
# (accessories are cheap), and the brand mix of the category they accessorize.
PLANTED_CATEGORIES: dict[str, dict] = {
    "accessories.phone_case": {"event_share": 0.004, "median_price": 12.0, "sigma": 0.5,
                               "brands_like": "electronics.smartphone"},
    "electronics.charger": {"event_share": 0.004, "median_price": 18.0, "sigma": 0.5,
                            "brands_like": "electronics.smartphone"},
}
MIN_ITEMS_PER_CATEGORY = 4
SESSION_TIMEOUT_S = 1800
"""Minimum time between the end of a user's session and the start of their next."""


@dataclass
class SyntheticConfig:
    """Size, seed and the strength of each planted effect (0 switches an effect off)."""

    n_users: int = 5000
    """Shoppers to generate."""
    n_items: int = 3000
    """Catalog size (every category gets at least 4 items)."""
    n_days: int = 30
    """Length of the window; sessions start uniformly in it."""
    seed: int = 0
    """Everything follows from it: same config, same bytes."""
    start: str = "2019-10-01"
    """First day of the window (UTC), as in the REES46 October file."""
    sessions_per_user: float = 8.0
    """Mean sessions per user (2 + Poisson); x ~3.4 events per session gives tens of events per user."""
    interests_per_user: int = 3
    """Dominant categories per user, drawn by the calibrated category shares."""
    explore: float = 0.1
    """Share of non-chain sessions in a category drawn from the global shares instead of the user's."""
    category_persistence: float = 0.3
    """Probability that a session returns to the previous session's category."""
    chain_strength: float = 0.7
    """Probability that a session after a purchase goes to an accessory category of it."""
    chain_span: int = 2
    """How many sessions after a purchase the chain pull lasts."""
    compat_strength: float = 0.6
    """In a chain session, probability that a newly viewed item is one compatible with the bought one."""
    compat_items: int = 3
    """Compatible accessories per item and accessory category (same brand where it has any)."""
    brand_loyalty: float = 0.6
    """Probability that a newly viewed item is of the user's personal brand for its category."""
    brand_loyalty_after_purchase: float = 0.9
    """The same once the user bought that brand in the category (or in the one it accessorizes)."""
    interest_drift: float = 0.8
    """Weight of the late interests at the end of the window (linear in time; 0 = static interests)."""
    users_per_chunk: int = 20000
    """Users generated together; memory follows this, not n_users (part of the seed's meaning)."""
    calibration: str | None = None
    """Calibration JSON; None uses the committed recdata/calibration/rees46_oct2019_head.json."""

    def validate(self) -> None:
        for name in ("n_users", "n_items", "n_days", "users_per_chunk", "interests_per_user", "compat_items"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("explore", "category_persistence", "chain_strength", "compat_strength", "brand_loyalty",
                     "brand_loyalty_after_purchase", "interest_drift"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} is a probability: it must lie in [0, 1], got {v}")
        if self.sessions_per_user < 2:
            raise ValueError(f"sessions_per_user must be >= 2 (got {self.sessions_per_user})")
        if self.n_users > 56_000_000 or self.n_items > 59_000_000:
            raise ValueError("n_users <= 56M and n_items <= 59M (the REES46 id ranges)")


# ---------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------
def _zipf(n: int, s: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** s
    return w / w.sum()


def _sample_cdf(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling of a categorical distribution (cdf ascending, last value 1)."""
    return np.minimum(np.searchsorted(cdf, u * cdf[-1], side="right"), len(cdf) - 1)


def _affine_ids(idx: np.ndarray, base: int, span: int, mult: int, add: int) -> np.ndarray:
    """Distinct REES46-looking ids: a bijection of [0, span) (mult coprime with span) plus base."""
    return base + (np.asarray(idx, dtype=np.int64) * mult + add) % span


def _category_id(code: str) -> int:
    # Fixed per category code (REES46 category ids are 19-digit numbers around 2.05e18).
    return 2053013552000000000 + int(hashlib.sha256(code.encode()).hexdigest(), 16) % 119_000_000_000_000_000


def _brand_names(n: int, rng: np.random.Generator, taken: list[str]) -> list[str]:
    """Pronounceable tail brand names (the sample's long tail of small brands), none in `taken`."""
    cons, vow = list("bdfgklmnprstvz"), list("aeiou")
    names, seen = [], set(taken)
    while len(names) < n:
        k = int(rng.integers(2, 4))
        name = "".join(rng.choice(cons) + rng.choice(vow) for _ in range(k)) + str(rng.choice(["", "x", "n", "o", "ia"]))
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


# ---------------------------------------------------------------------------------------------------
# The catalog: categories, items (brand, price, popularity), compatible accessories
# ---------------------------------------------------------------------------------------------------
class SyntheticCatalog:
    """Items sorted by (category, brand) so each category and each (category, brand) is a slice."""

    def __init__(self, config: SyntheticConfig, cal: dict):
        rng = np.random.default_rng(np.random.SeedSequence([config.seed, 1]))
        named = cal["categories"]["named"]
        unknown = cal["categories"]["unknown"]
        by_code = {c["code"]: c for c in named}
        # -- categories: named (calibrated), planted, unknown (empty category_code) ----------------------
        codes, ev_share, it_share, brand_mix, price_key, no_brand = [], [], [], [], [], []
        for c in named:
            codes.append(c["code"]); ev_share.append(c["event_share"]); it_share.append(c["item_share"])
            brand_mix.append(c["brands"]); price_key.append(c["code"].split(".")[0])
            no_brand.append(c["missing_brand_item_share"])
        for code, p in PLANTED_CATEGORIES.items():
            like = by_code[p["brands_like"]]
            codes.append(code); ev_share.append(p["event_share"]); it_share.append(p["event_share"])
            brand_mix.append(like["brands"]); price_key.append(code); no_brand.append(like["missing_brand_item_share"])
        n_named = len(codes)
        budget = config.n_items // MIN_ITEMS_PER_CATEGORY - n_named
        if budget < 1:
            raise ValueError(
                f"n_items={config.n_items} is too small for {n_named + 1} categories of at least "
                f"{MIN_ITEMS_PER_CATEGORY} items; use --items {MIN_ITEMS_PER_CATEGORY * (n_named + 1)} or more")
        n_unknown = int(min(unknown["n_category_ids"], max(1, config.n_items // 60), budget))
        z = _zipf(n_unknown, unknown["zipf_exponent"])
        for j in range(n_unknown):
            codes.append(""); ev_share.append(unknown["event_share"] * z[j])
            it_share.append(unknown["item_share"] * z[j]); brand_mix.append(unknown["brands"])
            price_key.append("unknown"); no_brand.append(unknown["missing_brand_item_share"])
        self.codes = np.array(codes, dtype=object)
        self.n_categories = C = len(codes)
        share = np.array(ev_share)
        self.category_share = share / share.sum()
        self.category_ids = np.array(
            [_category_id(c) for c in codes[:n_named]]
            + [_category_id(f"unknown-{config.seed}-{j}") for j in range(n_unknown)], dtype=np.int64)

        # -- items per category: at least MIN_ITEMS_PER_CATEGORY, the rest by item share ---------------
        it = np.array(it_share) / np.sum(it_share)
        extra = config.n_items - MIN_ITEMS_PER_CATEGORY * C
        raw = it * extra
        n_c = MIN_ITEMS_PER_CATEGORY + np.floor(raw).astype(np.int64)
        n_c[np.argsort(-(raw - np.floor(raw)), kind="stable")[: config.n_items - n_c.sum()]] += 1
        self.n_items = int(n_c.sum())
        cat = np.repeat(np.arange(C), n_c)

        # -- brands: each category's calibrated mix; the unlisted rest goes to a Zipf tail of brands ----
        listed = sorted({b for mix in brand_mix for b in mix})
        n_tail = max(10, cal["brands"]["n_brands"] - len(listed))
        self.brand_names = np.array(listed + _brand_names(n_tail, rng, listed), dtype=object)
        tail_cdf = np.cumsum(_zipf(n_tail, cal["brands"]["zipf_exponent"]))
        bidx = {b: i for i, b in enumerate(listed)}
        brand = np.empty(self.n_items, np.int64)
        for c in range(C):
            sl = cat == c
            mix = brand_mix[c]
            names = [bidx[b] for b in mix]
            p = np.array(list(mix.values()) + [max(0.0, 1.0 - sum(mix.values()))])
            pick = _sample_cdf(np.cumsum(p), rng.random(sl.sum()))
            tail = len(listed) + _sample_cdf(tail_cdf, rng.random(sl.sum()))
            brand[sl] = np.where(pick < len(names), np.array(names + [0])[pick], tail)
        brand[rng.random(self.n_items) < np.asarray(no_brand)[cat]] = -1

        # -- order items by (category, brand), then popularity (Zipf within category) and price ---------
        order = np.lexsort((rng.random(self.n_items), brand, cat))
        self.cat, self.brand = cat[order], brand[order]
        self.cat_start = np.concatenate([[0], np.cumsum(n_c)])
        pop = np.empty(self.n_items)
        s_item = cal["item_popularity"]["zipf_exponent"]
        for c in range(C):
            a, b = self.cat_start[c], self.cat_start[c + 1]
            pop[a:b] = _zipf(b - a, s_item)[rng.permutation(b - a)]
        self.popularity = pop  # within-category probabilities (each category sums to 1)
        mu = np.empty(self.n_items)
        sigma = np.empty(self.n_items)
        prices = cal["prices"]
        for c in range(C):
            key = price_key[c]
            sl = slice(self.cat_start[c], self.cat_start[c + 1])
            if key in PLANTED_CATEGORIES:
                mu[sl], sigma[sl] = np.log(PLANTED_CATEGORIES[key]["median_price"]), PLANTED_CATEGORIES[key]["sigma"]
            else:
                p = prices.get(key, prices["all"])
                mu[sl], sigma[sl] = p["mu"], p["sigma"]
        self.price = np.maximum(np.round(np.exp(mu + sigma * rng.standard_normal(self.n_items)), 2), 0.5)
        self.price_text = np.array([f"{x:.2f}" for x in self.price], dtype=object)
        self.product_ids = _affine_ids(np.arange(self.n_items), 1_000_000, 59_000_000, 7_368_787, 1_303_091)

        # -- samplers: category slices and (category, brand) groups as offset CDFs --------------------
        # key = group number + cumulative share inside the group, so one searchsorted samples any group.
        self._cat_key = self.cat + self._cum_within(self.cat)
        gkey = self.cat * (len(self.brand_names) + 1) + (self.brand + 1)
        self._group_codes, self._group_of = np.unique(gkey, return_inverse=True)
        self._group_key = self._group_of + self._cum_within(self._group_of)

        # -- chains: successor table and compatible accessories per (item, successor) ---------------------
        pos = {c: i for i, c in enumerate(codes[:n_named])}
        max_succ = max(len(v) for v in CHAINS.values())
        self.succ = np.full((C, max_succ), -1, np.int64)
        self.succ_cdf = np.zeros((C, max_succ))
        for a, succ in CHAINS.items():
            ok = [pos[b] for b in succ if b in pos]
            if a in pos and ok:
                self.succ[pos[a], : len(ok)] = ok
                self.succ_cdf[pos[a]] = np.cumsum([1 / (j + 1) if j < len(ok) else 0 for j in range(max_succ)])
        k = config.compat_items
        self.edge = np.full((C, C), -1, np.int64)
        tables = []
        for a in range(C):
            for b in self.succ[a][self.succ[a] >= 0]:
                items_a = np.arange(self.cat_start[a], self.cat_start[a + 1])
                same = self.sample_brand(np.full(len(items_a) * k, b), np.repeat(self.brand[items_a], k), rng)
                other = self.sample_category(np.full(len(items_a) * k, b), rng)
                take_same = (same >= 0) & (rng.random(len(same)) < 0.7)
                self.edge[a, b] = len(tables)
                tables.append(np.where(take_same, same, other).reshape(len(items_a), k))
        self.compat = tables

    def _cum_within(self, group: np.ndarray) -> np.ndarray:
        """Cumulative popularity of each item inside its run of equal `group` values, in (0, 1]."""
        w = self.popularity
        c = np.cumsum(w)
        start = np.concatenate([[0], np.flatnonzero(np.diff(group)) + 1])
        run = np.diff(np.concatenate([start, [len(group)]]))
        base = np.repeat(c[start] - w[start], run)
        total = np.repeat(np.add.reduceat(w, start), run)
        return np.minimum((c - base) / total, 1.0)

    def sample_category(self, cats: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One item per entry of `cats`, by popularity within the category."""
        u = rng.random(len(cats))
        idx = np.searchsorted(self._cat_key, cats + u, side="left")
        return np.clip(idx, self.cat_start[cats], self.cat_start[cats + 1] - 1)

    def sample_brand(self, cats: np.ndarray, brands: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One item of (category, brand) per entry, by popularity; -1 where the pair has no item."""
        code = cats * (len(self.brand_names) + 1) + (brands + 1)
        g = np.searchsorted(self._group_codes, code)
        g = np.minimum(g, len(self._group_codes) - 1)
        found = (self._group_codes[g] == code) & (brands >= 0)
        u = rng.random(len(cats))
        idx = np.searchsorted(self._group_key, g + u, side="left")
        idx = np.minimum(idx, len(self._group_key) - 1)
        idx = np.where(self._group_of[idx] == g, idx, np.searchsorted(self._group_of, g))
        return np.where(found, idx, -1)

    def has_brand(self, cats: np.ndarray, brands: np.ndarray) -> np.ndarray:
        code = cats * (len(self.brand_names) + 1) + (brands + 1)
        g = np.minimum(np.searchsorted(self._group_codes, code), len(self._group_codes) - 1)
        return (self._group_codes[g] == code) & (brands >= 0)

    def items_frame(self) -> pd.DataFrame:
        return pd.DataFrame({
            "product_id": self.product_ids, "category_id": self.category_ids[self.cat],
            "category_code": self.codes[self.cat], "brand": self._brand_strings(),
            "price": self.price, "popularity": self.popularity,
        })

    def _brand_strings(self) -> np.ndarray:
        names = np.concatenate([self.brand_names, np.array([""], dtype=object)])
        return names[self.brand]  # brand -1 -> "" (the last entry)


# ---------------------------------------------------------------------------------------------------
# Shoppers: sessions generated step by step (session 0 of every user, then session 1, ...), each
# step vectorized over the users that still have a session and over those sessions' events.
# ---------------------------------------------------------------------------------------------------
def _generate_chunk(cfg: SyntheticConfig, cal: dict, cat: SyntheticCatalog, chunk: int, lo: int, hi: int) -> dict:
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 2, chunk]))
    n, C, K = hi - lo, cat.n_categories, cfg.interests_per_user
    window = cfg.n_days * 86400.0
    ss, fn = cal["sessions_stats"], cal["funnel"]
    length_cdf = np.cumsum(ss["length_pmf"])
    gap_q = np.asarray(ss["gap_quantiles_seconds"], dtype=np.float64)
    gap_p = np.linspace(0, 1, len(gap_q))
    o = fn["session_outcomes"]
    outcome_cdf = np.cumsum([o["none"], o["cart_only"], o["purchase_only"], o["cart_and_purchase"]])
    extra_items = max(fn["items_per_cart_session"], fn["items_per_purchase_session"]) - 1.0
    repeat_p = ss["repeat_previous_item"]
    switch_p = ss["category_switch"]
    cart_extra = max(fn["cart_events_per_item"] - 1.0, 0.0)
    buy_extra = max(fn["purchase_events_per_item"] - 1.0, 0.0)

    # sessions per user and their nominal starts (uniform in the window, in time order per user)
    n_sess = 2 + rng.poisson(cfg.sessions_per_user - 2, n)
    ptr = np.concatenate([[0], np.cumsum(n_sess)])
    owner = np.repeat(np.arange(n), n_sess)
    starts = rng.random(ptr[-1]) * window
    starts = starts[np.lexsort((starts, owner))]
    # interests: K early and K late dominant categories with Dirichlet weights (as CDFs)
    share_cdf = np.cumsum(cat.category_share)
    early = _sample_cdf(share_cdf, rng.random((n, K)))
    late = _sample_cdf(share_cdf, rng.random((n, K)))
    w_early = np.cumsum(rng.dirichlet(np.ones(K), n), axis=1)
    w_late = np.cumsum(rng.dirichlet(np.ones(K), n), axis=1)
    # personal brand per category: the brand of an item drawn by popularity  [n, C]
    pref = cat.brand[cat.sample_category(np.tile(np.arange(C), n), rng)].reshape(n, C)
    loyal = np.zeros((n, C), dtype=bool)
    last_cat = np.full(n, -1)
    chain_left = np.zeros(n, np.int64)
    chain_src = np.full(n, -1)
    anchor = np.full(n, -1)
    last_end = np.full(n, -np.inf)

    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("user", "session", "ts", "event", "item")}
    for s in range(int(n_sess.max())):
        a = np.flatnonzero(n_sess > s)  # users with an s-th session  [m]
        m_a = len(a)
        st = np.maximum(starts[ptr[a] + s], last_end[a] + SESSION_TIMEOUT_S)
        # -- the session's category: chain > persistence > exploration > drifting interests ------------
        src = np.maximum(chain_src[a], 0)
        j = (rng.random(m_a)[:, None] * cat.succ_cdf[src, -1:] >= cat.succ_cdf[src]).sum(1)
        c_chain = cat.succ[src, np.minimum(j, cat.succ.shape[1] - 1)]
        chain = (chain_left[a] > 0) & (chain_src[a] >= 0) & (c_chain >= 0) & (rng.random(m_a) < cfg.chain_strength)
        persist = ~chain & (last_cat[a] >= 0) & (rng.random(m_a) < cfg.category_persistence)
        use_late = rng.random(m_a) < cfg.interest_drift * st / window
        wcdf = np.where(use_late[:, None], w_late[a], w_early[a])
        k = np.minimum((rng.random(m_a)[:, None] > wcdf).sum(1), K - 1)
        c_int = np.where(use_late, late[a, k], early[a, k])
        c_glob = _sample_cdf(share_cdf, rng.random(m_a))
        explore = rng.random(m_a) < cfg.explore
        c = np.where(chain, c_chain, np.where(persist, last_cat[a], np.where(explore, c_glob, c_int)))
        chain_left[a] = np.maximum(chain_left[a] - 1, 0)
        # -- funnel outcome and length ------------------------------------------------------------------
        outcome = _sample_cdf(outcome_cdf, rng.random(m_a))  # 0 none, 1 cart, 2 purchase, 3 both
        has_cart, has_buy = (outcome == 1) | (outcome == 3), outcome >= 2
        m_conv = np.where(has_cart | has_buy, 1 + rng.poisson(extra_items, m_a), 0)
        length = 1 + _sample_cdf(length_cdf, rng.random(m_a))
        n_view = np.maximum(length - m_conv * (has_cart.astype(np.int64) + has_buy), np.maximum(m_conv, 1))
        # -- views: new items (compatible accessory / personal brand / popularity) or a repeat -----------
        V = int(n_view.sum())
        vs = np.repeat(np.arange(m_a), n_view)  # session row of each view  [V]
        vpos = np.arange(V) - np.repeat(np.cumsum(n_view) - n_view, n_view)
        vu = a[vs]
        # a view may switch the session to another of the user's interests (calibrated rate); the
        # views after it stay there until the next switch
        switch = (vpos > 0) & (rng.random(V) < switch_p)
        sw = np.flatnonzero(switch)
        late_sw = rng.random(len(sw)) < cfg.interest_drift * st[vs[sw]] / window
        k_sw = np.minimum((rng.random(len(sw))[:, None] > np.where(
            late_sw[:, None], w_late[vu[sw]], w_early[vu[sw]])).sum(1), K - 1)
        seg_cat = c[vs].copy()
        pool = np.where(late_sw[:, None], late[vu[sw]], early[vu[sw]])  # [n_switch, K]
        new_cat = pool[np.arange(len(sw)), k_sw]
        nxt = pool[np.arange(len(sw)), (k_sw + 1) % K]  # a switch goes somewhere else
        new_cat = np.where(new_cat == seg_cat[sw], nxt, new_cat)
        glob = _sample_cdf(share_cdf, rng.random(len(sw)))
        seg_cat[sw] = np.where(new_cat == seg_cat[sw], glob, new_cat)
        vc = seg_cat[np.maximum.accumulate(np.where((vpos == 0) | switch, np.arange(V), 0))]

        def draw(w: np.ndarray) -> np.ndarray:
            """New items for views w: a compatible accessory, the personal brand, or by popularity."""
            u_, c_ = vu[w], vc[w]
            got = cat.sample_category(c_, rng)
            by_brand = cat.sample_brand(c_, pref[u_, c_], rng)
            loy = np.where(loyal[u_, c_], cfg.brand_loyalty_after_purchase, cfg.brand_loyalty)
            got = np.where((rng.random(len(w)) < loy) & (by_brand >= 0), by_brand, got)
            edge = np.where(chain[vs[w]], cat.edge[chain_src[u_].clip(0), c_], -1)
            use = (edge >= 0) & (rng.random(len(w)) < cfg.compat_strength)
            col = rng.integers(0, cfg.compat_items, len(w))
            for e in np.unique(edge[use]):
                x = np.flatnonzero(use & (edge == e))
                row = anchor[u_[x]] - cat.cat_start[chain_src[u_[x]]]
                got[x] = cat.compat[e][row, col[x]]
            return got

        item = draw(np.arange(V))
        # the last m_conv views are the items carted/bought, so they are new; the first view is new
        is_new = (vpos == 0) | switch | (vpos >= (n_view - m_conv)[vs]) | (rng.random(V) >= repeat_p)
        src_of = np.maximum.accumulate(np.where(is_new, np.arange(V), 0))
        # a "new" view that drew the item just viewed would be an uncounted repeat: draw once more
        dup = np.flatnonzero(is_new & (vpos > 0))
        dup = dup[item[dup] == item[src_of[dup - 1]]]
        item[dup] = draw(dup)
        item = item[src_of]
        # -- cart / purchase events after the views: cart x, purchase x for each converting item -------
        conv_v = np.flatnonzero(vpos >= (n_view - m_conv)[vs])
        n_c = np.where(has_cart[vs[conv_v]], 1 + rng.poisson(cart_extra, len(conv_v)), 0)
        n_p = np.where(has_buy[vs[conv_v]], 1 + rng.poisson(buy_extra, len(conv_v)), 0)
        reps = n_c + n_p
        cs, citem = np.repeat(vs[conv_v], reps), np.repeat(item[conv_v], reps)
        offset = np.arange(len(cs)) - np.repeat(np.cumsum(reps) - reps, reps)
        cevent = np.where(offset < np.repeat(n_c, reps), 1, 2)
        # -- assemble in session order and give times: start + cumulative calibrated gaps --------------
        sess = np.concatenate([vs, cs])
        phase = np.concatenate([np.zeros(V, np.int8), np.ones(len(cs), np.int8)])
        order = np.lexsort((np.arange(len(sess)), phase, sess))
        sess, it = sess[order], np.concatenate([item, citem])[order]
        ev = np.concatenate([np.zeros(V, np.int8), cevent.astype(np.int8)])[order]
        gaps = np.round(np.interp(rng.random(len(sess)), gap_p, gap_q))
        head = np.concatenate([[True], sess[1:] != sess[:-1]])
        gaps[head] = 0.0
        cum = np.cumsum(gaps)
        ts = st[sess] + cum - np.repeat(cum[head], np.bincount(sess, minlength=m_a))
        last_end[a] = np.maximum.reduceat(ts, np.flatnonzero(head))
        # -- state for the next sessions ------------------------------------------------------------
        last_cat[a] = c
        buy_rows = np.flatnonzero(ev == 2)
        if len(buy_rows):
            last_buy = buy_rows[np.concatenate([sess[buy_rows][1:] != sess[buy_rows][:-1], [True]])]
            bs = sess[last_buy]
            u, bi = a[bs], it[last_buy]
            bc = cat.cat[bi]  # the bought item's category (a session may have switched)
            chain_left[u], chain_src[u], anchor[u] = cfg.chain_span, bc, bi
            bb = cat.brand[bi]
            ok = bb >= 0
            pref[u[ok], bc[ok]], loyal[u[ok], bc[ok]] = bb[ok], True
            for jj in range(cat.succ.shape[1]):
                sc = cat.succ[bc, jj]
                ok2 = (sc >= 0) & cat.has_brand(np.maximum(sc, 0), bb)
                pref[u[ok2], sc[ok2]], loyal[u[ok2], sc[ok2]] = bb[ok2], True
        parts["user"].append(lo + a[sess])
        parts["session"].append(ptr[a][sess] + s)
        parts["ts"].append(ts)
        parts["event"].append(ev)
        parts["item"].append(it)
    out = {k: np.concatenate(v) for k, v in parts.items()}
    out["ts"] = out["ts"].astype(np.int64)
    order = np.argsort(out["ts"], kind="stable")
    out = {k: v[order] for k, v in out.items()}
    out["session_uuid"] = _uuids(rng, int(ptr[-1]))
    return out


def _uuids(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random version-4 UUID strings, as REES46's user_session."""
    b = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    b[:, 6] = (b[:, 6] & 0x0F) | 0x40
    b[:, 8] = (b[:, 8] & 0x3F) | 0x80
    out = np.empty(n, dtype=object)
    for i, row in enumerate(b):
        h = row.tobytes().hex()
        out[i] = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    return out


# ---------------------------------------------------------------------------------------------------
# Output: one DataFrame, or a CSV written chunk by chunk in global time order
# ---------------------------------------------------------------------------------------------------
def _chunks(cfg: SyntheticConfig) -> tuple[SyntheticCatalog, Iterator[dict]]:
    cfg.validate()
    cal = load_calibration(cfg.calibration)
    catalog = SyntheticCatalog(cfg, cal)

    def gen():
        for ci, lo in enumerate(range(0, cfg.n_users, cfg.users_per_chunk)):
            yield _generate_chunk(cfg, cal, catalog, ci, lo, min(cfg.n_users, lo + cfg.users_per_chunk))

    return catalog, gen()


def _start_unix(cfg: SyntheticConfig) -> int:
    try:
        return int(pd.Timestamp(cfg.start, tz="UTC").timestamp())
    except ValueError as e:
        raise ValueError(f"start={cfg.start!r} is not a date; use YYYY-MM-DD") from e


def _frame(cfg: SyntheticConfig, catalog: SyntheticCatalog, ts, event, item, user, uuid,
           price_text: bool = False) -> pd.DataFrame:
    """REES46 rows from numeric columns (ts = seconds since cfg.start). `price_text` gives prices as
    their "%.2f" text (what the CSV holds; formatting floats is most of `to_csv`'s time)."""
    uniq, inv = np.unique(ts, return_inverse=True)
    stamps = np.datetime_as_string((uniq + _start_unix(cfg)).astype("datetime64[s]"), unit="s")
    stamps = np.char.add(np.char.replace(stamps, "T", " "), " UTC").astype(object)
    return pd.DataFrame({
        "event_time": stamps[inv],
        "event_type": EVENT_TYPE_NAMES[event],
        "product_id": catalog.product_ids[item],
        "category_id": catalog.category_ids[catalog.cat[item]],
        "category_code": catalog.codes[catalog.cat[item]],
        "brand": catalog._brand_strings()[item],
        "price": catalog.price_text[item] if price_text else catalog.price[item],
        "user_id": _affine_ids(user, 510_000_000, 56_000_000, 9_833_297, 2_173_519),
        "user_session": uuid,
    })


def generate(config: SyntheticConfig | None = None) -> pd.DataFrame:
    """The whole log as a DataFrame in the REES46 schema, in time order (holds everything in memory:
    for large sizes use `write_csv`). `frame.to_csv(path, index=False, float_format="%.2f")` gives
    the same bytes as `write_csv`."""
    cfg = config or SyntheticConfig()
    catalog, chunks = _chunks(cfg)
    frames = [(c["ts"], _frame(cfg, catalog, c["ts"], c["event"], c["item"], c["user"], c["session_uuid"][c["session"]]))
              for c in chunks]
    ts = np.concatenate([t for t, _ in frames])
    df = pd.concat([f for _, f in frames], ignore_index=True)
    return df.iloc[np.argsort(ts, kind="stable")].reset_index(drop=True)


def write_csv(config: SyntheticConfig | None, path: str | Path, day_window: int = 1) -> dict:
    """Write the log to `path` without holding it all: chunks of users go to temporary arrays on
    disk, then are merged into global time order `day_window` days at a time (memory ~ one window).
    Returns a summary (rows, users, items, seconds)."""
    cfg = config or SyntheticConfig()
    t0 = time.perf_counter()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    catalog, chunks = _chunks(cfg)
    rows = 0
    with tempfile.TemporaryDirectory(prefix="synthetic-", dir=path.parent) as tmp:
        n_chunks = 0
        for ci, c in enumerate(chunks):
            for k in ("ts", "event", "item", "user", "session"):
                np.save(Path(tmp) / f"{ci}_{k}.npy", c[k])
            np.save(Path(tmp) / f"{ci}_uuid.npy", c["session_uuid"].astype("S36"))
            n_chunks += 1
        load = lambda ci, k: np.load(Path(tmp) / f"{ci}_{k}.npy", mmap_mode="r")  # noqa: E731
        uuids = [load(ci, "uuid") for ci in range(n_chunks)]
        end = max(int(load(ci, "ts")[-1]) for ci in range(n_chunks) if len(load(ci, "ts"))) + 1
        step = 86400 * day_window
        with open(path, "w", newline="") as f:
            f.write(",".join(COLUMNS) + "\n")
            for lo in range(0, end, step):
                cols: dict[str, list] = {k: [] for k in ("ts", "event", "item", "user", "uuid")}
                for ci in range(n_chunks):
                    ts = load(ci, "ts")
                    a, b = np.searchsorted(ts, [lo, lo + step])
                    if a == b:
                        continue
                    for k in ("ts", "event", "item", "user"):
                        cols[k].append(np.asarray(load(ci, k)[a:b]))
                    cols["uuid"].append(uuids[ci][np.asarray(load(ci, "session")[a:b])].astype(str).astype(object))
                if not cols["ts"]:
                    continue
                arr = {k: np.concatenate(v) for k, v in cols.items()}
                o = np.argsort(arr["ts"], kind="stable")
                df = _frame(cfg, catalog, *(arr[k][o] for k in ("ts", "event", "item", "user", "uuid")),
                            price_text=True)
                df.to_csv(f, index=False, header=False, float_format="%.2f")
                rows += len(df)
    return {"rows": rows, "users": cfg.n_users, "items": catalog.n_items, "path": str(path),
            "seconds": round(time.perf_counter() - t0, 3)}


# ---------------------------------------------------------------------------------------------------
# Measuring the planted structure from the output alone (the CSV / frame, not the generator's state)
# ---------------------------------------------------------------------------------------------------
def measure_structure(frame: pd.DataFrame) -> dict:
    """Figures that show each planted effect in a REES46-schema frame (e.g. `generate(...)` or
    `pd.read_csv` of a written file), each beside the rate that no structure would give:
    - chain: P(next session's category is an accessory of A | purchase in A) vs the share of all
      sessions in those accessory categories (the base rate);
    - brand: P(a user's next new item in a category has the brand of their previous one there) vs the
      chance of that under the category's brand shares (sum of squared shares); and P(a later item in
      the category of a purchase has the bought brand) vs that brand's share of the category (the
      chance figure errs high: a user's next new item is never the same item, so with loyalty off
      the measured rate sits a little below it);
    - drift: mean total-variation distance between each user's category mix in the first and the last
      third of their sessions, and between the first and the middle third (drift makes the first
      larger; without drift both are alike);
    - funnel: cart and purchase events per view, and shares of sessions with a cart / a purchase;
    - session shape: mean length, repeat views, category changes (as `recdata.calibrate` measures)."""
    df = frame[["event_time", "event_type", "product_id", "category_id", "category_code", "brand", "user_id", "user_session"]].copy()
    df["order"] = np.arange(len(df))
    df = df.sort_values(["user_id", "event_time", "order"], kind="stable").reset_index(drop=True)
    df["category_code"] = df["category_code"].fillna("")
    df["brand"] = df["brand"].fillna("")
    view, cart, buy = (df["event_type"] == t for t in ("view", "cart", "purchase"))

    # sessions in each user's time order, with their category (first event's) and purchases
    sess = df.groupby("user_session", sort=False).agg(
        user=("user_id", "first"), cat=("category_code", "first"), first=("order", "min"),
        t=("event_time", "first"))
    bought = df[buy].groupby("user_session")["category_code"].last()
    sess["bought"] = bought.reindex(sess.index).fillna("").to_numpy()
    sess = sess.sort_values(["user", "t", "first"], kind="stable")
    su, sc, sb = sess["user"].to_numpy(), sess["cat"].to_numpy(), sess["bought"].to_numpy()
    nxt_same_user = np.concatenate([su[1:] == su[:-1], [False]])
    nxt_cat = np.concatenate([sc[1:], [""]])
    cat_share = pd.Series(sc).value_counts(normalize=True)
    hits, base = [], []
    for i in np.flatnonzero(nxt_same_user & np.isin(sb, list(CHAINS))):
        succ = CHAINS[sb[i]]
        hits.append(nxt_cat[i] in succ)
        base.append(float(cat_share.reindex(list(succ)).fillna(0).sum()))
    chain = {"purchases_with_chain": len(hits),
             "next_session_in_chain": float(np.mean(hits)) if hits else float("nan"),
             "base_rate": float(np.mean(base)) if base else float("nan")}
    chain["lift"] = chain["next_session_in_chain"] / chain["base_rate"] if base else float("nan")

    # brand repeat among each user's successive new (first-time) views in one category
    v = df[view & (df["brand"] != "") & (df["category_code"] != "")]
    v = v.drop_duplicates(["user_id", "product_id"])
    key = v["user_id"].astype(str) + "|" + v["category_code"]
    same_key = (key.to_numpy()[1:] == key.to_numpy()[:-1])
    b = v["brand"].to_numpy()
    shares = v.groupby("category_code")["brand"].value_counts(normalize=True)
    hhi = (shares ** 2).groupby(level=0).sum()
    brand = {"pairs": int(same_key.sum()),
             "same_brand_as_previous": float((b[1:] == b[:-1])[same_key].mean()) if same_key.any() else float("nan"),
             "chance": float(hhi.reindex(v["category_code"].to_numpy()[1:][same_key]).mean()) if same_key.any() else float("nan")}
    # after a purchase: later new views by that user in that category
    p = df[buy & (df["brand"] != "") & (df["category_code"] != "")].drop_duplicates(["user_id", "category_code"])
    later = v.merge(p[["user_id", "category_code", "brand", "order"]], on=["user_id", "category_code"],
                    suffixes=("", "_bought"))
    later = later[later["order"] > later["order_bought"]]
    brand["views_after_purchase"] = int(len(later))
    brand["bought_brand_after_purchase"] = float((later["brand"] == later["brand_bought"]).mean()) if len(later) else float("nan")
    brand["bought_brand_share"] = float(shares.reindex(pd.MultiIndex.from_arrays(
        [later["category_code"], later["brand_bought"]])).fillna(0).mean()) if len(later) else float("nan")

    # drift: first vs last third of each user's sessions (TV distance of category mixes)
    pos = sess.groupby("user").cumcount().to_numpy()
    n_s = sess.groupby("user")["cat"].transform("size").to_numpy()
    third = np.minimum(3 * pos // np.maximum(n_s, 1), 2)
    t = pd.DataFrame({"user": su, "third": third, "cat": sc})[n_s >= 6]
    mix = t.groupby(["user", "third"])["cat"].value_counts(normalize=True).unstack(fill_value=0.0)

    def tv(x: int, y: int) -> float:
        a_, b_ = mix.xs(x, level="third"), mix.xs(y, level="third")
        users = a_.index.intersection(b_.index)
        return float(0.5 * (a_.loc[users] - b_.loc[users]).abs().sum(axis=1).mean())

    drift = {"users": int(t["user"].nunique()), "tv_first_last": tv(0, 2), "tv_first_middle": tv(0, 1)}

    n_view = int(view.sum())
    sess_cart = df[cart].groupby("user_session").size().reindex(sess.index).fillna(0) > 0
    sess_buy = df[buy].groupby("user_session").size().reindex(sess.index).fillna(0) > 0
    funnel = {"cart_per_view": float(cart.sum() / n_view), "purchase_per_view": float(buy.sum() / n_view),
              "session_cart_rate": float(sess_cart.mean()), "session_purchase_rate": float(sess_buy.mean())}
    # session shape: length, repeat views, category changes between consecutive events
    by_s = df.sort_values(["user_session", "event_time", "order"], kind="stable")
    s_id = by_s["user_session"].to_numpy()
    same = s_id[1:] == s_id[:-1]
    pid, cid = by_s["product_id"].to_numpy(), by_s["category_id"].to_numpy()
    is_v = (by_s["event_type"] == "view").to_numpy()[1:]
    shape = {"length_mean": float(len(df) / len(sess)),
             "repeat_previous_item": float((pid[1:] == pid[:-1])[same & is_v].mean()),
             "category_switch": float((cid[1:] != cid[:-1])[same].mean())}
    return {"rows": int(len(df)), "users": int(df["user_id"].nunique()), "sessions": int(len(sess)),
            "session_shape": shape,
            "events_per_user": float(len(df) / df["user_id"].nunique()),
            "chain": chain, "brand": brand, "drift": drift, "funnel": funnel}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m recdata.synthetic",
                                description="Write a synthetic REES46-schema event log (the embedded default data).")
    d = SyntheticConfig()
    p.add_argument("--users", type=int, default=d.n_users, help="number of shoppers")
    p.add_argument("--items", type=int, default=d.n_items, help="catalog size")
    p.add_argument("--days", type=int, default=d.n_days, help="length of the window in days")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (same seed, same bytes)")
    p.add_argument("--calibration", default=None, help="calibration JSON (default: the committed one)")
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--measure", action="store_true", help="also read it back and print the planted-structure figures")
    a = p.parse_args(argv)
    cfg = SyntheticConfig(n_users=a.users, n_items=a.items, n_days=a.days, seed=a.seed, calibration=a.calibration)
    summary = write_csv(cfg, a.out)
    print(f"wrote {summary['rows']:,} events of {summary['users']:,} users over {summary['items']:,} items "
          f"to {summary['path']} in {summary['seconds']:.2f} s")
    if a.measure:
        summary["structure"] = measure_structure(pd.read_csv(a.out, dtype={"category_code": str, "brand": str}, keep_default_na=False))
        print(json.dumps(summary["structure"], indent=1))
    return summary


if __name__ == "__main__":
    main()
