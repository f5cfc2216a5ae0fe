"""The app builders named in the Serve config: `build_app` (serve_app/config.yaml: `serve run
serve_app/config.yaml`, `serve deploy`, `recsys serve`) and `build_noop_app`, the floor the load
benchmark compares against.

The builder's arguments are a pydantic model (`AppArgs`): Serve validates the YAML's `args` into it
before building, so a typo or a wrong type fails the deploy with the field's name and what it accepts.
"""
# No `from __future__ import annotations`: Serve reads build_app's parameter annotation as a class to
# validate the YAML's args into AppArgs, and a postponed (string) annotation would skip that.
import logging
import os
from typing import Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, model_validator
from ray import serve

from reccore import tracking
from reccore.constants import ENGINE_ROLES
from reccore.paths import work_dir
from serve_app.app import Recommender
from serve_app.decision import DecisionRanker
from serve_app.retrieval import RetrievalEngine
from serve_app.schemas import RecommendRequest, RecommendResponse, UiExample
from serve_app.sessions import SessionStore

logger = logging.getLogger("ray.serve")
Role = Literal[ENGINE_ROLES]
Budgeted = Literal[(*ENGINE_ROLES, "decision", "sessions", "events")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngressBatch(_Strict):
    """Concurrent /recommend requests answered together (serve_app/coalesce.py)."""

    max_batch: int = Field(32, ge=1, description="requests one engine call serves at most")
    max_inflight: int = Field(1, ge=1, description="batches in flight at once")
    linger_ms: float = Field(0.0, ge=0, description="under load, how long a batch waits for more requests")


class SessionsArgs(_Strict):
    """Bounds of the live-session store."""

    max_sessions: int = Field(100_000, ge=1)
    max_events: int = Field(200, ge=1)
    ttl_s: float = Field(3600.0, gt=0, description="idle sessions expire; a restart rebuilds this much from the log")
    durable: bool = Field(True, description="write every event to the event log (fsync) before acknowledging it")


class FaultDrill(_Strict):
    """Drills and tests only: a failing or slow replica."""

    fail: bool = False
    delay_ms: float = Field(0.0, ge=0)


class AppArgs(_Strict):
    """The `args:` of the application in serve_app/config.yaml."""

    engines: dict[Role, str | None] = Field(
        description="retrieval role -> artifact URI (models:/<name>@<alias>, runs:/..., or a folder); null removes it")
    decision: str | None = Field(None, description="DQN policy artifact URI; null ranks the union by a blend")
    budgets_ms: dict[Budgeted, float] = Field(default_factory=dict, description="per-call time budget")
    rescue_ms: float = Field(2000.0, ge=0, description="no engine on time: wait this long for the first late one")
    in_ingress: list[Role] = Field(default_factory=list,
                                   description="retrieval roles loaded inside the ingress process (no deployment)")
    ingress_batch: IngressBatch = Field(default_factory=IngressBatch)
    candidates_per_engine: int = Field(50, ge=1, description="candidates each retrieval engine proposes")
    history_window: int = Field(200, ge=1, description="newest history items the engines read")
    tracking_uri: str | None = Field(None, description="MLflow store of models:/ URIs (default: this process's)")
    reload_s: float = Field(10.0, ge=0, description="how often replicas serving models:/<name>@<alias> ask the "
                            "registry whether the alias moved (then load, check and swap the new version); 0: never")
    events_dir: str | None = Field(None, description="served-event log folder (REES46 CSV; shared storage on a "
                                   "cluster); default $RECSYS_HOME/events of the process building the app")
    sessions: SessionsArgs = Field(default_factory=SessionsArgs)
    faults: dict[Literal[(*ENGINE_ROLES, "decision")], FaultDrill] = Field(default_factory=dict)
    ui_examples: list[UiExample] = Field(default_factory=list, max_length=100,
                                         description="shoppers (id + recent items) the try-it page /ui offers")

    @model_validator(mode="after")
    def _check(self):
        self.engines = {r: u for r, u in self.engines.items() if u}
        if not self.engines:
            raise ValueError("no retrieval engine configured: set args.engines.<role> to an artifact URI "
                             "(e.g. models:/sasrec@champion or a folder written by Engine.save)")
        drilled = [r for r in self.in_ingress if r in self.engines and r in self.faults]
        if drilled:
            raise ValueError(f"faults for {drilled} need an engine deployment: remove them from in_ingress to drill")
        return self


def _init_tracking_store(tracking_uri: str | None) -> None:
    """Create/migrate the MLflow store once here, not concurrently in every replica (a fresh sqlite
    store initialized by several replicas at once fails their artifact loads)."""
    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    try:
        tracking.configured_mlflow().MlflowClient().search_registered_models(max_results=1)
    except Exception as e:  # the replicas report the real error per engine
        logger.warning("MLflow store %s not reachable from the app builder: %s", tracking_uri, e)


def build_app(args: AppArgs) -> serve.Application:
    """The recommender graph: one deployment per retrieval role (except those hosted in the ingress),
    the decision ranker, the session store and the ingress. Serve passes `args` validated; a plain
    dict (a caller outside Serve) is validated here."""
    if not isinstance(args, AppArgs):
        args = AppArgs.model_validate(args or {})
    uris = [*args.engines.values(), args.decision]
    if any(str(u).startswith(("models:/", "runs:/")) for u in uris if u):
        _init_tracking_store(args.tracking_uri)
    local = {role: str(uri) for role, uri in args.engines.items() if role in args.in_ingress}
    retrieval = {
        role: RetrievalEngine.options(name=role).bind(
            role, str(uri), tracking_uri=args.tracking_uri, history_window=args.history_window,
            reload_s=args.reload_s, **args.faults.get(role, FaultDrill()).model_dump())
        for role, uri in args.engines.items() if role not in local
    }
    decision = None
    if args.decision:
        drill = args.faults.get("decision", FaultDrill())
        decision = DecisionRanker.options(name="decision").bind(args.decision, tracking_uri=args.tracking_uri,
                                                                fail=drill.fail, reload_s=args.reload_s)
    store = args.sessions.model_dump(exclude={"durable"})
    events_dir = (args.events_dir or str(work_dir() / "events")) if args.sessions.durable else None
    sessions = SessionStore.options(name="sessions").bind(**store, events_dir=events_dir)
    return Recommender.bind(retrieval, decision, sessions, budgets_ms=dict(args.budgets_ms),
                            candidates_per_engine=args.candidates_per_engine, history_window=args.history_window,
                            rescue_ms=args.rescue_ms, local=local, tracking_uri=args.tracking_uri,
                            reload_s=args.reload_s, ui_examples=[u.model_dump() for u in args.ui_examples],
                            **args.ingress_batch.model_dump())


noop_api = FastAPI(title="recsys no-op floor")


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
@serve.ingress(noop_api)
class NoOp:
    """The same proxy + FastAPI + request model, no engine: the floor of the load benchmark."""

    @noop_api.post("/recommend", response_model=RecommendResponse)
    async def recommend(self, req: RecommendRequest):
        return RecommendResponse(items=[], ranker="blend", degraded=[], unknown_items=[],
                                 history_used=len(req.history), took_ms=0.0)


def build_noop_app(args: dict | None = None) -> serve.Application:
    return NoOp.bind()
