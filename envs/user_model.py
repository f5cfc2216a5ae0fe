"""The shopper's model, learned from a real event log: next-item preferences, funnel, prices, sessions.

Nothing here is typed in by hand: `UserModel.fit(log, catalog)` derives every number from the log at
run time and `save()` writes them (calibration.json + arrays.npz) so a run can be reproduced and
inspected. Numbers that logs cannot identify (click-through of *shown* items, how fast shoppers tire:
logs hold no impressions) are `SimConfig` fields in envs/shopping.py, each with its reason.

Next-item model (the seam for a stronger sequence model): a hierarchical item-to-item transition model
fitted on consecutive distinct items of the training sessions,

    P(j | i) = lam_i * C[i, j] / n_i + (1 - lam_i) * P(cat_j | cat_i) * P(j | cat_j),  lam_i = n_i / (n_i + kappa)

(Jelinek-Mercer smoothing of item transitions toward category transitions x in-category popularity),
stored as each item's top-M successors. Anything with `prob(last [N], items [N, K]) -> [N, K]` and
`top(last [N]) -> items [N, M]` can replace it (e.g. the SASRec engine's softmax over next items).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from recdata.dataset import Catalog
from recdata.schema import EventLog


@dataclass
class Calibration:
    """Figures measured on the log's training sessions (all derived in `UserModel.fit`)."""

    n_train_sessions: int
    n_heldout_sessions: int
    mean_session_items: float      # distinct items engaged per session -> base leave probability
    conv_per_view: float           # P(cart or purchase | item viewed) (strongest event per session-item)
    purchase_share: float          # P(purchase | cart or purchase)
    views_before_purchase: float   # mean distinct items viewed in a session before its first purchase
    log_price_spread: float        # std of log(price / price of the session's first item)
    median_price: float
    leave_after_purchase: float    # share of purchases that end their session
    funnel_source: str             # which log the funnel figures come from
    # Between sessions (the whole log, by user; NaN when the log has no session column). A short log
    # censors returns (a user may come back after its end), so these are lower bounds of a longer window.
    sessions_per_user: float = float("nan")
    return_rate: float = float("nan")               # P(the same user starts another session later in the log)
    return_rate_after_purchase: float = float("nan")  # ... after a session with a purchase
    return_logit_purchase: float = float("nan")     # log odds ratio of returning, purchase vs no purchase
    next_session_new_category: float = float("nan")  # share of returns whose first item's category is new
    log_window_hours: float = float("nan")          # time the log spans


class TransitionModel:
    """Hierarchical next-item model (see module docstring); arrays only, vectorized lookups."""

    def __init__(self, nbr: np.ndarray, nbr_cnt: np.ndarray, row_n: np.ndarray, item_cat: np.ndarray,
                 cat_trans: np.ndarray, in_cat: np.ndarray, kappa: float):
        self.nbr, self.nbr_cnt, self.row_n = nbr, nbr_cnt, row_n            # [I, M], [I, M], [I]
        self.item_cat, self.cat_trans, self.in_cat = item_cat, cat_trans, in_cat  # [I], [C, C], [I]
        self.kappa = kappa

    @classmethod
    def fit(cls, seqs: list[np.ndarray], n_items: int, item_cat: np.ndarray, counts: np.ndarray,
            m: int = 32, kappa: float = 2.0) -> "TransitionModel":
        a = np.concatenate([s[:-1] for s in seqs if len(s) > 1] or [np.zeros(0, np.int64)])
        b = np.concatenate([s[1:] for s in seqs if len(s) > 1] or [np.zeros(0, np.int64)])
        pairs = pd.DataFrame({"a": a, "b": b}).value_counts().reset_index(name="n")
        pairs = pairs.sort_values(["a", "n"], ascending=[True, False], kind="stable")
        pairs["rank"] = pairs.groupby("a").cumcount()
        pairs = pairs[pairs["rank"] < m]
        nbr = np.full((n_items, m), -1, np.int64)
        nbr_cnt = np.zeros((n_items, m), np.float32)
        nbr[pairs["a"].to_numpy(), pairs["rank"].to_numpy()] = pairs["b"].to_numpy()
        nbr_cnt[pairs["a"].to_numpy(), pairs["rank"].to_numpy()] = pairs["n"].to_numpy()
        row_n = np.bincount(a, minlength=n_items).astype(np.float32)
        n_cat = int(item_cat.max()) + 1
        ct = np.ones((n_cat, n_cat), np.float64)  # add-one: every category can follow every other
        np.add.at(ct, (item_cat[a], item_cat[b]), 1.0)
        np.add.at(ct, (np.arange(n_cat), np.arange(n_cat)), 1.0)
        cat_trans = (ct / ct.sum(1, keepdims=True)).astype(np.float32)
        c1 = counts.astype(np.float64) + 1.0
        in_cat = (c1 / np.bincount(item_cat, weights=c1, minlength=n_cat)[item_cat]).astype(np.float32)
        return cls(nbr, nbr_cnt, row_n, item_cat, cat_trans, in_cat, kappa)

    def prob(self, last: np.ndarray, items: np.ndarray) -> np.ndarray:
        """P(items | last): last [N], items [N, K] -> [N, K]."""
        n = self.row_n[last][:, None]                                        # [N, 1]
        lam = n / (n + self.kappa)
        hit = self.nbr[last][:, None, :] == items[:, :, None]               # [N, K, M]
        c = (hit * self.nbr_cnt[last][:, None, :]).sum(-1)                  # [N, K]
        backoff = self.cat_trans[self.item_cat[last][:, None], self.item_cat[items]] * self.in_cat[items]
        return lam * c / np.maximum(n, 1.0) + (1.0 - lam) * backoff

    def top(self, last: np.ndarray) -> np.ndarray:
        """Top-M observed successors [N, M] (-1 where fewer)."""
        return self.nbr[last]

    def arrays(self) -> dict:
        return {k: getattr(self, k) for k in ("nbr", "nbr_cnt", "row_n", "item_cat", "cat_trans", "in_cat")}


class UserModel:
    """Everything the simulator knows about shoppers and items, fitted from one log."""

    def __init__(self, catalog: Catalog, trans: TransitionModel, counts: np.ndarray, log_price: np.ndarray,
                 has_price: bool, brand: np.ndarray, start_items: np.ndarray, cal: Calibration,
                 heldout: pd.DataFrame, categories: np.ndarray):
        self.catalog, self.trans, self.counts = catalog, trans, counts
        self.log_price, self.has_price, self.brand = log_price, has_price, brand
        self.start_items, self.cal, self.heldout = start_items, cal, heldout
        self.categories = categories  # category label per category code
        self.item_cat = trans.item_cat
        self.n_items = catalog.n_items
        order = np.argsort(-counts, kind="stable")
        self.popular = order[: max(10, min(100, self.n_items // 10))]
        # items grouped by category, most popular first (for "same category" retrieval)
        by_cat = np.lexsort((-counts, self.item_cat))
        self.cat_items = by_cat
        self.cat_start = np.searchsorted(self.item_cat[by_cat], np.arange(len(categories) + 1))

    @classmethod
    def fit(cls, log: EventLog, catalog: Catalog, holdout_frac: float = 0.2, seed: int = 0,
            funnel_log: EventLog | None = None, funnel_source: str = "") -> "UserModel":
        ev = log.events
        iidx = catalog.item_index(ev["item"].to_numpy())
        f = pd.DataFrame({"s": ev["session"].to_numpy() if "session" in ev else ev["user"].to_numpy(),
                          "u": ev["user"].to_numpy(),
                          "i": iidx, "ts": ev["ts"].to_numpy(), "e": ev["event"].to_numpy(np.int8)})
        f = f[f["i"] >= 0].reset_index(drop=True)
        f["pos"] = np.arange(len(f))
        f = f.sort_values(["s", "ts", "pos"], kind="stable")
        # hold out the latest-starting sessions (by time; random when the log has no real clock)
        start = f.groupby("s")["ts"].min()
        rng = np.random.default_rng(seed)
        key = start.to_numpy() + rng.random(len(start)) * (1e-9 if start.nunique() > 1 else 1.0)
        n_hold = int(round(holdout_frac * len(start)))
        held = set(start.index[np.argsort(key, kind="stable")[len(start) - n_hold:]]) if n_hold else set()
        is_held = f["s"].isin(held).to_numpy()
        train, heldout = f[~is_held], f[is_held]

        items = catalog.items
        cat_col = None
        for c in ("category", "category_id", "genres"):
            if c in items:
                cat_col = items[c].astype(str).replace({"": np.nan, "nan": np.nan, "None": np.nan})
                if c == "category" and "category_id" in items:  # REES46: empty category_code -> category id
                    cat_col = cat_col.fillna(items["category_id"].astype(str))
                break
        cat_col = (cat_col if cat_col is not None else pd.Series(["all"] * len(items))).fillna("unknown")
        codes, categories = pd.factorize(cat_col)
        item_cat = codes.astype(np.int64)
        counts = np.bincount(train["i"].to_numpy(), minlength=catalog.n_items).astype(np.float32)

        # distinct consecutive items per session (repeat views collapse, like the shopper's "last item")
        t = train.loc[~train.duplicated(["s", "i"])]
        seqs = [g.to_numpy() for _, g in t.groupby("s", sort=False)["i"]]
        trans = TransitionModel.fit(seqs, catalog.n_items, item_cat, counts)
        starts = t.groupby("s", sort=False)["i"].first().to_numpy()

        price = items["price"].to_numpy(np.float64) if "price" in items else np.full(len(items), np.nan)
        has_price = bool(np.isfinite(price).any())
        if has_price:
            cat_med = pd.Series(price).groupby(item_cat).transform("median").to_numpy()
            price = np.where(np.isfinite(price) & (price > 0), price, cat_med)
            price = np.where(np.isfinite(price) & (price > 0), price, np.nanmedian(price[price > 0]))
        else:
            price = np.ones(len(items))
        log_price = np.log(price).astype(np.float32)
        brand = pd.factorize(items["brand"].astype(str))[0] if "brand" in items else np.zeros(len(items), np.int64)

        cal = cls._calibrate(train, heldout, log_price, funnel_log, catalog, funnel_source)
        if "session" in ev:
            cal = replace(cal, **cls._returns(f, item_cat))
        return cls(catalog, trans, counts, log_price, has_price, np.asarray(brand, np.int64), starts, cal,
                   heldout.reset_index(drop=True), np.asarray(categories, dtype=object))

    @staticmethod
    def _calibrate(train: pd.DataFrame, heldout: pd.DataFrame, log_price: np.ndarray,
                   funnel_log: EventLog | None, catalog: Catalog, funnel_source: str) -> Calibration:
        strongest = train.groupby(["s", "i"], sort=False)["e"].max()
        per_session = strongest.groupby(level=0).size()
        src = train
        if int((train["e"] == 2).sum()) < 20:
            if funnel_log is None:
                raise ValueError("this log has fewer than 20 purchases, so it cannot calibrate the funnel; pass "
                                 "funnel_log= (e.g. the REES46 sample) or fit on a log with purchases")
            fe = funnel_log.events
            src = pd.DataFrame({"s": fe["session"].to_numpy() if "session" in fe else fe["user"].to_numpy(),
                                "i": fe["item"].to_numpy(), "ts": fe["ts"].to_numpy(), "e": fe["event"].to_numpy()})
        else:
            funnel_source = "the log itself"
        st = src.groupby(["s", "i"], sort=False)["e"].max()
        conv = float((st >= 1).mean())
        purchase_share = float((st == 2).sum() / max((st >= 1).sum(), 1))
        # views before the first purchase, and whether the purchase ended the session
        d = src.loc[~src.duplicated(["s", "i"])].copy()
        d["k"] = d.groupby("s").cumcount()
        first_buy = src[src["e"] == 2].drop_duplicates("s").set_index("s")["i"]
        kb = d.set_index(["s", "i"]).reindex(list(first_buy.items()))["k"].dropna()
        n_items_s = d.groupby("s").size()
        last_k = n_items_s.reindex([s for s, _ in kb.index]).to_numpy() - 1
        leave_after = float(np.mean(kb.to_numpy() >= last_k)) if len(kb) else 0.5
        first_lp = train.groupby("s")["i"].transform("first").to_numpy()
        spread = float(np.std(log_price[train["i"].to_numpy()] - log_price[first_lp])) if len(train) else 0.5
        return Calibration(
            n_train_sessions=int(train["s"].nunique()), n_heldout_sessions=int(heldout["s"].nunique()),
            mean_session_items=float(per_session.mean()), conv_per_view=conv, purchase_share=purchase_share,
            views_before_purchase=float(kb.mean() + 1) if len(kb) else 3.0, log_price_spread=max(spread, 0.05),
            median_price=float(np.exp(np.median(log_price))), leave_after_purchase=leave_after,
            funnel_source=funnel_source)

    @staticmethod
    def _returns(f: pd.DataFrame, item_cat: np.ndarray) -> dict:
        """Return statistics between a user's sessions (f: s session, u user, i item, ts, e event)."""
        g = f.groupby("s", sort=False)
        ses = pd.DataFrame({"u": g["u"].first(), "start": g["ts"].min(), "buy": g["e"].max() == 2,
                            "first_cat": item_cat[g["i"].first().to_numpy()]})
        ses["cats"] = g["i"].agg(lambda x: frozenset(item_cat[x.to_numpy()].tolist()))
        ses = ses.sort_values(["u", "start"], kind="stable")
        nxt = ses.groupby("u", sort=False)
        ret = nxt["start"].shift(-1).notna()
        nxt_cat = nxt["first_cat"].shift(-1)
        new_cat = [c not in cs for c, cs, r in zip(nxt_cat, ses["cats"], ret) if r]

        def odds(p: float) -> float:
            return p / max(1 - p, 1e-9)
        rate, buy = float(ret.mean()), ses["buy"].to_numpy()
        after_buy = float(ret[buy].mean()) if buy.any() else float("nan")
        no_buy = float(ret[~buy].mean()) if (~buy).any() else float("nan")
        lor = (float(np.log(odds(after_buy) / odds(no_buy))) if min(after_buy, no_buy) > 0 else float("nan"))
        span = float(f["ts"].max() - f["ts"].min())
        return {"sessions_per_user": float(len(ses) / max(ses["u"].nunique(), 1)), "return_rate": rate,
                "return_rate_after_purchase": after_buy, "return_logit_purchase": lor,
                "next_session_new_category": float(np.mean(new_cat)) if new_cat else float("nan"),
                "log_window_hours": span / 3600.0}

    # -- persistence ------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "calibration.json").write_text(json.dumps(asdict(self.cal), indent=2))
        self.catalog.save(folder / "catalog")
        np.savez_compressed(folder / "arrays.npz", counts=self.counts, log_price=self.log_price, brand=self.brand,
                            start_items=self.start_items, has_price=np.array(self.has_price),
                            categories=self.categories.astype(str), kappa=np.array(self.trans.kappa),
                            **self.trans.arrays())
        self.heldout.to_parquet(folder / "heldout.parquet", index=False)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "UserModel":
        folder = Path(folder)
        a = np.load(folder / "arrays.npz", allow_pickle=False)
        trans = TransitionModel(a["nbr"], a["nbr_cnt"], a["row_n"], a["item_cat"], a["cat_trans"], a["in_cat"],
                                float(a["kappa"]))
        cal = Calibration(**json.loads((folder / "calibration.json").read_text()))
        return cls(Catalog.load(folder / "catalog"), trans, a["counts"], a["log_price"], bool(a["has_price"]),
                   a["brand"], a["start_items"], cal, pd.read_parquet(folder / "heldout.parquet"),
                   a["categories"].astype(object))
