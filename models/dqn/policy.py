"""DecisionPolicy: the trained Q-network as a plain-torch artifact for serving (Ray is never imported).

Artifact folder (written by `DecisionPolicy.save`, from RLlib by `trainers.dqn_selection.export_policy`):
    manifest.json   engine "dqn", network config, feature names, history convention
    catalog/        recdata Catalog: history item ids -> the dense indices the network was trained on
    weights.pt      the Q-network's state_dict (tensors only; loaded with weights_only=True)
    prior/          with a residual network (network.prior): the myopic prior's response models and item
                    log prices (models/dqn/prior.py); q_values computes the prior itself

Inputs of `q_values` (the serving contract):
    hist_items  [B, L] int64  dense item indices (catalog.item_index), most recent LAST, pad = -1 on
                              the left (shorter histories are left-padded; longer ones keep the last L;
                              items the catalog does not know are -1 too)
    hist_events [B, L] int8   0 view, 1 cart, 2 purchase, 3 skip (shown, not clicked); any value at pads
    cand_feats  [B, K, F]     models.dqn.features.build_candidate_features(...) per request, F = len(feature_names)
    cand_items  [B, K] int64  dense candidate indices (-1 for items the catalog does not know)
-> Q [B, K] float32: expected discounted reward of showing each candidate now (higher = better).
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from models.dqn.network import QNetwork, QNetworkConfig
from models.dqn.prior import ResponsePrior
from recdata.dataset import Catalog

ARTIFACT_VERSION = 1


class DecisionPolicy:
    name = "dqn"

    def __init__(self, network: QNetwork, catalog: Catalog, feature_names: tuple[str, ...], meta: dict | None = None,
                 prior: ResponsePrior | None = None):
        if network.cfg.prior and prior is None:
            raise ValueError("a residual Q-network (cfg.prior) needs its ResponsePrior")
        self.prior = prior if network.cfg.prior else None
        self.network = network.eval()
        self.catalog = catalog
        self.feature_names = tuple(feature_names)
        self.history_len = network.cfg.history_len
        self.meta = dict(meta or {})
        if len(self.feature_names) != network.cfg.n_features:
            raise ValueError(f"{len(self.feature_names)} feature names for a network of "
                             f"{network.cfg.n_features} features")

    # -- artifact IO ------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        manifest = {
            "engine": self.name,
            "artifact_version": ARTIFACT_VERSION,
            "network": dataclasses.asdict(self.network.cfg),
            "feature_names": list(self.feature_names),
            "history": "most recent last; pad = -1 on the left; events 0 view 1 cart 2 purchase 3 skip",
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **{k: v for k, v in self.meta.items() if k not in ("engine", "network", "feature_names")},
        }
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        self.catalog.save(folder / "catalog")
        torch.save({k: v.detach().cpu() for k, v in self.network.state_dict().items()}, folder / "weights.pt")
        if self.prior is not None:
            self.prior.save(folder / "prior")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "DecisionPolicy":
        folder = Path(folder)
        path = folder / "manifest.json"
        if not path.exists():
            raise FileNotFoundError(f"{folder} is not a DQN artifact (no manifest.json); "
                                    "run `python -m trainers.train_dqn`")
        manifest = json.loads(path.read_text())
        if manifest.get("engine") != cls.name:
            raise TypeError(f"{folder} holds a {manifest.get('engine')!r} artifact, not 'dqn'")
        net = QNetwork(QNetworkConfig(**manifest["network"]))
        net.load_state_dict(torch.load(folder / "weights.pt", map_location="cpu", weights_only=True))
        meta = {k: v for k, v in manifest.items() if k not in ("network", "feature_names")}
        prior = ResponsePrior.load(folder / "prior") if net.cfg.prior else None
        return cls(net, Catalog.load(folder / "catalog"), manifest["feature_names"], meta, prior)

    # -- inference --------------------------------------------------------------------------------
    @torch.no_grad()
    def q_values(self, hist_items: np.ndarray, hist_events: np.ndarray, cand_feats: np.ndarray,
                 cand_items: np.ndarray) -> np.ndarray:
        hist_items = np.asarray(hist_items, np.int64)
        hist_events = np.asarray(hist_events)
        cand_feats = np.asarray(cand_feats, np.float32)
        cand_items = np.asarray(cand_items, np.int64)
        if hist_items.ndim != 2 or hist_items.shape != hist_events.shape:
            raise ValueError(f"hist_items {hist_items.shape} and hist_events {hist_events.shape} must both be [B, L]")
        if cand_feats.ndim != 3 or cand_feats.shape[-1] != len(self.feature_names):
            raise ValueError(f"cand_feats must be [B, K, {len(self.feature_names)}] (feature_names); "
                             f"got {cand_feats.shape}")
        if cand_items.shape != cand_feats.shape[:2]:
            raise ValueError(f"cand_items {cand_items.shape} must be [B, K] matching cand_feats {cand_feats.shape}")
        hist_items, hist_events = self.fit_history(hist_items, hist_events)
        prior = None
        if self.prior is not None:
            prior = torch.from_numpy(self.prior.expected_reward(hist_items, hist_events, cand_feats, cand_items))
        q = self.network(torch.from_numpy(hist_items), torch.from_numpy(hist_events.astype(np.int64)),
                         torch.from_numpy(cand_feats), torch.from_numpy(cand_items), prior)
        return q.numpy().astype(np.float32)

    def fit_history(self, items: np.ndarray, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[B, any L] -> [B, history_len]: keep the last history_len, left-pad with -1."""
        L = self.history_len
        if items.shape[1] >= L:
            return items[:, -L:], events[:, -L:]
        padw = ((0, 0), (L - items.shape[1], 0))
        return np.pad(items, padw, constant_values=-1), np.pad(events, padw, constant_values=0)

    def rank(self, history_items, history_events, cand_items, cand_feats,
             raw_ids: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """One request: history (oldest first) + K candidates -> (order of candidate positions, best
        first; Q-values [K]). With raw_ids=True, items are catalog ids and are mapped here."""
        h = np.asarray(history_items)
        c = np.asarray(cand_items)
        if raw_ids:
            h = self.catalog.item_index(h) if len(h) else np.zeros(0, np.int64)
            c = self.catalog.item_index(c)
        ev = np.asarray(history_events if history_events is not None else np.zeros(len(h)), np.int64)
        if len(ev) != len(h):
            raise ValueError(f"{len(h)} history items but {len(ev)} events")
        q = self.q_values(np.asarray(h, np.int64).reshape(1, -1), ev.reshape(1, -1),
                          np.asarray(cand_feats, np.float32)[None], np.asarray(c, np.int64).reshape(1, -1))[0]
        return np.argsort(-q, kind="stable"), q
