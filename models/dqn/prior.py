"""The decision engine's myopic prior: the expected immediate reward of showing each candidate, from response
models fitted on logged impressions -- the `expected_revenue` baseline's estimate (envs/policies.py), carried
inside the DQN artifact so that the Q-network learns only what that estimate misses:

    Q(s, a) = prior(s, a) + residual(s, a)        residual = 0 at initialisation (models/dqn/network.py)

An untrained DQN therefore ranks as the best myopic rule does, and training moves it only where the
long-term targets disagree with the myopic estimate (residual learning over a known baseline; the same idea
as a Q-function initialised from a behaviour prior). Without it, the DQN had to learn price-weighted
purchase rates from noisy TD targets and ended 22% below the myopic rule it was meant to beat.

    prior(s, k) = P(click) * (view + P(convert | click) * ((1 - s) * cart + s * value(price_k)))
                  + (1 - P(click)) * skip

P(click) and P(convert | click) are gradient-boosted classifiers (scikit-learn) over `response_features`;
s = P(purchase | convert); value = the reward's price-weighted purchase. Everything is computed from what
serving has too: the history (items, events), the candidates' features and ids, and item log prices.
Saved with skops (no pickle: loading trusts only the tree predictor type besides skops' defaults).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from reccore.threads import ThreadLimit

SKIP_EVENT = 3                     # history event code of a shown, not clicked item (network.SKIP; numpy-only here)
TRUSTED_TYPES = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
N_EXTRA = 4                        # response features beyond the candidate features
_THREADS = ThreadLimit()


def one_thread():
    """Context that runs the boosted models on one thread (OpenMP threads spin-wait on a shared CPU: ~15x
    slower here with 2); its library scan happens once, on the first call, after the models are loaded."""
    return _THREADS(1)


@dataclass
class RewardTerms:
    """The reward the prior's expectation is taken of (envs.shopping.RewardConfig's values, and the
    median price that normalises purchases)."""

    skip: float
    view: float
    cart: float
    purchase: float
    price_weight: float
    price_cap: float
    median_price: float
    purchase_share: float
    """P(purchase | convert), measured on the same logged impressions."""

    def purchase_value(self, log_price: np.ndarray) -> np.ndarray:
        mult = np.minimum(np.exp(self.price_weight * (log_price - np.log(self.median_price))), self.price_cap)
        return self.purchase * mult


def response_features(hist_items: np.ndarray, hist_events: np.ndarray, cand_feats: np.ndarray,
                      cand_items: np.ndarray, cand_log_price: np.ndarray, item_log_price: np.ndarray) -> np.ndarray:
    """Per-candidate inputs of the response models [B, K, F + 4]: the candidate features, whether the
    candidate was shown in the history (at all / as a skip), and its log price relative to the last engaged
    history item's and to the mean of the engaged history items'. History: [B, L], most recent last, -1 pad;
    item_log_price: log price per dense item index (history items index into it)."""
    h = np.asarray(hist_items, np.int64)
    e = np.asarray(hist_events, np.int64)
    c = np.asarray(cand_items, np.int64)
    same = (c[:, :, None] == h[:, None, :]) & (h >= 0)[:, None, :]            # [B, K, L]
    shown = same.any(-1)
    skipped = (same & (e == SKIP_EVENT)[:, None, :]).any(-1)
    engaged = (h >= 0) & (e < SKIP_EVENT)
    lp = np.where(h >= 0, item_log_price[np.maximum(h, 0)], 0.0)
    mean_lp = (lp * engaged).sum(1) / np.maximum(engaged.sum(1), 1)             # [B]
    # the most recent engaged item (the shopper's "last item"); none engaged: no relative price
    last_pos = h.shape[1] - 1 - np.argmax(engaged[:, ::-1], axis=1)
    any_engaged = engaged.any(1)
    last_lp = np.where(any_engaged, lp[np.arange(len(h)), last_pos], np.nan)
    clp = np.asarray(cand_log_price, np.float64)
    rel_last = np.where(any_engaged[:, None], clp - last_lp[:, None], 0.0)
    rel_mean = np.where(any_engaged[:, None], clp - mean_lp[:, None], 0.0)
    return np.concatenate([np.asarray(cand_feats, np.float32), shown[..., None], skipped[..., None],
                           rel_last[..., None], rel_mean[..., None]], axis=-1).astype(np.float32)


class ResponsePrior:
    """Expected immediate reward per candidate from fitted click / conversion models (see the module doc)."""

    def __init__(self, click_model, convert_model, terms: RewardTerms, item_log_price: np.ndarray):
        self.click_model, self.convert_model, self.terms = click_model, convert_model, terms
        self.item_log_price = np.asarray(item_log_price, np.float32)

    def candidate_log_price(self, cand_items: np.ndarray, cand_feats: np.ndarray) -> np.ndarray:
        """Log price per candidate: the catalog's (as the simulator and the user model impute it) for known
        items; for items the artifact's catalog does not know (-1), the price in the features (log1p(price),
        when has_price), else the median price."""
        c = np.asarray(cand_items, np.int64)
        known = np.where(c >= 0, self.item_log_price[np.maximum(c, 0)], 0.0)
        f = np.asarray(cand_feats, np.float64)
        from_feats = np.where(f[..., 7] > 0, np.log(np.maximum(np.expm1(f[..., 4]), 1e-9)),
                              np.log(self.terms.median_price))
        return np.where(c >= 0, known, from_feats)

    def features(self, hist_items, hist_events, cand_feats, cand_items) -> np.ndarray:
        return response_features(hist_items, hist_events, cand_feats, cand_items,
                                 self.candidate_log_price(cand_items, cand_feats), self.item_log_price)

    def expected_reward(self, hist_items, hist_events, cand_feats, cand_items) -> np.ndarray:
        """[B, K] expected immediate reward of showing each candidate (float32)."""
        x = self.features(hist_items, hist_events, cand_feats, cand_items)
        b, k, f = x.shape
        if b * k == 0:
            return np.zeros((b, k), np.float32)
        flat = x.reshape(b * k, f)
        with one_thread():
            pc = self.click_model.predict_proba(flat)[:, 1].reshape(b, k)
            pq = self.convert_model.predict_proba(flat)[:, 1].reshape(b, k)
        t = self.terms
        value = t.purchase_value(self.candidate_log_price(cand_items, cand_feats))
        s = t.purchase_share
        return (pc * (t.view + pq * ((1 - s) * t.cart + s * value)) + (1 - pc) * t.skip).astype(np.float32)

    # -- artifact IO ------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        import skops.io as sio  # lazy: only where a prior is written or read

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        sio.dump(self.click_model, folder / "click_model.skops")
        sio.dump(self.convert_model, folder / "convert_model.skops")
        np.save(folder / "item_log_price.npy", self.item_log_price)
        (folder / "prior.json").write_text(json.dumps({"kind": "expected_revenue", "terms": asdict(self.terms),
                                                      "n_features": int(self.click_model.n_features_in_)}, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "ResponsePrior":
        import skops.io as sio

        folder = Path(folder)
        if not (folder / "prior.json").exists():
            raise FileNotFoundError(f"{folder} holds no response prior (prior.json); it is written by "
                                    "`python -m trainers.train_dqn` (--prior expected_revenue)")
        meta = json.loads((folder / "prior.json").read_text())
        models = []
        for name in ("click_model", "convert_model"):
            path = folder / f"{name}.skops"
            untrusted = set(sio.get_untrusted_types(file=path)) - set(TRUSTED_TYPES)
            if untrusted:
                raise ValueError(f"{path} holds types this loader does not trust: {sorted(untrusted)}; "
                                 "retrain the DQN with this version to rewrite its prior")
            models.append(sio.load(path, trusted=TRUSTED_TYPES))
        return cls(models[0], models[1], RewardTerms(**meta["terms"]), np.load(folder / "item_log_price.npy"))
