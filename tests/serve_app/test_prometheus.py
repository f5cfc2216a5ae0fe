"""The batch counters read back from a Prometheus exposition text (no Ray needed)."""
from serve_app.prometheus import BATCHED_REQUESTS, BATCHES, counter_total

TEXT = """\
# HELP ray_recsys_recommend_batches_total batches of /recommend requests
# TYPE ray_recsys_recommend_batches_total counter
ray_recsys_recommend_batches_total{Component="core_worker",NodeAddress="127.0.0.1",replica="a"} 3.0
ray_recsys_recommend_batches_total{Component="core_worker",NodeAddress="127.0.0.1",replica="b"} 2.0
# HELP ray_recsys_recommend_batched_requests_total /recommend requests in those batches
# TYPE ray_recsys_recommend_batched_requests_total counter
ray_recsys_recommend_batched_requests_total{replica="a"} 11.0
ray_recsys_recommend_batched_requests_total{replica="b"} 4.0
# HELP ray_other_recsys_recommend_batches counter of another name that only contains ours
# TYPE ray_other_recsys_recommend_batches gauge
ray_other_recsys_recommend_batches 100.0
"""


def test_counter_totals_sum_over_replicas():
    assert counter_total(TEXT, BATCHES) == 5.0
    assert counter_total(TEXT, BATCHED_REQUESTS) == 15.0


def test_a_missing_counter_is_zero():
    assert counter_total(TEXT, "recsys_nothing_total") == 0.0
