"""Hostile records through the native reader and the JSON fast path, against a real broker.

Every record of a topic is untrusted bytes. Here a real table reads a topic that mixes good
records with records built to hurt the C code on the ingest path: values just under and
just over ``max_record_bytes``, strings that are not UTF-8, nesting 100k levels deep,
numbers that overflow a double, NUL bytes and binary noise, and header names and values
that are not UTF-8 (written through librdkafka itself: confluent-kafka cannot write them).
Each good record must reach the table, each bad one must be a dead letter with its reason
and offset, the consumer must never restart, and ``/healthz`` must answer 200 throughout.
"""

from __future__ import annotations

import pytest

from tests.helpers import json_bytes, read_topic, wait_until
from tests.raw_producer import produce_raw

pytestmark = pytest.mark.kafka

SCHEMA = {"id": "string", "n": "integer", "px": "float", "source": "string"}
MAX_RECORD = 1_048_576
TOPIC_CONFIG = {"max.message.bytes": str(8 * 1024 * 1024)}


def _good(n: int, **extra) -> bytes:
    return json_bytes({"id": f"r{n}", "n": n, "px": n / 4, **extra})


def _padded(n: int, size: int) -> bytes:
    """A good record of exactly ``size`` bytes (the padding in a field no column takes)."""
    head = _good(n)[:-1] + b', "memo": "'
    return head + b"x" * (size - len(head) - 2) + b'"}'


# (value, headers, the reason it is refused or None when it is a good record)
HOSTILE: list[tuple[bytes, list[tuple[bytes, bytes | None]], str | None]] = [
    (_padded(1000, MAX_RECORD), [], None),
    (_padded(1001, MAX_RECORD + 1), [], "oversized"),
    (b'{"id": "\xff\xfe(", "n": 1002}', [], "invalid_utf8"),
    (b'{"id": "\xc0\xaf", "n": 1003}', [], "invalid_utf8"),
    (b'{"id": "\xed\xa0\x80", "n": 1004}', [], "invalid_utf8"),
    (b'{"n": 1005, "deep": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", [], None),
    (b'{"n": 1006, "deep": ' + b"[" * 500_000, [], "invalid_json"),
    (b'{"n": ' + b"[" * 1000 + b"]" * 1000 + b"}", [], "type_mismatch"),
    (b'{"n": 1008, "big": 1e400}', [], "invalid_json"),
    (b'{"n": 1009, "px": 1e999999}', [], "invalid_json"),
    (b'{"n": 1010, "px": 0.' + b"0" * 100_000 + b"1}", [], None),
    (b'{"n": 1011, "id": "nul\x00inside"}', [], "invalid_json"),
    (b"\x00\xff\x00binary noise\x01\x02", [], "invalid_json"),
    (b"\xef\xbb\xbf" + _good(1013), [], "invalid_json"),
    (_good(1014), [(b"\xff\xfe-name", b"v"), (b"x-source", b"feed-a")], None),
    (_good(1015), [(b"x-source", b"\xff\xfe")], "invalid_utf8"),
    (_good(1016, id="\u0000 escaped nul and \ud83d\ude00"), [], None),
]


def test_hostile_records_become_dead_letters_and_the_table_keeps_ingesting(
    kafka, topic_name, run_service
):
    dead = f"{topic_name}-dead"
    kafka.create_topic(topic_name, partitions=1, config=TOPIC_CONFIG)
    kafka.create_topic(dead, partitions=1)
    before = [(f"k{i}".encode(), _good(i), []) for i in range(50)]
    hostile = [(f"h{i}".encode(), value, headers) for i, (value, headers, _) in enumerate(HOSTILE)]
    after = [(f"k{i}".encode(), _good(i), []) for i in range(50, 100)]
    produce_raw(kafka.bootstrap, topic_name, before + hostile + after, MAX_RECORD * 4)
    refused = {50 + i: reason for i, (_, _, reason) in enumerate(HOSTILE) if reason}
    kept = [1000 + i for i, (_, _, reason) in enumerate(HOSTILE) if reason is None]

    service = run_service(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap},
            "tables": {
                "orders": {
                    "topic": topic_name,
                    "schema": SCHEMA,
                    "headers": {"source": "x-source"},
                    "max_record_bytes": MAX_RECORD,
                    "dead_letter_topic": dead,
                }
            },
        }
    )
    expected = sorted([*range(100), *kept])
    wait_until(
        lambda: service.size("orders") == len(expected) or service.get("/healthz")[0] != 200,
        timeout=60,
        what="every good record",
    )
    assert service.get("/healthz")[0] == 200
    assert sorted(service.columns("orders")["n"]) == expected
    assert service.metric("livetables_consumer_restarts_total", table="orders") == 0
    for reason in set(refused.values()):
        count = sum(1 for r in refused.values() if r == reason)
        assert (
            service.metric("livetables_decode_errors_total", table="orders", reason=reason) == count
        ), reason
    columns = service.columns("orders")
    sources = dict(zip(columns["n"], columns["source"], strict=True))
    assert sources[1014] == "feed-a"  # the header after the one whose name is not UTF-8

    copies = read_topic(kafka.bootstrap, dead, len(refused))
    found = {}
    for copy in copies:
        headers = dict(copy.headers())
        offset = int(headers["livetables-source"].decode().rsplit("/", 1)[1])
        assert headers["livetables-source"].decode() == f"{topic_name}/0/{offset}"
        assert headers["livetables-error-detail"], "a dead letter without a detail"
        found[offset] = headers["livetables-error-reason"].decode()
    assert found == refused

    # Still ingesting: a record produced now arrives, and the service is healthy.
    produce_raw(kafka.bootstrap, topic_name, [(b"late", _good(100), [])])
    wait_until(lambda: service.size("orders") == len(expected) + 1, what="a record after them")
    assert service.get("/healthz")[0] == 200


def test_the_native_reader_hands_over_a_header_name_that_is_not_utf8_as_replacement_text(
    kafka, topic_name
):
    """Before, such a name made every read of its batch raise: the consumer restarted at
    the same offset for ever and the table stopped ingesting."""
    from tests.integration.test_native_reader import _read

    kafka.create_topic(topic_name, partitions=1)
    produce_raw(
        kafka.bootstrap,
        topic_name,
        [
            (b"a", b"1", [(b"\xff\xfe-name", b"v"), (b"ok", None)]),
            (b"b", b"2", [(b"caf\xc3\xa9", b"\xff")]),
        ],
    )
    captured = _read(kafka, [topic_name], native=True, headers=True)
    assert [r[6] for r in captured.records] == [
        [("\ufffd\ufffd-name", b"v"), ("ok", None)],
        [("café", b"\xff")],
    ]


def test_the_portable_reader_marks_headers_it_cannot_read_instead_of_failing_the_batch(
    kafka, topic_name
):
    """confluent-kafka's ``headers()`` raises on a name that is not UTF-8; the portable path
    (no native reader) must not let that fail the batch and stop the table."""
    from connectors.base import UNREADABLE_HEADERS
    from tests.integration.test_native_reader import _read

    kafka.create_topic(topic_name, partitions=1)
    # Readable ones first, many: the interpreter specialises the hot call by then, and a
    # specialised call used to let the library's pending error escape the reader.
    readable = [(b"k", b"0", [(b"ok", b"v")]) for _ in range(200)]
    produce_raw(
        kafka.bootstrap,
        topic_name,
        [
            *readable,
            (b"a", b"1", [(b"\xff\xfe-name", b"v"), (b"ok", None)]),
            (b"b", b"2", [(b"caf\xc3\xa9", b"\xff")]),
        ],
    )
    captured = _read(kafka, [topic_name], native=False, headers=True)
    headers = [r[6] for r in captured.records]
    assert headers[:200] == [[("ok", b"v")]] * 200
    assert headers[200] is UNREADABLE_HEADERS
    assert headers[201] == [("café", b"\xff")]
