"""Request/response models of the HTTP API (they are the OpenAPI schema at /docs and /openapi.json).

`POST /recommend` accepts the original README's shape `{"history": [101, 204, 305], "user_id":
"user_123"}`; everything else is optional. Limits are part of the schema so a bad request gets a 422
that states them.
"""
from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

MAX_HISTORY = 1000   # items accepted in one request (the engines read the newest `history_window`)
MAX_K = 100
MAX_EXCLUDE = 1000
MAX_EVENT_BATCH = 1000  # events in one POST /events/batch

ItemId = Union[StrictInt, str]
EventName = Literal["view", "cart", "purchase"]


def _check_ids(ids: list | None, what: str) -> None:
    for x in ids or []:
        if isinstance(x, str) and not (0 < len(x) <= 128):
            raise ValueError(f"{what}: item ids are integers or strings of 1-128 characters")


class Filters(BaseModel):
    category: str | None = Field(None, min_length=1, max_length=200,
                                 description="exact category, or a parent of a dotted one ('electronics')")
    min_price: float | None = Field(None, ge=0, allow_inf_nan=False)
    max_price: float | None = Field(None, ge=0, allow_inf_nan=False)
    exclude: list[ItemId] = Field(default_factory=list, max_length=MAX_EXCLUDE,
                                  description="item ids never to return")

    @model_validator(mode="after")
    def _check(self):
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ValueError(f"min_price {self.min_price} > max_price {self.max_price}")
        _check_ids(self.exclude, "exclude")
        return self


class RecommendRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={
        "examples": [{"history": [101, 204, 305], "user_id": "user_123"}]})

    history: list[ItemId] = Field(default_factory=list, max_length=MAX_HISTORY,
                                  description=f"item ids, oldest first (at most {MAX_HISTORY})")
    events: list[EventName] | None = Field(None, max_length=MAX_HISTORY,
                                          description="event type of each history item (default: view)")
    user_id: StrictInt | str | None = Field(None, description="user id; also the live-session key")
    session_id: str | None = Field(None, min_length=1, max_length=128,
                                   description="live-session key (default: user_id)")
    k: int = Field(10, ge=1, le=MAX_K, description=f"number of items to return (1-{MAX_K})")
    filters: Filters = Field(default_factory=Filters)
    exclude_seen: bool = True

    @model_validator(mode="after")
    def _check(self):
        if self.events is not None and len(self.events) != len(self.history):
            raise ValueError(f"events has {len(self.events)} entries but history has {len(self.history)}; "
                             "give one event type per history item or none")
        if isinstance(self.user_id, str) and not (0 < len(self.user_id) <= 128):
            raise ValueError("user_id: 1-128 characters")
        _check_ids(self.history, "history")
        return self


class RecommendedItem(BaseModel):
    item: ItemId
    score: float = Field(description="decision Q-value, or the blended score when the decision engine is out")
    engines: list[str] = Field(description="retrieval engines that proposed this item")


class RecommendResponse(BaseModel):
    items: list[RecommendedItem]
    ranker: Literal["decision", "blend"]
    degraded: list[str] = Field(description="engines that failed or ran out of time for this request")
    unknown_items: list[ItemId] = Field(description="history ids no engine knows (ignored)")
    history_used: int = Field(description="history items scored (request + live session)")
    took_ms: float


class SimilarRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"item": 101, "k": 5}, {"text": "toy story"}]})

    item: StrictInt | str | None = Field(None, description="item id to find neighbours of")
    text: str | None = Field(None, min_length=1, max_length=500, description="free-text query")
    k: int = Field(10, ge=1, le=MAX_K)
    filters: Filters = Field(default_factory=Filters)

    @model_validator(mode="after")
    def _check(self):
        if (self.item is None) == (self.text is None):
            raise ValueError("give exactly one of item or text")
        _check_ids([self.item] if self.item is not None else [], "item")
        return self


class SimilarItem(BaseModel):
    item: ItemId
    score: float


class SimilarResponse(BaseModel):
    items: list[SimilarItem]
    engine: str | None = Field(description="the artifact's engine that answered")
    fallback: str | None = Field(None, description="how a non-content engine answered, if it did")
    degraded: list[str]
    unknown_items: list[ItemId]
    took_ms: float


class EventRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"user_id": "user_123", "item": 101,
                                                               "event": "cart"}]})

    user_id: StrictInt | str | None = None
    session_id: str | None = Field(None, min_length=1, max_length=128)
    item: ItemId
    event: EventName = "view"

    @model_validator(mode="after")
    def _check(self):
        if self.user_id is None and self.session_id is None:
            raise ValueError("give user_id or session_id")
        if isinstance(self.user_id, str) and not (0 < len(self.user_id) <= 128):
            raise ValueError("user_id: 1-128 characters")
        _check_ids([self.item], "item")
        return self


class EventResponse(BaseModel):
    session: str
    length: int = Field(description="events now held for this session")


class EventBatchRequest(BaseModel):
    """Many events in one request, for collectors that forward a page's or an app's events together.
    All or nothing: one invalid event refuses the whole batch (422 naming its index), so a client
    that retries the batch never stores half of it twice."""
    model_config = ConfigDict(json_schema_extra={"examples": [{"events": [
        {"user_id": "user_123", "item": 101, "event": "view"},
        {"user_id": "user_123", "item": 101, "event": "cart"}]}]})

    events: list[EventRequest] = Field(min_length=1, max_length=MAX_EVENT_BATCH)


class EventBatchResponse(BaseModel):
    stored: int = Field(description="events written to the durable event log (all of the batch)")
    sessions: list[EventResponse] = Field(description="per event, in order: its session and that session's length")


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded"]
    engines: dict[str, str]


class VersionResponse(BaseModel):
    app: str
    engines: dict[str, dict]


class ItemsRequest(BaseModel):
    items: list[ItemId] = Field(..., min_length=1, max_length=MAX_K * 2, description="raw item ids to describe")

    @model_validator(mode="after")
    def _ids(self):
        _check_ids(self.items, "items")
        return self


class ItemDetails(BaseModel):
    model_config = ConfigDict(extra="allow")  # whatever the catalog holds: title, brand, category, price...
    item: ItemId


class ItemsResponse(BaseModel):
    items: list[ItemDetails]
    unknown_items: list[ItemId]
    engine: str | None = Field(None, description="the role whose catalog answered")


class UiExample(BaseModel):
    user_id: str
    history: list[ItemId] = Field(default_factory=list, max_length=MAX_HISTORY)
    events: list[EventName] | None = None


class UiExamples(BaseModel):
    users: list[UiExample]
