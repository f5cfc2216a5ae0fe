"""Engine deployments of the Serve graph: thin wrappers that load a saved artifact and answer.

- `RetrievalEngine`: ONE class for every retrieval role (sequence, discovery, similarity, popularity).
  It loads any `models.base.Engine` artifact by URI (`models:/sasrec@champion`, `runs:/...` or a local
  folder) and answers `recommend` (top-n candidates for a history, business filters applied) through
  `@serve.batch`: concurrent requests are scored as one `HistoryBatch`, one `engine.score` call. It
  also answers `similar` (item -> items, text -> items) for the similarity role.
- `DecisionRanker`: the DQN policy (`models.dqn.policy.DecisionPolicy`) re-ranking the union of the
  retrieval candidates from features built by `models.dqn.features.build_candidate_features`.
- `SessionStore`: live events appended by `POST /events`, bounded (LRU on sessions, TTL, max length).

Ids cross the handles as the catalog's raw ids (int or str), never dense indices: each artifact maps
them with its own catalog, so engines trained on different snapshots of the catalog still compose.
A deployment whose artifact fails to load stays up and answers every call with that reason, so the
ingress degrades instead of the whole application failing to deploy.
"""
from __future__ import annotations

import asyncio
import collections
import functools
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
from ray import serve

from recdata.metrics import NEG_INF, top_k

logger = logging.getLogger("ray.serve")
EVENT_CODES = {"view": 0, "cart": 1, "purchase": 2}


def _load_error(e: Exception, uri: str, role: str) -> str:
    msg = f"{type(e).__name__}: {e}"
    if str(uri).startswith("models:/") and "not found" in str(e):
        msg += (f" -- train and register it first (python -m trainers.train_<engine>), or set "
                f"args.engines.{role} (or args.decision) to an artifact folder")
    return msg


class EngineUnavailable(RuntimeError):
    """The deployment cannot answer (artifact failed to load, or a fault drill says so)."""


def registry_version(uri: str) -> str | None:
    """`models:/name@alias` -> the version the alias points at; `models:/name/3` -> "3"."""
    if not str(uri).startswith("models:/"):
        return None
    rest = str(uri)[len("models:/"):]
    if "@" in rest:
        from reccore import tracking

        name, alias = rest.split("@", 1)
        return tracking.model_version(name, alias)
    parts = rest.split("/")
    return parts[1] if len(parts) == 2 and parts[1].isdigit() else None


def load_artifact_folder(uri: str, tracking_uri: str | None = None) -> tuple[Path, dict]:
    """Resolve a URI to a local folder (downloading from MLflow) and describe it for /version."""
    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    from reccore import tracking

    for attempt in range(4):  # a fresh sqlite store being created by a sibling replica: retry
        try:
            folder = tracking.resolve_artifact(uri)
            break
        except FileNotFoundError:
            raise
        except Exception as e:
            if attempt == 3 or not any(w in str(e) for w in ("sqlite", "alembic", "locked", "migration")):
                raise
            time.sleep(0.5 * (attempt + 1))
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    info = {
        "uri": str(uri),
        "engine": manifest.get("engine"),
        "registry_version": registry_version(uri),
        "saved_at": manifest.get("saved_at"),
        "artifact_version": manifest.get("artifact_version"),
    }
    return folder, info


def load_for_serving(folder: Path):
    """(scorer, runtime name) of an engine artifact. A SASRec artifact is served by its TFLite model
    through the LiteRT interpreter (no TensorFlow in the replica; ~3x faster than the tf.function on
    one sequence, and it runs a short history at its own length); every other engine loads as saved."""
    manifest = json.loads((Path(folder) / "manifest.json").read_text()) if (Path(folder) / "manifest.json").exists() else {}
    if manifest.get("engine") == "sasrec" and (Path(folder) / "model.tflite").exists():
        from models.sasrec.lite import SasrecTFLite

        return SasrecTFLite(folder), "tflite"
    from models.base import Engine

    return Engine.load(folder), "python"


# -- business filters over a catalog -------------------------------------------------------------------
@functools.lru_cache(maxsize=256)
def _allowed(catalog_id: int, category: str | None, min_price: float | None, max_price: float | None):
    catalog = _CATALOGS[catalog_id]
    items = catalog.items
    mask = np.ones(catalog.n_items, bool)
    if category is not None:
        col = "category" if "category" in items else ("genres" if "genres" in items else None)
        if col is None:
            mask[:] = False  # no category information: nothing is known to match
        else:
            cats = items[col].astype("string").fillna("").str.lower()
            c = category.lower()
            if col == "genres":  # "Animation|Children's|Comedy"
                mask &= cats.str.split("|").apply(lambda gs: c in gs).to_numpy(bool)
            else:  # exact or a parent of a dotted path: "electronics" matches "electronics.smartphone"
                mask &= ((cats == c) | cats.str.startswith(c + ".")).to_numpy(bool)
    if min_price is not None or max_price is not None:
        if "price" not in items:
            mask[:] = False
        else:
            price = items["price"].to_numpy(np.float64)
            with np.errstate(invalid="ignore"):
                if min_price is not None:
                    mask &= price >= min_price
                if max_price is not None:
                    mask &= price <= max_price
    return mask


_CATALOGS: dict[int, object] = {}


def allowed_mask(catalog, filters: dict | None) -> np.ndarray | None:
    """Boolean [n_items] mask of the items passing category / price filters (None: no filter)."""
    f = {k: (filters or {}).get(k) for k in ("category", "min_price", "max_price")}
    if all(v is None for v in f.values()):
        return None
    _CATALOGS[id(catalog)] = catalog
    return _allowed(id(catalog), f["category"], f["min_price"], f["max_price"])


def _known(catalog, raw_ids) -> tuple[np.ndarray, list]:
    """Dense indices of the known raw ids and the list of unknown raw ids."""
    raw = list(raw_ids or [])
    if not raw:
        return np.empty(0, np.int64), []
    idx = catalog.item_index(raw)
    return idx[idx >= 0], [r for r, i in zip(raw, idx) if i < 0]


def _raw(catalog, idx: np.ndarray) -> list:
    return catalog.item_raw(idx).tolist()


# -- retrieval -------------------------------------------------------------------------------------------
class EngineServer:
    """What a retrieval role answers, with no Serve in it: the `RetrievalEngine` deployment wraps one,
    and a role hosted inside the ingress process (`LocalEngine`, config `in_ingress`) uses one directly.
    A failed artifact load is kept as `load_error`: every call then raises `EngineUnavailable`."""

    def __init__(self, role: str, uri: str, tracking_uri: str | None = None, history_window: int = 200):
        self.role, self.uri, self.history_window = role, str(uri), history_window
        self.engine, self.load_error = None, None
        self._info = {"role": role, "uri": self.uri}
        t0 = time.perf_counter()
        try:
            folder, info = load_artifact_folder(self.uri, tracking_uri)
            self.engine, runtime = load_for_serving(folder)
            info["runtime"] = runtime
            from recdata.schema import HistoryBatch

            self.engine.score(HistoryBatch.of([[0]]))  # warm-up: lazy framework init off the request path
            self._info.update(info, n_items=self.engine.n_items,
                              load_seconds=round(time.perf_counter() - t0, 3))
        except Exception as e:  # stay up, answer with the reason: the ingress degrades
            self.load_error = _load_error(e, self.uri, role)
            logger.error("%s: artifact %s failed to load: %s", role, self.uri, self.load_error)

    def info(self, fail: bool = False) -> dict:
        status = "error" if self.load_error else ("fault-injected" if fail else "ok")
        return {**self._info, "status": status, **({"error": self.load_error} if self.load_error else {})}

    def check(self) -> None:
        if self.load_error:
            raise EngineUnavailable(f"{self.role}: artifact {self.uri} failed to load: {self.load_error}")

    def answer(self, reqs: list[dict]) -> list[dict]:
        """Top-n candidates for each request. req: items, events (raw ids / codes, oldest first), user,
        n, filters, exclude, exclude_seen -> {"items": raw ids best first, "scores": floats,
        "unknown": history ids this engine lacks}. One `engine.score` call for the whole list."""
        self.check()
        if not reqs:
            return []
        from recdata.schema import HistoryBatch

        cat = self.engine.catalog
        hist, events, unknown, users = [], [], [], []
        for r in reqs:
            raw = list(r.get("items") or [])[-self.history_window:]
            ev = list(r.get("events") or [0] * len(raw))[-self.history_window:]
            idx = cat.item_index(raw) if raw else np.empty(0, np.int64)
            ok = idx >= 0
            hist.append(idx[ok])
            events.append(np.asarray(ev, np.int8)[ok] if len(ev) == len(raw) else np.zeros(ok.sum(), np.int8))
            unknown.append([x for x, good in zip(raw, ok) if not good])
            u = r.get("user")
            users.append(int(cat.user_index([u])[0]) if u is not None and cat.n_users else -1)
        scores = np.array(self.engine.score(HistoryBatch(hist, events, np.asarray(users, np.int64))),
                          dtype=np.float64)                                      # [B, n_items]
        scores[~np.isfinite(scores)] = NEG_INF
        for b, r in enumerate(reqs):
            if r.get("exclude_seen", True) and len(hist[b]):
                scores[b, hist[b]] = NEG_INF
            excl, _ = _known(cat, r.get("exclude"))
            scores[b, excl] = NEG_INF
            mask = allowed_mask(cat, r.get("filters"))
            if mask is not None:
                scores[b, ~mask] = NEG_INF
        n = max(int(r.get("n", 10)) for r in reqs)
        top = top_k(scores, n)                                                   # [B, n], -1 pads
        out = []
        for b, r in enumerate(reqs):
            row = top[b][top[b] >= 0][: int(r.get("n", 10))]
            out.append({"items": _raw(cat, row), "scores": scores[b, row].tolist(), "unknown": unknown[b]})
        return out

    def similar(self, req: dict) -> dict:
        """req: item (raw id) or text, k, filters, exclude. Engines with `similar` (the content engine:
        `similar(item_idx or text, k, category=, min_price=, max_price=, exclude=)`) answer directly;
        any other engine answers an item query from a one-item history and a text query from the best
        title match in its catalog (reported as `fallback`)."""
        self.check()
        cat, k = self.engine.catalog, int(req.get("k", 10))
        f = req.get("filters") or {}
        excl, _ = _known(cat, req.get("exclude"))
        item, text = req.get("item"), req.get("text")
        seed = None
        if item is not None:
            idx, unknown = _known(cat, [item])
            if unknown:
                return {"items": [], "scores": [], "unknown": unknown, "fallback": None, "engine": self.engine.name}
            seed = int(idx[0])
        if hasattr(self.engine, "similar"):
            query = seed if seed is not None else str(text)
            idx, sc = self.engine.similar(query, k, category=f.get("category"), min_price=f.get("min_price"),
                                          max_price=f.get("max_price"), exclude=tuple(int(i) for i in excl))
            idx, sc = np.asarray(idx, np.int64), np.asarray(sc, np.float64)
            keep = idx >= 0
            return {"items": _raw(cat, idx[keep]), "scores": sc[keep].tolist(), "unknown": [], "fallback": None,
                    "engine": self.engine.name}
        fallback = "history-of-one"
        if seed is None:
            seed, fallback = self._title_match(str(text)), "title-match"
            if seed is None:
                return {"items": [], "scores": [], "unknown": [], "fallback": fallback, "engine": self.engine.name}
        res = self.answer([{"items": _raw(cat, np.array([seed])), "n": k, "filters": f,
                            "exclude": _raw(cat, excl), "exclude_seen": True}])[0]
        return {"items": res["items"], "scores": res["scores"], "unknown": [], "fallback": fallback,
                "engine": self.engine.name}

    def _title_match(self, text: str) -> int | None:
        items = self.engine.catalog.items
        col = next((c for c in ("title", "brand", "category") if c in items), None)
        words = [w for w in text.lower().split() if len(w) > 1][:16]
        if col is None or not words:
            return None
        titles = items[col].astype("string").fillna("").str.lower()
        hits = sum(titles.str.contains(w, regex=False).to_numpy(int) for w in words)
        return int(np.argmax(hits)) if np.max(hits) > 0 else None


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=32)
class RetrievalEngine:
    """Any saved engine answering top-n candidates (an `EngineServer` as a deployment). Args come from
    the app builder (config YAML).

    `fail` and `delay_ms` are fault-drill knobs (a real failing / slow replica for degradation tests
    and drills); leave them at their defaults in production."""

    def __init__(self, role: str, uri: str, tracking_uri: str | None = None, history_window: int = 200,
                 max_batch_size: int = 16, batch_wait_timeout_s: float = 0.001, fail: bool = False,
                 delay_ms: float = 0.0):
        self.server = EngineServer(role, uri, tracking_uri, history_window)
        self.role, self.fail, self.delay_s = role, fail, delay_ms / 1000.0
        self._batched.set_max_batch_size(max_batch_size)
        self._batched.set_batch_wait_timeout_s(batch_wait_timeout_s)

    def info(self) -> dict:
        return self.server.info(fail=self.fail)

    async def _gate(self) -> None:
        self.server.check()
        if self.fail:
            raise EngineUnavailable(f"{self.role}: fault injected (fail=true in the config)")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)

    async def recommend(self, req: dict) -> dict:
        """One request (see `EngineServer.answer`); concurrent calls are scored together (`@serve.batch`)."""
        await self._gate()
        return await self._batched(req)

    async def recommend_batch(self, reqs: list[dict]) -> list[dict]:
        """Many requests in one call (the ingress batches concurrent requests); answers in order."""
        await self._gate()
        return self.server.answer(reqs)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.001)
    async def _batched(self, reqs: list[dict]) -> list[dict]:
        return self.server.answer(reqs)

    async def similar(self, req: dict) -> dict:
        await self._gate()
        return self.server.similar(req)


class _LocalCall:
    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args):
        """Run now; return a finished future, so the ingress awaits (and may `cancel`) it like a
        DeploymentResponse."""
        fut = asyncio.get_running_loop().create_future()
        try:
            fut.set_result(self.fn(*args))
        except Exception as e:
            fut.set_exception(e)
        return fut


class LocalEngine:
    """A retrieval role hosted inside the ingress process (config `in_ingress`), called with the same
    `handle.method.remote(...)` shape as a deployment. For a cheap engine (popularity: a top-n over
    counts) the handle hop costs far more than the work, and the last-resort fallback then answers
    even when every engine replica is down."""

    def __init__(self, role: str, uri: str, tracking_uri: str | None = None, history_window: int = 200):
        self.server = EngineServer(role, uri, tracking_uri, history_window)
        self.recommend_batch = _LocalCall(self.server.answer)
        self.similar = _LocalCall(self.server.similar)
        self.info = _LocalCall(self.server.info)


# -- decision -------------------------------------------------------------------------------------------
@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=32)
class DecisionRanker:
    """Q-values of the DQN policy for each candidate of the retrieval union.

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
            import torch

            torch.set_num_threads(1)
            from models.dqn.features import build_candidate_features
            from models.dqn.policy import DecisionPolicy

            folder, info = load_artifact_folder(self.uri, tracking_uri)
            self.policy, self.build_features = DecisionPolicy.load(folder), build_candidate_features
            self._info.update(info)
            self._info["engine"] = self._info.get("engine") or "dqn"
            n_f, L = len(self.policy.feature_names), int(self.policy.history_len)
            self.policy.q_values(np.full((1, L), -1, np.int64), np.zeros((1, L), np.int8),  # warm-up
                                 np.zeros((1, 2, n_f), np.float32), np.full((1, 2), -1, np.int64))
        except Exception as e:
            self.load_error = _load_error(e, self.uri, "decision")
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

    async def rank(self, req: dict) -> dict:
        """req: history, events, candidates (raw ids), engine_scores {role: [K] floats or None}.
        -> {"q": [K] floats (None where not finite)}"""
        return (await self.rank_batch([req]))[0]

    async def rank_batch(self, reqs: list[dict]) -> list[dict]:
        """Many `rank` requests in one network call: candidate lists are right-padded to the longest
        (padding rows are dropped from the answer; candidates never attend to each other)."""
        if self.load_error:
            raise EngineUnavailable(f"decision: artifact {self.uri} failed to load: {self.load_error}")
        if self.fail:
            raise EngineUnavailable("decision: fault injected (fail=true in the config)")
        if not reqs:
            return []
        import torch

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
                feats[b, :len(cands)] = self.build_features(scores, self._column("price", cidx, np.float64, np.nan),
                                                            self._column("category", cidx, object, None), last_cat)
                cand[b, :len(cands)] = cidx
        with torch.no_grad():  # unknown candidates stay -1: the network scores them from features
            q = self.policy.q_values(h_items, h_events, feats, cand)
        q = np.asarray(q.detach().cpu().numpy() if hasattr(q, "detach") else q, np.float64)  # [B, K]
        return [{"q": [float(v) if np.isfinite(v) else None for v in q[b, :len(r["candidates"])]]}
                for b, r in enumerate(reqs)]


# -- live sessions ----------------------------------------------------------------------------------------
@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
class SessionStore:
    """Events appended by POST /events, per session key (session_id or user_id). Bounded: at most
    `max_sessions` sessions (least recently used evicted), `max_events` events each (oldest dropped),
    sessions idle for `ttl_s` expire. One replica keeps it consistent; its state is lost on restart
    (the client's own history in /recommend still works)."""

    def __init__(self, max_sessions: int = 100_000, max_events: int = 200, ttl_s: float = 3600.0):
        self.max_sessions, self.max_events, self.ttl_s = max_sessions, max_events, ttl_s
        self.sessions: collections.OrderedDict[str, tuple[float, collections.deque]] = collections.OrderedDict()

    def _expire(self, now: float) -> None:
        while self.sessions:
            key, (ts, _) = next(iter(self.sessions.items()))
            if now - ts <= self.ttl_s and len(self.sessions) <= self.max_sessions:
                break
            self.sessions.popitem(last=False)

    def append(self, key: str, item, event: int) -> int:
        now = time.monotonic()
        _, events = self.sessions.pop(key, (now, collections.deque(maxlen=self.max_events)))
        events.append((item, int(event)))
        self.sessions[key] = (now, events)
        self._expire(now)
        return len(events)

    def get(self, key: str) -> tuple[list, list]:
        now = time.monotonic()
        self._expire(now)
        entry = self.sessions.get(key)
        if entry is None:
            return [], []
        self.sessions.move_to_end(key)
        self.sessions[key] = (now, entry[1])
        return [i for i, _ in entry[1]], [e for _, e in entry[1]]

    def get_many(self, keys: list[str]) -> list[tuple[list, list]]:
        """`get` for each key, in one call (the ingress looks up a whole batch of requests)."""
        return [self.get(k) for k in keys]

    def stats(self) -> dict:
        return {"sessions": len(self.sessions), "max_sessions": self.max_sessions,
                "max_events": self.max_events, "ttl_s": self.ttl_s}
