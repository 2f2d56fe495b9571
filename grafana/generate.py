"""The livetables Grafana dashboard, generated from this file (standard library only).

    python grafana/generate.py            # writes grafana/livetables.json next to this file
    python grafana/generate.py --check    # exit 1 if livetables.json differs from a regeneration

Edit the panels here, never the JSON: a test compares the committed JSON with a
regeneration, and another runs every query below against a real Prometheus.

Conventions: every query is filtered by the ``job`` and ``instance`` variables
(and ``table`` where the metric has a table label); every ``rate()`` and
``increase()`` uses ``$__rate_interval``; every panel has a unit, a legend and a
description. Panels are laid out on Grafana's 24-column grid, row by row.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).with_name("livetables.json")

UID = "livetables"
TITLE = "livetables"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"

# -- selectors ---------------------------------------------------------------------------------


def sel(*, table: bool = True) -> str:
    """The label matchers every query carries: job and instance, plus table where it applies."""
    matchers = ['job=~"$job"', 'instance=~"$instance"']
    if table:
        matchers.append('table=~"$table"')
    return "{" + ", ".join(matchers) + "}"


T = sel()  # per-table metrics
P = sel(table=False)  # process-wide metrics


def rate(metric: str, selector: str = T) -> str:
    return f"rate({metric}{selector}[{RATE}])"


def quantile(q: float, metric: str, by: str = "table") -> str:
    return f"histogram_quantile({q}, sum by ({by}, le) ({rate(metric + '_bucket')}))"


def p50_p99(metric: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """A histogram's median and p99 per table, as (query, legend) pairs."""
    return (quantile(0.5, metric), "{{table}} p50"), (quantile(0.99, metric), "{{table}} p99")


# -- panels ------------------------------------------------------------------------------------


def target(expr: str, legend: str, ref: str = "A", **extra: Any) -> dict[str, Any]:
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend,
        "range": True,
        "refId": ref,
        **extra,
    }


def targets(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    return [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(pairs)]


def thresholds(*steps: tuple[str, float | None]) -> dict[str, Any]:
    return {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for color, value in steps],
    }


GREEN_ONLY = thresholds(("green", None))


def timeseries(
    title: str,
    description: str,
    unit: str,
    queries: list[dict[str, Any]],
    *,
    w: int = 12,
    h: int = 8,
    stack: bool = False,
    max_value: float | None = None,
    overrides: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "color": {"mode": "palette-classic"},
        "custom": {
            "axisBorderShow": False,
            "axisCenteredZero": False,
            "axisColorMode": "text",
            "axisLabel": "",
            "axisPlacement": "auto",
            "drawStyle": "line",
            "fillOpacity": 10,
            "gradientMode": "none",
            "lineInterpolation": "linear",
            "lineWidth": 1,
            "pointSize": 4,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"group": "A", "mode": "normal" if stack else "none"},
            "thresholdsStyle": {"mode": "off"},
        },
        "min": 0,
        "thresholds": GREEN_ONLY,
        "unit": unit,
    }
    if max_value is not None:
        defaults["max"] = max_value
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": {
            "legend": {
                "calcs": ["mean", "max", "lastNotNull"],
                "displayMode": "table",
                "placement": "bottom",
                "showLegend": True,
                "sortBy": "Max",
                "sortDesc": True,
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": queries,
        "_size": (w, h),
    }


def stat(
    title: str,
    description: str,
    unit: str,
    expr: str,
    legend: str,
    *,
    steps: dict[str, Any] = GREEN_ONLY,
    mappings: list[dict[str, Any]] | None = None,
    color_mode: str = "value",
    graph: bool = True,
    decimals: int | None = None,
    text_mode: str = "auto",
    w: int = 4,
    h: int = 4,
) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "color": {"mode": "thresholds"},
        "mappings": mappings or [],
        "thresholds": steps,
        "unit": unit,
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "colorMode": color_mode,
            "graphMode": "area" if graph else "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "showPercentChange": False,
            "textMode": text_mode,
            "wideLayout": True,
        },
        "targets": [target(expr, legend)],
        "_size": (w, h),
    }


def state_timeline(
    title: str,
    description: str,
    expr: str,
    legend: str,
    states: list[tuple[int, str, str]],
    *,
    w: int = 12,
    h: int = 8,
) -> dict[str, Any]:
    """A row per series, coloured by state: ``states`` are (value, text, colour)."""
    mapping = {
        "type": "value",
        "options": {
            str(value): {"color": color, "index": i, "text": text}
            for i, (value, text, color) in enumerate(states)
        },
    }
    return {
        "type": "state-timeline",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {
            "defaults": {
                "color": {"mode": "thresholds"},
                "custom": {"fillOpacity": 75, "lineWidth": 0},
                "mappings": [mapping],
                "thresholds": GREEN_ONLY,
                "unit": "none",
            },
            "overrides": [],
        },
        "options": {
            "alignValue": "left",
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": False},
            "mergeValues": True,
            "rowHeight": 0.8,
            "showValue": "never",
            "tooltip": {"mode": "single", "sort": "none"},
        },
        "targets": [target(expr, legend)],
        "_size": (w, h),
    }


def heatmap(
    title: str, description: str, unit: str, expr: str, *, w: int = 12, h: int = 8
) -> dict[str, Any]:
    """Prometheus histogram buckets drawn as they are (no re-bucketing in Grafana)."""
    return {
        "type": "heatmap",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {
            "defaults": {
                "custom": {
                    "hideFrom": {"legend": False, "tooltip": False, "viz": False},
                    "scaleDistribution": {"type": "linear"},
                },
                "unit": unit,
            },
            "overrides": [],
        },
        "options": {
            "calculate": False,
            "cellGap": 1,
            "color": {
                "exponent": 0.5,
                "fill": "dark-orange",
                "mode": "scheme",
                "reverse": False,
                "scale": "exponential",
                "scheme": "Oranges",
                "steps": 64,
            },
            "exemplars": {"color": "rgba(255,0,255,0.7)"},
            "filterValues": {"le": 1e-9},
            "legend": {"show": True},
            "rowsFrame": {"layout": "le"},
            "tooltip": {"mode": "single", "showColorScale": False, "yHistogram": True},
            "yAxis": {"axisPlacement": "left", "reverse": False, "unit": unit},
        },
        "targets": [target(expr, "{{le}}", format="heatmap", interval="")],
        "_size": (w, h),
    }


def row(title: str, panels: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    return title, panels


# -- the dashboard -------------------------------------------------------------------------

READY_STATES = [(0, "catching up", "orange"), (1, "ready", "green")]
CONNECTED_STATES = [(0, "no broker", "red"), (1, "connected", "green")]

LATENCY_HELP = (
    "From each record's Kafka timestamp (CreateTime set by the producer, or LogAppendTime "
    "if the topic is configured for it) to the moment the table update holding it returned. "
    "Includes time in Kafka, consuming, decoding, queueing and the update itself; a producer "
    "whose clock runs behind inflates it."
)


def overview() -> tuple[str, list[dict[str, Any]]]:
    return row(
        "Overview",
        [
            stat(
                "Ready",
                "Whether every selected table on every selected instance has applied everything "
                "up to the end offsets seen at start-up, as /readyz reports. 'catching up' while "
                "any table still replays its backlog.",
                "none",
                f"min(livetables_table_ready{T})",
                "ready",
                steps=thresholds(("orange", None), ("green", 1)),
                mappings=[
                    {
                        "type": "value",
                        "options": {
                            "0": {"color": "orange", "index": 0, "text": "catching up"},
                            "1": {"color": "green", "index": 1, "text": "ready"},
                        },
                    }
                ],
                color_mode="background",
                graph=False,
            ),
            stat(
                "Records consumed",
                "Kafka records consumed per second by the selected tables, summed over the "
                "selected instances (every replica consumes every record).",
                "count:rec/s",
                f"sum({rate('livetables_records_consumed_total')})",
                "records/s",
            ),
            stat(
                "Consumer lag",
                "Messages in Kafka not yet applied to the tables, summed over partitions, on the "
                "instance that is furthest behind. Growing lag with steady traffic means the "
                "instance cannot keep up.",
                "short",
                f"max(sum by (instance) (livetables_consumer_lag_messages{T}))",
                "lag",
                steps=thresholds(("green", None), ("orange", 10000), ("red", 1000000)),
            ),
            stat(
                "Decode errors",
                "Share of consumed records skipped as undecodable (bad JSON, wrong types, "
                "unusable keys) or refused by the table update. See the reasons below.",
                "percentunit",
                f"(sum({rate('livetables_decode_errors_total')}) or vector(0))"
                f" / sum({rate('livetables_records_consumed_total')})",
                "error ratio",
                steps=thresholds(("green", None), ("orange", 0.001), ("red", 0.01)),
                mappings=[
                    {
                        "type": "special",
                        "options": {
                            "match": "nan",
                            "result": {"color": "text", "index": 0, "text": "no traffic"},
                        },
                    }
                ],
            ),
            stat(
                "Update latency p99",
                "99th percentile of the update latency over all selected tables. " + LATENCY_HELP,
                "s",
                quantile(0.99, "livetables_update_latency_seconds", by="job"),
                "p99",
                steps=thresholds(("green", None), ("orange", 1), ("red", 10)),
            ),
            stat(
                "Viewers",
                "Open websocket sessions (Perspective clients and browser pages) on the selected "
                "instances.",
                "short",
                f"sum(livetables_websocket_sessions{P})",
                "sessions",
            ),
            state_timeline(
                "Table readiness",
                "Per table: catching up (replaying the backlog present at start-up) or ready. "
                "A table that never turns ready is consuming more slowly than its topic grows.",
                f"min by (table) (livetables_table_ready{T})",
                "{{table}}",
                READY_STATES,
            ),
            timeseries(
                "Decode errors by reason",
                "Records skipped per second, by table and reason: invalid_json, not_object, "
                "type_mismatch, missing_index, bad_key, unexpected_tombstone, update_failed. "
                "Each is logged with its topic, partition and offset.",
                "count:err/s",
                targets(
                    (
                        f"sum by (table, reason) ({rate('livetables_decode_errors_total')})",
                        "{{table}}: {{reason}}",
                    )
                ),
            ),
        ],
    )


def kafka() -> tuple[str, list[dict[str, Any]]]:
    return row(
        "Kafka",
        [
            timeseries(
                "Records consumed by table",
                "Kafka records consumed per second, per table, summed over the selected "
                "instances. Includes records later skipped as decode errors.",
                "count:rec/s",
                targets(
                    (
                        f"sum by (table) ({rate('livetables_records_consumed_total')})",
                        "{{table}}",
                    )
                ),
                w=8,
            ),
            timeseries(
                "Consumer lag by topic/partition",
                "Messages per partition not yet applied: the partition's high watermark minus "
                "the next offset to apply, worst instance. Refreshed from librdkafka statistics "
                "every few seconds.",
                "short",
                targets(
                    (
                        f"max by (table, topic, partition) (livetables_consumer_lag_messages{T})",
                        "{{table}}: {{topic}}/{{partition}}",
                    )
                ),
                w=8,
            ),
            state_timeline(
                "Broker connection",
                "Per table: whether its consumer reaches a broker. While no broker is reachable "
                "the table keeps serving its last state and resumes at the next offset.",
                f"min by (table) (livetables_kafka_connected{T})",
                "{{table}}",
                CONNECTED_STATES,
                w=8,
            ),
            timeseries(
                "Restarts",
                "Consumer threads (per table) and the applier thread that failed and were "
                "restarted, per interval. A consumer resumes after the last batch it handed "
                "over, the applier applies what it had taken: nothing is lost, but a thread "
                "that keeps restarting is a bug worth reporting (see the service log).",
                "short",
                targets(
                    (
                        f"sum by (table) (increase(livetables_consumer_restarts_total{T}[{RATE}]))",
                        "consumer {{table}}",
                    ),
                    (
                        f"sum(increase(livetables_applier_restarts_total{P}[{RATE}]))",
                        "applier",
                    ),
                ),
            ),
            timeseries(
                "Dead letters",
                "Bad records copied to each table's dead_letter_topic per second, by outcome: "
                "sent (acknowledged by the broker) or failed (not queued or not delivered: the "
                "record was still skipped, ingestion went on). Truncated copies of records too "
                "large to copy whole are also counted as sent or failed.",
                "count:rec/s",
                targets(
                    (
                        f"sum by (table, outcome) ({rate('livetables_dead_letter_records_total')})",
                        "{{table}} {{outcome}}",
                    ),
                    (
                        f"sum by (table) ({rate('livetables_dead_letter_truncated_total')})",
                        "{{table}} truncated",
                    ),
                ),
            ),
        ],
    )


def tables() -> tuple[str, list[dict[str, Any]]]:
    latency = "livetables_update_latency_seconds"
    duration = "livetables_update_duration_seconds"
    batch = "livetables_batch_rows"
    return row(
        "Tables",
        [
            timeseries(
                "Update latency",
                "Percentiles per table. " + LATENCY_HELP,
                "s",
                targets(
                    (quantile(0.5, latency), "{{table}} p50"),
                    (quantile(0.9, latency), "{{table}} p90"),
                    (quantile(0.99, latency), "{{table}} p99"),
                ),
            ),
            heatmap(
                "Update latency distribution",
                "Records per latency bucket (1 ms to 60 s), all selected tables. " + LATENCY_HELP,
                "s",
                f"sum by (le) (increase({latency}_bucket{T}[{RATE}]))",
            ),
            timeseries(
                "Records per batch",
                "Kafka records per applied batch: p50, p99 and mean per table. Small when "
                "traffic is light; large while catching up or when batches are conflated "
                "because updates fall behind.",
                "short",
                targets(
                    *p50_p99(batch),
                    (
                        f"sum by (table) ({rate(batch + '_sum')})"
                        f" / sum by (table) ({rate(batch + '_count')})",
                        "{{table}} mean",
                    ),
                ),
                w=8,
            ),
            timeseries(
                "Update duration",
                "Time inside one Perspective table update (views recomputed included): p50 and "
                "p99 per table. Many views over a large table make this grow.",
                "s",
                targets(
                    *p50_p99(duration),
                ),
                w=8,
            ),
            timeseries(
                "Time spent updating",
                "Share of wall-clock time spent inside table updates, per instance, for the "
                "selected tables. One thread applies every table's updates: near 100 % it is "
                "saturated, batches grow and latency rises.",
                "percentunit",
                targets(
                    (
                        f"sum by (instance) ({rate(duration + '_sum')})",
                        "{{instance}}",
                    )
                ),
                w=8,
                max_value=1,
            ),
            timeseries(
                "Rows applied",
                "Rows applied per second, per table and operation: update (appends and upserts) "
                "and remove (tombstones on indexed tables). Upserts of one key within a batch "
                "count once.",
                "count:rows/s",
                targets(
                    (
                        f"sum by (table, op) ({rate('livetables_rows_applied_total')})",
                        "{{table}} {{op}}",
                    )
                ),
            ),
            timeseries(
                "Rows",
                "Rows held per table, largest over the selected instances. A rolling-window "
                "table stays at its limit; an indexed table holds one row per live key.",
                "short",
                targets((f"max by (table) (livetables_table_rows{T})", "{{table}}")),
            ),
        ],
    )


def derived_and_retention() -> tuple[str, list[dict[str, Any]]]:
    refresh = "livetables_derived_refresh_seconds"
    return row(
        "Derived tables and retention",
        [
            timeseries(
                "Derived table refresh time",
                "One refresh of a derived table (a grouped view over its source): reading the "
                "view, finding the groups that changed, applying them; p50 and p99 per table. "
                "It grows with the number of groups, not with the source.",
                "s",
                targets(
                    *p50_p99(refresh),
                ),
                w=8,
            ),
            timeseries(
                "Derived table refreshes and changed groups",
                "Refreshes per second per derived table (at most one per refresh interval, "
                "only when the source changed), groups updated or removed per second, and "
                "failed refreshes (retried after the interval; the log says why).",
                "short",
                targets(
                    (f"sum by (table) ({rate(refresh + '_count')})", "{{table}} refreshes"),
                    (
                        f"sum by (table, op) ({rate('livetables_rows_applied_total')})"
                        f" and on (table) {refresh}_count{T}",
                        "{{table}} groups {{op}}",
                    ),
                    (
                        f"sum by (table) ({rate('livetables_derived_refresh_failures_total')})",
                        "{{table}} failures",
                    ),
                ),
                w=8,
            ),
            timeseries(
                "Rows expired",
                "Rows removed per second because they were older than the table's retention, "
                "and failed expiry ticks (retried on the next tick). Under a steady stream "
                "with a full window, rows expire as fast as they arrive.",
                "count:rows/s",
                targets(
                    (f"sum by (table) ({rate('livetables_rows_expired_total')})", "{{table}}"),
                    (
                        f"sum by (table) ({rate('livetables_expiry_failures_total')})",
                        "{{table}} failures",
                    ),
                ),
                w=8,
            ),
        ],
    )


def web() -> tuple[str, list[dict[str, Any]]]:
    return row(
        "Web",
        [
            timeseries(
                "Websocket sessions",
                "Open websocket sessions per instance: Perspective clients on /websocket and "
                "browser pages.",
                "short",
                targets((f"sum by (instance) (livetables_websocket_sessions{P})", "{{instance}}")),
                w=8,
            ),
            timeseries(
                "Bytes sent",
                "Websocket payload bytes sent to clients per second, per instance.",
                "Bps",
                targets(
                    (
                        f"sum by (instance) ({rate('livetables_websocket_bytes_sent_total', P)})",
                        "{{instance}}",
                    )
                ),
                w=8,
            ),
            timeseries(
                "Messages sent",
                "Websocket messages sent to clients per second, per instance.",
                "count:msg/s",
                targets(
                    (
                        "sum by (instance) "
                        f"({rate('livetables_websocket_messages_sent_total', P)})",
                        "{{instance}}",
                    )
                ),
                w=8,
            ),
            timeseries(
                "Rejected requests",
                "Websocket requests refused per second, by reason: requests that would modify "
                "a read-only table, unknown tables, malformed frames. Persistent rejections "
                "point at a misbehaving client.",
                "count:req/s",
                targets(
                    (
                        "sum by (reason) "
                        f"({rate('livetables_websocket_rejected_requests_total', P)})",
                        "{{reason}}",
                    )
                ),
            ),
            timeseries(
                "HTTP connections",
                "Open TCP connections to the HTTP port per instance (websockets included), "
                "against server.max_connections.",
                "short",
                targets((f"sum by (instance) (livetables_http_connections{P})", "{{instance}}")),
                w=8,
            ),
            timeseries(
                "Refused connections and requests",
                "Per second, by reason: connections closed at accept (total or per_address cap "
                "reached; open_files: accepting paused at the descriptor limit) and requests "
                "refused before any handler (host not allowed; a request body).",
                "count:/s",
                targets(
                    (
                        f"sum by (reason) ({rate('livetables_connections_rejected_total', P)})",
                        "connection {{reason}}",
                    ),
                    (
                        f"sum by (reason) ({rate('livetables_http_requests_rejected_total', P)})",
                        "request {{reason}}",
                    ),
                ),
                w=8,
            ),
            timeseries(
                "Websocket requests",
                "Perspective requests received from websocket clients per second, per "
                "instance (refused ones included). Each runs on an engine thread, off the "
                "event loop, within the server's cost limits.",
                "count:req/s",
                targets(
                    (
                        f"sum by (instance) ({rate('livetables_websocket_requests_total', P)})",
                        "{{instance}}",
                    )
                ),
                w=8,
            ),
            timeseries(
                "Disconnects",
                "Websocket sessions ended per second, by reason: client (closed by the client), "
                "slow (dropped after exceeding its outgoing buffer), shutdown (server stopping).",
                "count:/s",
                targets(
                    (
                        f"sum by (reason) ({rate('livetables_websocket_disconnects_total', P)})",
                        "{{reason}}",
                    )
                ),
            ),
        ],
    )


def snapshots() -> tuple[str, list[dict[str, Any]]]:
    duration = "livetables_snapshot_duration_seconds"
    failed = T[:-1] + ', outcome="failed"}'
    return row(
        "Snapshots",
        [
            stat(
                "How tables started",
                "How each table started on each instance: snapshot (loaded, then the tail of "
                "its topics), replay (from its start policy: snapshots off, or none yet), or "
                "fallback:<reason> (a snapshot was there but not usable, see the log line).",
                "none",
                f"max by (table, kind) (livetables_table_start{T} == 1)",
                "{{table}}: {{kind}}",
                graph=False,
                text_mode="name",
                w=6,
                h=8,
            ),
            timeseries(
                "Snapshot age",
                "Seconds since the moment each table's newest snapshot stands for, oldest "
                "instance. It saws up to the interval while a table changes; a steady climb "
                "means snapshots fail or the table is idle (an unchanged table is not "
                "written again). -1: none yet.",
                "s",
                targets((f"max by (table) (livetables_snapshot_age_seconds{T})", "{{table}}")),
                w=6,
            ),
            timeseries(
                "Snapshot duration",
                "Time to fold a table's rows and write them durably (on a thread of its own; "
                "ingestion goes on meanwhile): p50 and p99 per table.",
                "s",
                targets(
                    *p50_p99(duration),
                ),
                w=6,
            ),
            timeseries(
                "Snapshot size and failures",
                "Bytes of each table's newest snapshot, and snapshots that failed (disk full, "
                "permissions: the log says which).",
                "bytes",
                targets(
                    (f"max by (table) (livetables_snapshot_bytes{T})", "{{table}} bytes"),
                    (
                        f"sum by (table) (increase(livetables_snapshots_total{failed}[{RATE}]))",
                        "{{table}} failed",
                    ),
                ),
                w=6,
                overrides=[
                    {
                        "matcher": {"id": "byRegexp", "options": ".* failed"},
                        "properties": [
                            {"id": "unit", "value": "short"},
                            {"id": "custom.axisPlacement", "value": "right"},
                        ],
                    }
                ],
            ),
        ],
    )


def process() -> tuple[str, list[dict[str, Any]]]:
    return row(
        "Process",
        [
            stat(
                "Version",
                "livetables versions running on the selected instances, with how many "
                "instances run each.",
                "none",
                f"count by (version) (livetables_build_info{P})",
                "{{version}}",
                graph=False,
                text_mode="value_and_name",
                w=6,
                h=8,
            ),
            timeseries(
                "Resident memory",
                "Resident memory per instance. The tables live in process memory: compare with "
                "the container's memory limit.",
                "bytes",
                targets((f"process_resident_memory_bytes{P}", "{{instance}}")),
                w=6,
            ),
            timeseries(
                "CPU",
                "CPU time per second per instance (100 % = one core busy).",
                "percentunit",
                targets((f"rate(process_cpu_seconds_total{P}[{RATE}])", "{{instance}}")),
                w=6,
            ),
            timeseries(
                "Ingest CPU by stage",
                "CPU time per second the ingest threads spend, by stage (100 % = one core): "
                "consume (reading from librdkafka), extract, decode, apply (Perspective's "
                "update), replicate, bookkeeping. Apply near one core means the table's "
                "update() is the ceiling; decode or consume high means the records cost more "
                "to read than to apply.",
                "percentunit",
                targets(
                    (
                        f"sum by (stage) (rate(livetables_stage_cpu_seconds_total{T}[{RATE}]))",
                        "{{stage}}",
                    )
                ),
                w=12,
                stack=True,
            ),
            timeseries(
                "CPU per record by stage",
                "Ingest CPU per consumed record, by stage, over the selected tables. A stage "
                "that grows at a steady rate points at what changed: larger records, a new "
                "column, a slower format.",
                "s",
                targets(
                    (
                        f"sum by (stage) (rate(livetables_stage_cpu_seconds_total{T}[{RATE}]))"
                        f" / ignoring (stage) group_left"
                        f" sum(rate(livetables_records_consumed_total{T}[{RATE}]))",
                        "{{stage}}",
                    )
                ),
                w=12,
                stack=True,
            ),
            timeseries(
                "Open file descriptors",
                "Open file descriptors per instance (sockets included) against the limit.",
                "short",
                targets(
                    (f"process_open_fds{P}", "{{instance}} open"),
                    (f"process_max_fds{P}", "{{instance}} limit"),
                ),
                w=6,
            ),
        ],
    )


def variables() -> list[dict[str, Any]]:
    def query(
        name: str, label: str, definition: str, *, multi: bool, sort: int = 1
    ) -> dict[str, Any]:
        return {
            "name": name,
            "label": label,
            "type": "query",
            "datasource": DATASOURCE,
            "definition": definition,
            "query": definition,
            "refresh": 2,
            "regex": "",
            "sort": sort,
            "includeAll": multi,
            "multi": multi,
            **({"allValue": ".*"} if multi else {}),
            "current": {},
            "options": [],
            "hide": 0,
        }

    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "regex": "",
            "refresh": 1,
            "includeAll": False,
            "multi": False,
            "current": {},
            "options": [],
            "hide": 0,
        },
        query("job", "Job", "label_values(livetables_build_info, job)", multi=False),
        query(
            "instance",
            "Instance",
            'label_values(livetables_build_info{job=~"$job"}, instance)',
            multi=True,
        ),
        query(
            "table",
            "Table",
            'label_values(livetables_table_rows{job=~"$job", instance=~"$instance"}, table)',
            multi=True,
        ),
    ]


def layout(rows: list[tuple[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Place rows and their panels on the 24-column grid, left to right, top to bottom."""
    out: list[dict[str, Any]] = []
    y = 0
    next_id = 1
    for title, panels in rows:
        out.append(
            {
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "id": next_id,
                "panels": [],
            }
        )
        next_id += 1
        y += 1
        x = 0
        line_height = 0
        for panel in panels:
            w, h = panel.pop("_size")
            if x + w > 24:
                x, y, line_height = 0, y + line_height, 0
            out.append({"id": next_id, "gridPos": {"h": h, "w": w, "x": x, "y": y}, **panel})
            next_id += 1
            x += w
            line_height = max(line_height, h)
        y += line_height
    return out


def dashboard() -> dict[str, Any]:
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": (
            "livetables: Kafka topics into live Perspective tables. Is data flowing, how far "
            "behind is it, how fast does it reach the tables, and who is watching."
        ),
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [],
        "panels": layout(
            [overview(), kafka(), tables(), web(), derived_and_retention(), snapshots(), process()]
        ),
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": ["livetables", "kafka", "perspective"],
        "templating": {"list": variables()},
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": TITLE,
        "uid": UID,
        "version": 1,
        "weekStart": "",
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the JSON differs from a regeneration"
    )
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT.name} is out of date: run python grafana/generate.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
