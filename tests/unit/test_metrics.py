"""The bulk latency histogram counts whole batches into the right buckets."""

from __future__ import annotations

import numpy as np

from service.metrics import Metrics


def test_bulk_histogram_buckets_sum_and_count():
    metrics = Metrics("test")
    latencies = np.array([0.0005, 0.001, 0.002, 0.02, 0.02, 0.7, 45.0, 120.0])
    metrics.update_latency.observe_many(latencies, "t")
    sample = metrics.registry.get_sample_value
    name = "livetables_update_latency_seconds"

    def bucket(le: str) -> float:
        return sample(f"{name}_bucket", {"table": "t", "le": le})

    assert bucket("0.001") == 2  # le is inclusive: 0.001 itself falls in the 1 ms bucket
    assert bucket("0.0025") == 3
    assert bucket("0.025") == 5
    assert bucket("1.0") == 6
    assert bucket("60.0") == 7
    assert bucket("+Inf") == 8
    assert sample(f"{name}_count", {"table": "t"}) == 8
    assert abs(sample(f"{name}_sum", {"table": "t"}) - latencies.sum()) < 1e-9


def test_latency_from_known_record_timestamps():
    """Records stamped 2 s and 200 ms before they are applied land in those buckets."""
    metrics = Metrics("test")
    applied_at = 1_700_000_000.0
    stamps_ms = np.array([applied_at * 1000 - 2000, applied_at * 1000 - 200])
    metrics.update_latency.observe_many(applied_at - stamps_ms / 1000.0, "t")
    sample = metrics.registry.get_sample_value
    assert sample("livetables_update_latency_seconds_bucket", {"table": "t", "le": "0.1"}) == 0
    assert sample("livetables_update_latency_seconds_bucket", {"table": "t", "le": "0.25"}) == 1
    assert sample("livetables_update_latency_seconds_bucket", {"table": "t", "le": "1.0"}) == 1
    assert sample("livetables_update_latency_seconds_bucket", {"table": "t", "le": "2.5"}) == 2


def test_build_info_names_the_version():
    metrics = Metrics("1.2.3")
    assert metrics.registry.get_sample_value("livetables_build_info", {"version": "1.2.3"}) == 1
