"""The ingress's custom metrics, exported through `ray.util.metrics` to Ray's Prometheus endpoint
(names there gain a `ray_` prefix and, for counters, a `_total` suffix). The Grafana dashboard
`serve_app/dashboards/recsys_serving.json` queries exactly these; a test scrapes a running app to
keep the two in step."""
from __future__ import annotations

from ray.util import metrics

LATENCY_BUCKETS_MS = [1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 250, 500, 1000, 2500]


class IngressMetrics:
    def __init__(self):
        ms = LATENCY_BUCKETS_MS
        self.requests = metrics.Counter("recsys_requests", "HTTP requests by endpoint and status",
                                        tag_keys=("endpoint", "status"))
        self.latency = metrics.Histogram("recsys_request_latency_ms", "end-to-end latency in the ingress",
                                         boundaries=ms, tag_keys=("endpoint",))
        self.engine = metrics.Histogram("recsys_engine_latency_ms", "latency of each engine call",
                                        boundaries=ms, tag_keys=("engine",))
        self.fallback = metrics.Counter("recsys_engine_fallbacks", "engine calls left out (error/timeout)",
                                        tag_keys=("engine", "reason"))
        self.empty = metrics.Counter("recsys_empty_results", "answers with no items", tag_keys=("endpoint",))
        # One count per answer, so the dashboard can show the degraded share and the decision ranker's share.
        self.answers = metrics.Counter("recsys_answers", "answered requests by endpoint, ranker and whether an "
                                       "engine was left out", tag_keys=("endpoint", "ranker", "degraded"))
        # Batching: a histogram for the dashboard (Ray approximates its sum from bucket midpoints), and
        # exact counters of batches and the requests in them (their ratio is the mean batch).
        self.batch = metrics.Histogram("recsys_recommend_batch_size", "/recommend requests answered together",
                                       boundaries=[1, 2, 4, 8, 16, 32, 64])
        self.batches = metrics.Counter("recsys_recommend_batches", "batches of /recommend requests")
        self.batched = metrics.Counter("recsys_recommend_batched_requests", "/recommend requests in those batches")

    def request(self, endpoint: str, status: int, took_ms: float) -> None:
        self.requests.inc(tags={"endpoint": endpoint, "status": str(status)})
        self.latency.observe(took_ms, tags={"endpoint": endpoint})

    def answer(self, endpoint: str, ranker: str, degraded: list[str]) -> None:
        self.answers.inc(tags={"endpoint": endpoint, "ranker": ranker, "degraded": "yes" if degraded else "no"})

    def engine_call(self, engine: str, took_ms: float) -> None:
        self.engine.observe(took_ms, tags={"engine": engine})

    def engine_fallback(self, engine: str, reason: str) -> None:
        self.fallback.inc(tags={"engine": engine, "reason": reason})

    def empty_answer(self, endpoint: str) -> None:
        self.empty.inc(tags={"endpoint": endpoint})

    def batch_answered(self, size: int) -> None:
        self.batch.observe(size)
        self.batches.inc()
        self.batched.inc(size)
