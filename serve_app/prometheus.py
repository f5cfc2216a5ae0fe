"""Reading the app's own counters back from Ray's Prometheus export (the numbers the dashboard shows):
the load benchmark and the serving tests check batching with them."""
from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

BATCHES = "recsys_recommend_batches_total"
BATCHED_REQUESTS = "recsys_recommend_batched_requests_total"


def counter_total(text: str, name: str) -> float:
    """Sum over every label set (replicas, nodes) of the samples called `name` in an exposition text.
    Ray prefixes application metrics (`ray_recsys_...`), so the name matches as a suffix."""
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name or sample.name.endswith("_" + name))


def batch_stats(metrics_port: int, host: str = "127.0.0.1") -> tuple[float, float]:
    """(batches, requests in them) so far of the ingress's exact batch counters; (0, 0) when the
    export cannot be reached (no metric exported yet)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{metrics_port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, OSError):
        return 0.0, 0.0
    return counter_total(text, BATCHES), counter_total(text, BATCHED_REQUESTS)
