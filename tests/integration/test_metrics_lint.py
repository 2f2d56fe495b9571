"""/metrics, with every family populated by real traffic, passes ``promtool check metrics``."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

from prometheus_client.parser import text_string_to_metric_families

from service.remote import connect
from tests.helpers import json_bytes, produce, wait_until

SCHEMA = {"id": "string", "sym": "string", "px": "float", "qty": "integer"}

# The README's metric contract, plus readiness, connectivity, messages sent and the build.
CONTRACT = {
    "livetables_records_consumed": ("counter", {"table"}),
    "livetables_rows_applied": ("counter", {"table", "op"}),
    "livetables_decode_errors": ("counter", {"table", "reason"}),
    "livetables_update_latency_seconds": ("histogram", {"table"}),
    "livetables_update_duration_seconds": ("histogram", {"table"}),
    "livetables_batch_rows": ("histogram", {"table"}),
    "livetables_consumer_lag_messages": ("gauge", {"table", "topic", "partition"}),
    "livetables_table_rows": ("gauge", {"table"}),
    "livetables_table_ready": ("gauge", {"table"}),
    "livetables_kafka_connected": ("gauge", {"table"}),
    "livetables_websocket_sessions": ("gauge", set()),
    "livetables_websocket_bytes_sent": ("counter", set()),
    "livetables_websocket_messages_sent": ("counter", set()),
    "livetables_websocket_rejected_requests": ("counter", {"reason"}),
    "livetables_websocket_disconnects": ("counter", {"reason"}),
    "livetables_build_info": ("gauge", {"version"}),
    "livetables_table_start": ("gauge", {"table", "kind"}),
    "livetables_snapshot_duration_seconds": ("histogram", {"table"}),
    "livetables_snapshot_bytes": ("gauge", {"table"}),
    "livetables_snapshot_age_seconds": ("gauge", {"table"}),
    "livetables_snapshots": ("counter", {"table", "outcome"}),
    "livetables_snapshot_restore_seconds": ("gauge", {"table"}),
    "livetables_derived_refresh_seconds": ("histogram", {"table"}),
    "livetables_derived_refresh_failures": ("counter", {"table"}),
    "livetables_rows_expired": ("counter", {"table"}),
    "livetables_expiry_failures": ("counter", {"table"}),
}


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, (
        "promtool not found: run scripts/install-system-deps.sh (Debian package prometheus)"
    )
    return path


async def _websocket_session(url: str, table_name: str) -> None:
    """Read a table like a client would, send one refused (text) frame, and disconnect."""
    remote = await connect(url)
    socket, pump_task = remote.socket, remote.pump
    table = await remote.client.open_table(table_name)
    view = await table.view()
    assert await view.num_rows() > 0
    await socket.write_message("not a perspective request")
    await view.delete()
    # The close frame's free text must not become a label value (bounded cardinality).
    socket.close(1000, "any text a client likes")
    pump_task.cancel()


def test_metrics_with_traffic_pass_promtool(kafka, topic_name, run_service, tmp_path):
    kafka.create_topic(topic_name, partitions=2)
    records = []
    for i in range(400):
        key = f"k{i % 40}".encode()
        if i % 50 == 7:
            value = b"not json"
        elif i % 30 == 29:
            value = None  # a tombstone: a removal on the indexed table
        else:
            value = json_bytes({"id": key.decode(), "sym": "S", "px": i / 4, "qty": i})
        records.append((i % 2, key, value))
    produce(kafka.bootstrap, topic_name, records)
    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "snapshots": {"dir": str(tmp_path), "interval": "1s"},
            "tables": {
                "quotes": {"topic": topic_name, "schema": SCHEMA, "index": "id"},
                "log": {"topic": topic_name, "schema": SCHEMA, "limit": 100},
                "recent": {"topic": topic_name, "schema": SCHEMA, "retention": "1h"},
                "by_sym": {"from": "quotes", "view": {"group_by": ["sym"], "columns": ["qty"]}},
            },
        }
    )
    wait_until(service.ready, what="catch-up")
    wait_until(
        lambda: service.metric("livetables_snapshots_total", table="log", outcome="written"),
        what="a snapshot written",
    )
    asyncio.run(_websocket_session(service.ws_url, "quotes"))
    wait_until(
        lambda: service.metric("livetables_websocket_disconnects_total", reason="client") == 1,
        what="the session's disconnect counted",
    )
    assert service.metric("livetables_websocket_rejected_requests_total", reason="not_binary") == 1

    status, text = service.get("/metrics")
    assert status == 200
    lint = subprocess.run(
        [promtool(), "check", "metrics"],
        input=text.encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    output = (lint.stdout + lint.stderr).decode().strip()
    assert lint.returncode == 0 and not output, f"promtool check metrics:\n{output}"

    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, (kind, labels) in CONTRACT.items():
        assert name in families, f"{name} missing from /metrics"
        family = families[name]
        assert family.type == kind, f"{name} is a {family.type}, not a {kind}"
        assert family.samples, f"{name} has no samples after traffic"
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample.labels)
    # Bounded cardinality: only the lag gauge is per partition.
    for family in families.values():
        for sample in family.samples:
            assert "partition" not in sample.labels or (
                family.name == "livetables_consumer_lag_messages"
            ), sample
    assert service.metric("livetables_decode_errors_total", table="quotes", reason="invalid_json")
    assert service.metric("livetables_rows_applied_total", table="quotes", op="remove")
    assert service.metric("livetables_update_latency_seconds_count", table="quotes") > 0
    assert service.metric("livetables_derived_refresh_seconds_count", table="by_sym") > 0

    def bounds(name: str) -> list[str]:
        samples = families[name].samples
        return [
            s.labels["le"]
            for s in samples
            if s.name.endswith("_bucket") and s.labels["table"] == "log"
        ]

    latency = bounds("livetables_update_latency_seconds")
    assert latency[0] == "0.001" and latency[-2:] == ["60.0", "+Inf"], latency
    batch = bounds("livetables_batch_rows")
    assert batch[0] == "1.0" and batch[-2:] == ["100000.0", "+Inf"], batch
