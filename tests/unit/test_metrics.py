"""The metrics: bulk latency histogram, latency from record timestamps, series at start-up."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from prometheus_client import generate_latest

from service.metrics import BATCH_BUCKETS, LATENCY_BUCKETS, Metrics

LATENCY = "livetables_update_latency_seconds"


def test_bulk_histogram_buckets_sum_and_count():
    metrics = Metrics("test")
    latencies = np.array([0.0005, 0.001, 0.002, 0.02, 0.02, 0.7, 45.0, 120.0])
    metrics.update_latency.observe_many(latencies, "t")
    sample = metrics.registry.get_sample_value

    def bucket(le: str) -> float:
        return sample(f"{LATENCY}_bucket", {"table": "t", "le": le})

    assert bucket("0.001") == 2  # le is inclusive: 0.001 itself falls in the 1 ms bucket
    assert bucket("0.0025") == 3
    assert bucket("0.025") == 5
    assert bucket("1.0") == 6
    assert bucket("60.0") == 7
    assert bucket("+Inf") == 8
    assert sample(f"{LATENCY}_count", {"table": "t"}) == 8
    assert abs(sample(f"{LATENCY}_sum", {"table": "t"}) - latencies.sum()) < 1e-9


def test_latency_from_known_record_timestamps():
    """Records stamped 2 s, 200 ms and 3 ms before they are applied land in those buckets."""
    metrics = Metrics("test")
    applied_at = 1_700_000_000.0
    stamps_ms = pa.array(
        [int(applied_at * 1000) - 2000, int(applied_at * 1000) - 200, int(applied_at * 1000) - 3],
        pa.int64(),
    )
    metrics.observe_latency("t", stamps_ms, applied_at)
    sample = metrics.registry.get_sample_value

    def bucket(le: str) -> float:
        return sample(f"{LATENCY}_bucket", {"table": "t", "le": le})

    assert bucket("0.0025") == 0
    assert bucket("0.005") == 1  # 3 ms
    assert bucket("0.1") == 1
    assert bucket("0.25") == 2  # 200 ms
    assert bucket("1.0") == 2
    assert bucket("2.5") == 3  # 2 s
    assert sample(f"{LATENCY}_count", {"table": "t"}) == 3
    assert abs(sample(f"{LATENCY}_sum", {"table": "t"}) - 2.203) < 1e-6


def test_latency_skips_records_without_timestamp_and_clamps_future_ones():
    """librdkafka reports -1 for a record without timestamp; a clock ahead of ours counts as 0."""
    metrics = Metrics("test")
    applied_at = 1_700_000_000.0
    now_ms = int(applied_at * 1000)
    metrics.observe_latency("t", np.array([-1, now_ms + 5000, now_ms - 40]), applied_at)
    sample = metrics.registry.get_sample_value
    assert sample(f"{LATENCY}_count", {"table": "t"}) == 2
    assert sample(f"{LATENCY}_bucket", {"table": "t", "le": "0.001"}) == 1  # the future one, at 0
    assert sample(f"{LATENCY}_bucket", {"table": "t", "le": "0.05"}) == 2
    assert abs(sample(f"{LATENCY}_sum", {"table": "t"}) - 0.04) < 1e-6


def test_empty_batch_observes_nothing():
    metrics = Metrics("test")
    metrics.observe_latency("t", pa.array([], pa.int64()), 1_700_000_000.0)
    assert metrics.registry.get_sample_value(f"{LATENCY}_count", {"table": "t"}) is None


def test_buckets_span_the_promised_ranges():
    assert LATENCY_BUCKETS[0] == 0.001 and LATENCY_BUCKETS[-1] == 60.0
    assert BATCH_BUCKETS[0] == 1 and BATCH_BUCKETS[-1] == 100_000
    for buckets in (LATENCY_BUCKETS, BATCH_BUCKETS):
        assert list(buckets) == sorted(set(buckets))


def test_a_table_has_its_series_at_zero_before_its_first_record():
    metrics = Metrics("test")
    metrics.init_table("t")
    sample = metrics.registry.get_sample_value
    assert sample("livetables_records_consumed_total", {"table": "t"}) == 0
    assert sample("livetables_rows_applied_total", {"table": "t", "op": "update"}) == 0
    assert sample("livetables_rows_applied_total", {"table": "t", "op": "remove"}) == 0
    assert sample(f"{LATENCY}_bucket", {"table": "t", "le": "+Inf"}) == 0
    assert sample(f"{LATENCY}_count", {"table": "t"}) == 0
    assert sample("livetables_update_duration_seconds_count", {"table": "t"}) == 0
    assert sample("livetables_batch_rows_count", {"table": "t"}) == 0
    assert sample("livetables_table_rows", {"table": "t"}) == 0
    assert sample("livetables_table_ready", {"table": "t"}) == 0


def test_latency_help_names_the_timestamp():
    text = generate_latest(Metrics("test").registry).decode()
    (help_line,) = [line for line in text.splitlines() if line.startswith(f"# HELP {LATENCY} ")]
    assert "Kafka record timestamp" in help_line
    assert "CreateTime" in help_line and "LogAppendTime" in help_line


def test_build_info_names_the_version():
    metrics = Metrics("1.2.3")
    assert metrics.registry.get_sample_value("livetables_build_info", {"version": "1.2.3"}) == 1
