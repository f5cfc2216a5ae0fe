"""Measuring the planted structure from the output alone (the CSV / frame, not the generator's state)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from recdata.synthetic.config import CHAINS

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
    df = frame[["event_time", "event_type", "product_id", "category_id", "category_code", "brand", "user_id",
                "user_session"]].copy()
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
             "chance": (float(hhi.reindex(v["category_code"].to_numpy()[1:][same_key]).mean())
                        if same_key.any() else float("nan"))}
    # after a purchase: later new views by that user in that category
    p = df[buy & (df["brand"] != "") & (df["category_code"] != "")].drop_duplicates(["user_id", "category_code"])
    later = v.merge(p[["user_id", "category_code", "brand", "order"]], on=["user_id", "category_code"],
                    suffixes=("", "_bought"))
    later = later[later["order"] > later["order_bought"]]
    brand["views_after_purchase"] = int(len(later))
    brand["bought_brand_after_purchase"] = (float((later["brand"] == later["brand_bought"]).mean())
                                            if len(later) else float("nan"))
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
