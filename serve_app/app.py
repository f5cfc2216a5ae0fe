"""The Serve application: a FastAPI ingress composing the engine deployments, and its app builder.

    client ─► proxy ─► Recommender (ingress) ─┬─► sessions.get_many        (only with a user/session id)
                                              ├─► sequence    .recommend_batch ┐
                                              ├─► discovery   .recommend_batch │ in parallel, each within
                                              ├─► similarity  .recommend_batch │ its time budget
                                              ├─► popularity  .recommend_batch ┘ (the first late answer is
                                              │                                  taken if none is on time)
                                              └─► decision.rank_batch(union of candidates)  (or a blend)

Each stage is one handle hop (≈4 ms of CPU on 2 cores, whatever it carries), so the retrieval engines
are called together with `asyncio.gather`, the graph is at most three stages deep, and concurrent
/recommend requests travel together: the ingress batches them (serve_app/coalesce.py), so one hop per
engine serves the whole batch. An engine that errors or overruns its budget is left out and named in
`degraded`; only when no retrieval engine answers is the reply a 503.

The ranking between the engine calls is serve_app/ranking.py (pure functions); the deployments the
ingress calls are serve_app/retrieval.py, decision.py and sessions.py; serve_app/builder.py builds the
graph from the config YAML.
"""

import asyncio
import logging
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from reccore.constants import ENGINE_ROLES, EVENT_CODES
from serve_app.coalesce import Coalescer
from serve_app.metrics import IngressMetrics
from serve_app.ranking import (candidate_union, decision_body, decision_merge, merge_session, rrf_blend, top_items,
                               unknown_history)
from serve_app.retrieval import LocalEngine
from serve_app.schemas import (
    EventBatchRequest, EventBatchResponse, EventRequest, EventResponse, HealthResponse, ItemsRequest, ItemsResponse,
    RecommendedItem, RecommendRequest, RecommendResponse, SimilarItem, SimilarRequest, SimilarResponse, UiExamples,
    VersionResponse,
)

logger = logging.getLogger("ray.serve")
UI_PAGE = Path(__file__).resolve().parent / "ui" / "index.html"
DEFAULT_BUDGETS_MS = {"sequence": 150, "discovery": 150, "similarity": 150, "popularity": 100,
                      "decision": 100, "sessions": 100, "events": 5000}


def _app_version() -> str:
    try:
        return version("ray-recsys")
    except Exception:
        return "0.1.0-dev"


api = FastAPI(title="recsys", version=_app_version(),
              description="Composed recommender: sequence (SASRec), discovery (VAE), similarity (text "
                          "encoder), popularity; re-ranked by a DQN decision engine.")


async def _await(resp):
    return await resp


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
@serve.ingress(api)
class Recommender:
    def __init__(self, retrieval: dict[str, DeploymentHandle], decision: DeploymentHandle | None,
                 sessions: DeploymentHandle, budgets_ms: dict | None = None, candidates_per_engine: int = 50,
                 history_window: int = 200, rescue_ms: float = 2000.0, max_batch: int = 32, max_inflight: int = 1,
                 linger_ms: float = 0.0,
                 local: dict[str, str] | None = None, tracking_uri: str | None = None,
                 ui_examples: list[dict] | None = None, reload_s: float = 0.0):
        # Roles hosted in this process (`in_ingress`) answer through the same call shape as handles.
        local_engines = {r: LocalEngine(r, u, tracking_uri, history_window, reload_s) for r, u in (local or {}).items()}
        self.retrieval = {r: retrieval[r] if r in retrieval else local_engines[r]
                          for r in ENGINE_ROLES if r in retrieval or r in local_engines}
        self.local_roles = set(local_engines) - set(retrieval)
        self.decision, self.sessions = decision, sessions
        self.budgets = {k: v / 1000.0 for k, v in {**DEFAULT_BUDGETS_MS, **(budgets_ms or {})}.items()}
        self.n_cand, self.history_window = candidates_per_engine, history_window
        self.rescue_s = rescue_ms / 1000.0
        self.metrics = IngressMetrics()
        self.ui_examples = UiExamples.model_validate({"users": ui_examples or []})
        self.batcher = Coalescer(self._recommend_many, max_batch=max_batch, max_inflight=max_inflight,
                                 linger_ms=linger_ms)
        self.batcher.on_batch = self.metrics.batch_answered
        # Concurrent /events travel together too: one hop and one group commit (write + fsync) per batch.
        self.event_batcher = Coalescer(self._events_many, max_batch=256, max_inflight=2)

    # -- plumbing ------------------------------------------------------------------------------------------
    async def _call(self, name: str, resp, budget_key: str | None = None):
        """(result, None) or (None, reason); never raises. Counts latency and fallbacks."""
        t0 = time.perf_counter()
        try:
            out = await asyncio.wait_for(_await(resp), self.budgets.get(budget_key or name, 0.15))
            self.metrics.engine_call(name, (time.perf_counter() - t0) * 1000)
            return out, None
        except asyncio.TimeoutError:
            resp.cancel()
            reason = "timeout"
        except Exception as e:  # a replica error, a dead actor, an unavailable artifact
            reason = "error"
            logger.warning("engine %s failed: %s", name, str(e).splitlines()[0][:300] if str(e) else type(e))
        self.metrics.engine_fallback(name, reason)
        return None, reason

    async def _fan_out(self, calls: dict) -> dict[str, tuple[Any, str | None]]:
        """Call engines in parallel: {name: (result, None) or (None, "timeout"/"error")}. Each engine
        gets its budget; when none has answered within the budgets (an overloaded host), the first
        late answer is still taken, up to `rescue_ms`, so overload degrades instead of failing."""
        t0 = time.perf_counter()
        tasks = {n: asyncio.ensure_future(_await(r)) for n, r in calls.items()}
        finish: dict[str, float] = {}
        for n, t in tasks.items():
            t.add_done_callback(lambda _, n=n: finish.setdefault(n, time.perf_counter()))

        def good(n):
            t = tasks[n]
            return t.done() and not t.cancelled() and t.exception() is None

        budget = {n: self.budgets.get(n, 0.15) for n in tasks}
        while True:  # until every engine has answered or run out of its own budget
            now = time.perf_counter()
            live = [n for n, t in tasks.items() if not t.done() and now - t0 < budget[n]]
            if not live:
                break
            await asyncio.wait([tasks[n] for n in live], return_when=asyncio.FIRST_COMPLETED,
                               timeout=min(budget[n] for n in live) - (now - t0))
        now = time.perf_counter()  # done-callbacks may not have run yet: those finished by now
        for n, t in tasks.items():
            if t.done():
                finish.setdefault(n, now)
        # In-ingress engines (popularity) always answer at once; they must not stop the rescue of
        # the real engines, or an overloaded host would answer from popularity alone.
        remote = [n for n in tasks if n not in self.local_roles] or list(tasks)
        late_ok = not any(good(n) and finish[n] - t0 <= budget[n] for n in remote)
        while late_ok and not any(good(n) for n in remote):
            pending = [t for t in tasks.values() if not t.done()]
            left = self.rescue_s - (time.perf_counter() - t0)
            if not pending or left <= 0:
                break
            await asyncio.wait(pending, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        now = time.perf_counter()
        for n, t in tasks.items():
            if t.done():
                finish.setdefault(n, now)
        out = {}
        for n, t in tasks.items():
            if good(n) and (late_ok or finish[n] - t0 <= budget[n]):
                self.metrics.engine_call(n, (finish[n] - t0) * 1000)
                out[n] = (t.result(), None)
                continue
            if t.done() and not t.cancelled() and t.exception() is not None:
                reason = "error"
                logger.warning("engine %s failed: %s", n, str(t.exception()).splitlines()[0][:300])
            else:
                reason = "timeout"
                t.cancel()
                calls[n].cancel()
            self.metrics.engine_fallback(n, reason)
            out[n] = (None, reason)
        return out

    def _done(self, endpoint: str, t0: float, status: int) -> float:
        took = (time.perf_counter() - t0) * 1000
        self.metrics.request(endpoint, status, took)
        return took

    def _unavailable(self, endpoint: str, t0: float, reason: str, degraded: list[str]) -> JSONResponse:
        self._done(endpoint, t0, 503)
        return JSONResponse(status_code=503, content={"detail": reason, "degraded": degraded})

    # -- endpoints -------------------------------------------------------------------------------------------
    @api.post("/recommend", response_model=RecommendResponse,
              responses={503: {"description": "no retrieval engine could answer"}})
    async def recommend(self, req: RecommendRequest):
        t0 = time.perf_counter()
        try:
            return await self.batcher.submit((req, t0))
        except Exception as e:  # a valid request never gets a 500
            logger.exception("recommend failed")
            return self._unavailable("recommend", t0, f"internal error: {type(e).__name__}: {e}", [])

    def _retrieve(self, reqs: list[RecommendRequest], states: list[dict], rows: list[int]):
        """One call per retrieval engine for the requests `rows` -> a task of
        {role: ([one answer per row] or None, None or reason)}."""
        bodies = []
        for i in rows:
            req, st = reqs[i], states[i]
            bodies.append({"items": st["items"][-self.history_window:], "events": st["events"][-self.history_window:],
                           "user": req.user_id, "n": max(req.k, self.n_cand),
                           "filters": req.filters.model_dump(exclude={"exclude"}), "exclude": req.filters.exclude,
                           "exclude_seen": req.exclude_seen})
        calls = {r: h.recommend_batch.remote(bodies) for r, h in self.retrieval.items()}
        return asyncio.ensure_future(self._fan_out(calls))

    async def _recommend_many(self, batch: list[tuple[RecommendRequest, float]]) -> list:
        """Answer concurrent /recommend requests together: one session lookup, one call per retrieval
        engine and one decision call for the whole batch (see serve_app/coalesce.py)."""
        reqs = [r for r, _ in batch]
        states = [{"items": list(r.history),
                   "events": [EVENT_CODES[e] for e in r.events] if r.events else [0] * len(r.history),
                   "key": r.session_id or (str(r.user_id) if r.user_id is not None else None),
                   "degraded": []} for r in reqs]
        # Retrieval starts on the requests' own histories while the session lookup runs beside it;
        # only requests whose session holds live events cost a second retrieval round.
        first = self._retrieve(reqs, states, list(range(len(reqs))))
        rows_of = {role: list(range(len(reqs))) for role in self.retrieval}
        keyed = [i for i, st in enumerate(states) if st["key"] is not None]
        second, again = None, []
        if keyed:
            keys = [states[i]["key"] for i in keyed]
            live, reason = await self._call("sessions", self.sessions.get_many.remote(keys))
            if reason:
                for i in keyed:
                    states[i]["degraded"].append("sessions")
            else:
                for i, (live_items, live_events) in zip(keyed, live):
                    if live_items:
                        st = states[i]
                        st["items"], st["events"] = merge_session(st["items"], st["events"], live_items,
                                                                  live_events, self.history_window)
                        again.append(i)
                if again:
                    second = self._retrieve(reqs, states, again)
        answers: list[dict[str, tuple[Any, str | None]]] = [{} for _ in reqs]
        for results, rows in [(await first, None), *([(await second, again)] if second is not None else [])]:
            for role, (outs, reason) in results.items():
                for j, i in enumerate(rows if rows is not None else rows_of[role]):
                    answers[i][role] = (outs[j] if outs is not None else None, reason)

        ranked, to_rank = [None] * len(reqs), []
        for i, st in enumerate(states):
            st["items"], st["events"] = st["items"][-self.history_window:], st["events"][-self.history_window:]
            answered = {r: out for r, (out, reason) in answers[i].items() if reason is None}
            st["degraded"] += [r for r, (_, reason) in answers[i].items() if reason is not None]
            if not answered:
                continue
            st["unknown"] = unknown_history(st["items"], answered)
            st["cands"] = candidate_union(answered)
            st["blend"] = rrf_blend(st["cands"])
            ranked[i] = (st["blend"], "blend")
            if st["cands"] and self.decision is not None:
                to_rank.append(i)
            elif self.decision is None:
                st["degraded"].append("decision")
        if to_rank:
            bodies = [decision_body(states[i]["items"], states[i]["events"], states[i]["cands"]) for i in to_rank]
            outs, reason = await self._call("decision", self.decision.rank_batch.remote(bodies))
            for j, i in enumerate(to_rank):
                if reason is not None:
                    states[i]["degraded"].append("decision")
                    continue
                final = decision_merge(outs[j]["q"], states[i]["blend"])
                if final is not None:
                    ranked[i] = (final, "decision")

        responses = []
        for i, ((req, t0), st) in enumerate(zip(batch, states)):
            if ranked[i] is None:
                responses.append(self._unavailable(
                    "recommend", t0, f"no retrieval engine could answer ({', '.join(st['degraded'])})", st["degraded"]))
                continue
            final, ranker = ranked[i]
            result = [RecommendedItem(item=item, score=score, engines=engines)
                      for item, score, engines in top_items(st["cands"], final, req.k)]
            if not result:
                self.metrics.empty_answer("recommend")
            took = self._done("recommend", t0, 200)
            self.metrics.answer("recommend", ranker, st["degraded"])
            responses.append(RecommendResponse(items=result, ranker=ranker, degraded=st["degraded"],
                                               unknown_items=st["unknown"], history_used=len(st["items"]),
                                               took_ms=round(took, 3)))
        return responses

    @api.post("/similar", response_model=SimilarResponse,
              responses={503: {"description": "no engine could answer"}})
    async def similar(self, req: SimilarRequest):
        t0 = time.perf_counter()
        degraded: list[str] = []
        try:
            # The similarity engine first; without it, another engine answers item queries.
            order = ["similarity"] + [r for r in ("sequence", "discovery", "popularity") if r != "similarity"]
            body = {"item": req.item, "text": req.text, "k": req.k,
                    "filters": req.filters.model_dump(exclude={"exclude"}), "exclude": req.filters.exclude}
            if "similarity" not in self.retrieval:
                degraded.append("similarity")
            available = [r for r in order if r in self.retrieval]
            for role in available:
                resp = self.retrieval[role].similar.remote(body)
                if role == available[-1]:  # the last one left: a late answer beats none (overload)
                    out, reason = (await self._fan_out({role: resp}))[role]
                else:
                    out, reason = await self._call(role, resp, role)
                if reason is not None:
                    degraded.append(role)
                    continue
                scores = np.nan_to_num(np.asarray(out["scores"], np.float64), nan=0.0, posinf=1e30, neginf=-1e30)
                items = [SimilarItem(item=i, score=float(s)) for i, s in zip(out["items"], scores)]
                if not items:
                    self.metrics.empty_answer("similar")
                took = self._done("similar", t0, 200)
                self.metrics.answer("similar", "none", degraded)
                return SimilarResponse(items=items, engine=out.get("engine"), fallback=out.get("fallback"),
                                       degraded=degraded, unknown_items=out["unknown"], took_ms=round(took, 3))
            return self._unavailable("similar", t0, "no engine could answer", degraded)
        except Exception as e:
            logger.exception("similar failed")
            return self._unavailable("similar", t0, f"internal error: {type(e).__name__}: {e}", degraded)

    @api.post("/events", response_model=EventResponse, responses={503: {"description": "session store down"}})
    async def events(self, req: EventRequest):
        """200 only once the event is in the durable event log (the sessions deployment fsyncs it)."""
        t0 = time.perf_counter()
        try:
            key, n = await self.event_batcher.submit(req)
        except Exception as e:
            return self._unavailable("events", t0, f"event not stored, send it again ({e})", ["sessions"])
        self._done("events", t0, 200)
        return EventResponse(session=key, length=n)

    @api.post("/events/batch", response_model=EventBatchResponse,
              responses={503: {"description": "session store down; nothing of the batch is acknowledged"}})
    async def events_batch(self, req: EventBatchRequest):
        """200 only once every event of the batch is in the durable event log (one write, one fsync)."""
        t0 = time.perf_counter()
        try:
            done = await self._events_many(req.events)
        except Exception as e:
            return self._unavailable("events_batch", t0, f"batch not stored, send it again ({e})", ["sessions"])
        self._done("events_batch", t0, 200)
        return EventBatchResponse(stored=len(done), sessions=[EventResponse(session=k, length=n) for k, n in done])

    async def _events_many(self, reqs: list[EventRequest]) -> list[tuple[str, int]]:
        local = next((self.retrieval[r] for r in self.local_roles), None)  # a catalog without a hop
        details = local.event_details([r.item for r in reqs]) if local is not None else [None] * len(reqs)
        events = [{"key": r.session_id or str(r.user_id), "user": r.user_id, "item": r.item, "event": r.event,
                   "details": d} for r, d in zip(reqs, details)]
        n, reason = await self._call("sessions", self.sessions.append_many.remote(events), "events")
        if reason is not None:
            raise RuntimeError(f"session store {reason}")
        return [(e["key"], length) for e, length in zip(events, n)]

    async def _infos(self, budget: float = 2.0) -> dict[str, dict]:
        handles = {**self.retrieval, **({"decision": self.decision} if self.decision is not None else {})}
        names = list(handles)
        outs = await asyncio.gather(*(asyncio.wait_for(_await(handles[n].info.remote()), budget) for n in names),
                                    return_exceptions=True)
        return {n: (o if isinstance(o, dict) else {"status": "unreachable", "error": f"{type(o).__name__}: {o}"})
                for n, o in zip(names, outs)}

    @api.post("/items", response_model=ItemsResponse, responses={503: {"description": "no engine could answer"}})
    async def items(self, req: ItemsRequest):
        """Catalog details (title, brand, category, price...) of item ids, from the first engine that
        answers: the one hosted in the ingress first (no hop)."""
        t0 = time.perf_counter()
        order = sorted(self.retrieval, key=lambda r: r not in self.local_roles)
        for role in order:
            out, reason = await self._call(role, self.retrieval[role].describe.remote(list(req.items)), role)
            if reason is None:
                self._done("items", t0, 200)
                return ItemsResponse(items=out["items"], unknown_items=out["unknown"], engine=out["engine"])
        return self._unavailable("items", t0, "no engine could describe items", list(order))

    @api.get("/ui", response_class=HTMLResponse, include_in_schema=False)
    async def ui(self):
        """The try-it page: plain HTML + JS calling this API; no build step, nothing from the network."""
        return HTMLResponse(UI_PAGE.read_text(encoding="utf-8"))

    @api.get("/ui/examples", response_model=UiExamples)
    async def ui_examples_list(self):
        """Shoppers from the training data to start the try-it page from (config `ui_examples`)."""
        return self.ui_examples

    @api.get("/healthz", response_model=HealthResponse, responses={503: {"description": "no engine answers"}})
    async def healthz(self):
        infos = await self._infos()
        engines = {n: i.get("status", "unknown") for n, i in infos.items()}
        if self.decision is None:
            engines["decision"] = "not configured"
        if not any(engines.get(r) == "ok" for r in self.retrieval):
            return JSONResponse(status_code=503, content={"status": "down", "engines": engines})
        return HealthResponse(status="ok" if all(v == "ok" for v in engines.values()) else "degraded",
                              engines=engines)

    @api.get("/version", response_model=VersionResponse)
    async def version(self):
        infos = await self._infos()
        if self.decision is None:
            infos["decision"] = {"status": "not configured"}
        try:  # where served events go and how many this sessions replica stored (the drills read it)
            infos["sessions"] = await asyncio.wait_for(_await(self.sessions.info.remote()), 2.0)
        except Exception as e:
            infos["sessions"] = {"status": "unreachable", "error": f"{type(e).__name__}: {e}"}
        return VersionResponse(app=_app_version(), engines=infos)
