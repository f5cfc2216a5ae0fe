"""The synthetic catalog: categories (calibrated shares, brand mix, prices), items sorted by (category,
brand) with Zipf popularity, and the compatible accessories of each item."""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from recdata.synthetic.config import CHAINS, MIN_ITEMS_PER_CATEGORY, PLANTED_CATEGORIES, SyntheticConfig

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
        name = "".join(rng.choice(cons) + rng.choice(vow) for _ in range(k))
        name += str(rng.choice(["", "x", "n", "o", "ia"]))
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


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
            codes.append(c["code"])
            ev_share.append(c["event_share"])
            it_share.append(c["item_share"])
            brand_mix.append(c["brands"])
            price_key.append(c["code"].split(".")[0])
            no_brand.append(c["missing_brand_item_share"])
        for code, p in PLANTED_CATEGORIES.items():
            like = by_code[p["brands_like"]]
            codes.append(code)
            ev_share.append(p["event_share"])
            it_share.append(p["event_share"])
            brand_mix.append(like["brands"])
            price_key.append(code)
            no_brand.append(like["missing_brand_item_share"])
        n_named = len(codes)
        budget = config.n_items // MIN_ITEMS_PER_CATEGORY - n_named
        if budget < 1:
            raise ValueError(
                f"n_items={config.n_items} is too small for {n_named + 1} categories of at least "
                f"{MIN_ITEMS_PER_CATEGORY} items; use --items {MIN_ITEMS_PER_CATEGORY * (n_named + 1)} or more")
        n_unknown = int(min(unknown["n_category_ids"], max(1, config.n_items // 60), budget))
        z = _zipf(n_unknown, unknown["zipf_exponent"])
        for j in range(n_unknown):
            codes.append("")
            ev_share.append(unknown["event_share"] * z[j])
            it_share.append(unknown["item_share"] * z[j])
            brand_mix.append(unknown["brands"])
            price_key.append("unknown")
            no_brand.append(unknown["missing_brand_item_share"])
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
