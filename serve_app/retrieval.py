"""Retrieval roles of the Serve graph (sequence, discovery, similarity, popularity): ONE class for every
role. It loads any `models.base.Engine` artifact by URI (`models:/sasrec@champion`, `runs:/...` or a local
folder) and answers `recommend_batch` (top-n candidates for many histories, business filters applied, one
`engine.score` call) and `similar` (item -> items, text -> items).

Ids cross the handles as the catalog's raw ids (int or str), never dense indices: each artifact maps
them with its own catalog, so engines trained on different snapshots of the catalog still compose.
A deployment whose artifact fails to load stays up and answers every call with that reason, so the
ingress degrades instead of the whole application failing to deploy.
"""
from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import pandas as pd
from ray import serve

from reccore import logs
from recdata.filters import allowed_mask
from recdata.metrics import NEG_INF, top_k
from recdata.schema import HistoryBatch
from serve_app.artifacts import EngineUnavailable, load_artifact_folder, load_error, load_for_serving
from serve_app.reload import AliasFollower

logger = logging.getLogger("ray.serve")


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
            # Warm-up: lazy framework init off the request path (LiteRT prints its delegate on stderr).
            with logs.quiet_native_stderr():
                self.engine.score(HistoryBatch.of([[0]]))
                if getattr(self.engine, "uses_ann", False):  # load or build the ANN index now, not per request
                    self.engine.retrieve(HistoryBatch.of([[0]]), 1)
            self._info.update(info, n_items=self.engine.n_items,
                              load_seconds=round(time.perf_counter() - t0, 3))
        except Exception as e:  # stay up, answer with the reason: the ingress degrades
            self.load_error = load_error(e, self.uri, role)
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
        batch = HistoryBatch(hist, events, np.asarray(users, np.int64))
        if getattr(self.engine, "uses_ann", False):
            return self._answer_ann(reqs, batch, unknown)
        scores = np.array(self.engine.score(batch), dtype=np.float64)           # [B, n_items]
        scores[~np.isfinite(scores)] = NEG_INF
        for b, r in enumerate(reqs):
            if r.get("exclude_seen", True) and len(hist[b]):
                scores[b, hist[b]] = NEG_INF
            excl, _ = _known(cat, r.get("exclude"))
            scores[b, excl] = NEG_INF
            f = r.get("filters") or {}
            mask = allowed_mask(cat, f.get("category"), f.get("min_price"), f.get("max_price"))
            if mask is not None:
                scores[b, ~mask] = NEG_INF
        n = max(int(r.get("n", 10)) for r in reqs)
        top = top_k(scores, n)                                                   # [B, n], -1 pads
        out = []
        for b, r in enumerate(reqs):
            row = top[b][top[b] >= 0][: int(r.get("n", 10))]
            out.append({"items": _raw(cat, row), "scores": scores[b, row].tolist(), "unknown": unknown[b]})
        return out

    def _answer_ann(self, reqs: list[dict], batch: HistoryBatch, unknown: list) -> list[dict]:
        """`answer` for a catalog above the engine's `ann.min_items`: top-n through its item index
        (models/ann.py) with the same seen-item, exclude and filter rules, and no [B, n_items] matrix."""
        cat, skip, masks = self.engine.catalog, [], []
        for b, r in enumerate(reqs):
            excl, _ = _known(cat, r.get("exclude"))
            seen = batch.items[b] if r.get("exclude_seen", True) else np.empty(0, np.int64)
            skip.append(np.concatenate([np.asarray(seen, np.int64), excl]))
            f = r.get("filters") or {}
            masks.append(allowed_mask(cat, f.get("category"), f.get("min_price"), f.get("max_price")))
        top, vals = self.engine.retrieve(batch, max(int(r.get("n", 10)) for r in reqs), skip, masks)
        out = []
        for b, r in enumerate(reqs):
            keep = np.flatnonzero(top[b] >= 0)[: int(r.get("n", 10))]
            out.append({"items": _raw(cat, top[b, keep]), "scores": vals[b, keep].tolist(), "unknown": unknown[b]})
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

    def describe(self, raw_ids: list) -> dict:
        """Catalog rows of the known ids (title, brand, category, price... where the data has them), in
        the order asked, and the unknown ids. The try-it page shows these beside each answer."""
        self.check()
        cat = self.engine.catalog
        idx = cat.item_index(list(raw_ids))
        cols = [c for c in ("title", "brand", "category", "genres", "price") if c in cat.items]
        rows = cat.items.iloc[idx[idx >= 0]][cols] if cols else None
        out = []
        for j, raw in enumerate(_raw(cat, idx[idx >= 0])):  # the catalog's own ids: "101" -> 101
            details = {"item": raw}
            if rows is not None:
                for c in cols:
                    v = rows.iloc[j][c]
                    if v is not None and not (isinstance(v, float) and np.isnan(v)) and str(v) != "<NA>":
                        details[c] = float(v) if c == "price" else str(v)
            out.append(details)
        return {"items": out, "unknown": [r for r, i in zip(raw_ids, idx) if i < 0], "engine": self.role}

    def event_details(self, raw_ids: list) -> list[dict | None]:
        """What the served-event log records of each item beside the event (REES46 columns: category,
        category_id, brand, price); None for an item this catalog does not know."""
        if self.engine is None:
            return [None] * len(raw_ids)
        items = self.engine.catalog.items
        idx = self.engine.catalog.item_index(list(raw_ids))
        cols = [c for c in ("category", "category_id", "brand", "price") if c in items]
        out = []
        for i in idx:
            if i < 0:
                out.append(None)
                continue
            row = items.iloc[int(i)]
            out.append({c: row[c] for c in cols if not pd.isna(row[c])})
        return out

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
    the app builder (config YAML). The ingress batches concurrent requests itself (serve_app/coalesce.py)
    and sends each engine one `recommend_batch` call per batch.

    `fail` and `delay_ms` are fault-drill knobs (a real failing / slow replica for degradation tests
    and drills); leave them at their defaults in production."""

    def __init__(self, role: str, uri: str, tracking_uri: str | None = None, history_window: int = 200,
                 fail: bool = False, delay_ms: float = 0.0, reload_s: float = 0.0):
        self.server = EngineServer(role, uri, tracking_uri, history_window)
        self.role, self.fail, self.delay_s = role, fail, delay_ms / 1000.0
        self.follower = follow(self, role, uri, tracking_uri, history_window, reload_s)

    def info(self) -> dict:
        return self.server.info(fail=self.fail)

    async def _gate(self) -> None:
        self.server.check()
        if self.fail:
            raise EngineUnavailable(f"{self.role}: fault injected (fail=true in the config)")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)

    async def recommend_batch(self, reqs: list[dict]) -> list[dict]:
        """Many requests in one call (the ingress batches concurrent requests); answers in order."""
        await self._gate()
        return self.server.answer(reqs)

    async def similar(self, req: dict) -> dict:
        await self._gate()
        return self.server.similar(req)

    async def describe(self, raw_ids: list) -> dict:
        await self._gate()
        return self.server.describe(raw_ids)


def follow(holder, role: str, uri: str, tracking_uri: str | None, history_window: int,
           reload_s: float) -> AliasFollower:
    """Keep `holder.server` on the version `uri`'s alias points at (serve_app/reload.py)."""
    def load(pinned: str) -> EngineServer:
        new = EngineServer(role, pinned, tracking_uri, history_window)  # loads and warms up, or keeps the error
        new.uri = new._info["uri"] = str(uri)
        new._info["pinned"] = pinned
        return new

    def swap(new: EngineServer) -> None:
        holder.server = new

    version = holder.server._info.get("registry_version")
    return AliasFollower(uri, version, reload_s, load, lambda new: new.load_error, swap, what=role)


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

    def __init__(self, role: str, uri: str, tracking_uri: str | None = None, history_window: int = 200,
                 reload_s: float = 0.0):
        self.server = EngineServer(role, uri, tracking_uri, history_window)
        # Through `self.server` at call time: a live swap replaces it.
        self.recommend_batch = _LocalCall(lambda reqs: self.server.answer(reqs))
        self.similar = _LocalCall(lambda req: self.server.similar(req))
        self.describe = _LocalCall(lambda ids: self.server.describe(ids))
        self.info = _LocalCall(lambda: self.server.info())
        self.follower = follow(self, role, uri, tracking_uri, history_window, reload_s)

    def event_details(self, raw_ids: list) -> list[dict | None]:
        return self.server.event_details(raw_ids)
