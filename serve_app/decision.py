"""The decision role of the Serve graph: the DQN policy re-ranking the union of the retrieval candidates
from the features `models.dqn.features.build_candidate_features` builds (the contract the simulator
trained it on)."""
from __future__ import annotations

import logging

import numpy as np
from ray import serve

from models.dqn.features import build_candidate_features
from serve_app.artifacts import EngineUnavailable, load_artifact_folder, load_error
from serve_app.reload import AliasFollower

logger = logging.getLogger("ray.serve")


class PolicyServer:
    """Q-values of the DQN policy for each candidate of the retrieval union (no Serve in it: the
    `DecisionRanker` deployment holds one, and a live swap replaces it with another).

    Contract (models/dqn/policy.py, models/dqn/features.py): `DecisionPolicy.load(folder)` with attributes
    feature_names, history_len, catalog; `q_values(hist_items [B,L] int64, hist_events [B,L] int8,
    cand_feats [B,K,F] float32, cand_items [B,K] int64) -> [B,K]`; `build_candidate_features(
    engine_scores {role: [K] with NaN where the engine did not propose it}, prices, categories,
    last_category) -> [K,F]`."""

    def __init__(self, uri: str, tracking_uri: str | None = None, fail: bool = False):
        self.uri, self.fail, self.policy, self.load_error = str(uri), fail, None, None
        self._columns: dict[str, np.ndarray | None] = {}
        self._info = {"role": "decision", "uri": self.uri}
        try:
            # Lazy: torch loads in the decision replica only, not in the ingress that imports this class.
            import torch

            from models.dqn.policy import DecisionPolicy

            torch.set_num_threads(1)
            self._no_grad = torch.no_grad
            folder, info = load_artifact_folder(self.uri, tracking_uri)
            self.policy = DecisionPolicy.load(folder)
            self._info.update(info)
            self._info["engine"] = self._info.get("engine") or "dqn"
            n_f, L = len(self.policy.feature_names), int(self.policy.history_len)
            self.policy.q_values(np.full((1, L), -1, np.int64), np.zeros((1, L), np.int8),  # warm-up
                                 np.zeros((1, 2, n_f), np.float32), np.full((1, 2), -1, np.int64))
        except Exception as e:
            self.load_error = load_error(e, self.uri, "decision")
            logger.error("decision: artifact %s failed to load: %s", self.uri, self.load_error)

    def info(self) -> dict:
        status = "error" if self.load_error else ("fault-injected" if self.fail else "ok")
        return {**self._info, "status": status, **({"error": self.load_error} if self.load_error else {})}

    def _column(self, name: str, idx: np.ndarray, dtype, fill):
        if name not in self._columns:  # pandas -> numpy once, not per request
            items = self.policy.catalog.items
            self._columns[name] = items[name].to_numpy() if name in items else None
        col = self._columns[name]
        if col is None:
            return np.full(len(idx), fill, dtype=dtype)
        out = np.full(len(idx), fill, dtype=dtype)
        ok = idx >= 0
        out[ok] = col[idx[ok]]
        return out

    def _history(self, items: list, events: list) -> tuple[np.ndarray, np.ndarray, int | None]:
        """Dense indices (-1 unknown), oldest first, the newest history_len; q_values left-pads."""
        cat, L = self.policy.catalog, int(self.policy.history_len)
        idx = cat.item_index(items[-L:]) if items else np.empty(0, np.int64)
        ev = np.asarray(events[-L:] if len(events) == len(items) else [0] * len(idx), np.int8)
        known = idx[idx >= 0]
        return idx.astype(np.int64), ev, (int(known[-1]) if len(known) else None)

    async def rank_batch(self, reqs: list[dict]) -> list[dict]:
        """Q-values of many requests in one network call. req: history, events, candidates (raw ids),
        engine_scores {role: [K] floats or None} -> {"q": [K] floats (None where not finite)}.
        Candidate lists are right-padded to the longest (padding rows are dropped from the answer;
        candidates never attend to each other)."""
        if self.load_error:
            raise EngineUnavailable(f"decision: artifact {self.uri} failed to load: {self.load_error}")
        if self.fail:
            raise EngineUnavailable("decision: fault injected (fail=true in the config)")
        if not reqs:
            return []
        n_f, L = len(self.policy.feature_names), int(self.policy.history_len)
        K = max(1, max(len(r["candidates"]) for r in reqs))
        h_items = np.full((len(reqs), L), -1, np.int64)
        h_events = np.zeros((len(reqs), L), np.int8)
        feats = np.zeros((len(reqs), K, n_f), np.float32)
        cand = np.full((len(reqs), K), -1, np.int64)
        for b, req in enumerate(reqs):
            cands = list(req["candidates"])
            cidx = self.policy.catalog.item_index(cands) if cands else np.empty(0, np.int64)
            items, events, last = self._history(list(req.get("history") or []), list(req.get("events") or []))
            if len(items):
                h_items[b, -len(items):], h_events[b, -len(items):] = items, events
            scores = {k: np.array([np.nan if v is None else v for v in vals], np.float64)
                      for k, vals in req["engine_scores"].items()}
            last_cat = self._column("category", np.array([last]), object, None)[0] if last is not None else None
            if cands:
                prices = self._column("price", cidx, np.float64, np.nan)
                categories = self._column("category", cidx, object, None)
                feats[b, :len(cands)] = build_candidate_features(scores, prices, categories, last_cat)
                cand[b, :len(cands)] = cidx
        with self._no_grad():  # unknown candidates stay -1: the network scores them from features
            q = self.policy.q_values(h_items, h_events, feats, cand)
        q = np.asarray(q.detach().cpu().numpy() if hasattr(q, "detach") else q, np.float64)  # [B, K]
        return [{"q": [float(v) if np.isfinite(v) else None for v in q[b, :len(r["candidates"])]]}
                for b, r in enumerate(reqs)]


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=32)
class DecisionRanker:
    """The decision role: a `PolicyServer`, kept on the version its registry alias points at
    (`reload_s`, serve_app/reload.py); the old policy ranks until the new one has loaded and answered."""

    def __init__(self, uri: str, tracking_uri: str | None = None, fail: bool = False, reload_s: float = 0.0):
        self.server = PolicyServer(uri, tracking_uri, fail)

        def load(pinned: str) -> PolicyServer:
            new = PolicyServer(pinned, tracking_uri, fail)  # warm-up call inside: a broken policy keeps its error
            new.uri = new._info["uri"] = str(uri)
            new._info["pinned"] = pinned
            return new

        self.follower = AliasFollower(uri, self.server._info.get("registry_version"), reload_s, load,
                                      lambda new: new.load_error, lambda new: setattr(self, "server", new),
                                      what="decision")

    def info(self) -> dict:
        return self.server.info()

    async def rank_batch(self, reqs: list[dict]) -> list[dict]:
        return await self.server.rank_batch(reqs)
