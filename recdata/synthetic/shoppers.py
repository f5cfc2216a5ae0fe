"""Shoppers: sessions generated step by step (session 0 of every user, then session 1, ...), each step
vectorized over the users that still have a session and over those sessions' events."""
from __future__ import annotations


import numpy as np

from recdata.synthetic.catalog import SyntheticCatalog, _sample_cdf
from recdata.synthetic.config import SESSION_TIMEOUT_S, SyntheticConfig

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
