"""The native reader (``connectors/_kafkabatch.c``) refuses misuse with an exception, never a crash.

The owner always constructs a Reader once and reads through it; these calls are outside that
path and prove the C type guards its own state: a Reader never initialised (NULL queue and
consumer pointers) and a second ``__init__`` (which leaked the first queue and consumer).
No broker is needed: a consumer is only created, never connected.
"""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer

from connectors import kafkabatch

pytestmark = pytest.mark.skipif(not kafkabatch.available(), reason="native reader not built")


def test_a_reader_that_was_never_initialised_refuses_every_call():
    reader = kafkabatch._kafkabatch.Reader.__new__(kafkabatch._kafkabatch.Reader)
    with pytest.raises(RuntimeError, match="closed"):
        reader.read(10, 0)
    with pytest.raises(RuntimeError, match="closed"):
        reader.queued()
    with pytest.raises(RuntimeError, match="closed"):
        reader.route("topic", 0)
    reader.close()  # nothing to release: a no-op


def test_a_reader_is_initialised_once():
    consumer = Consumer(
        {"bootstrap.servers": "127.0.0.1:9", "group.id": "g", "client.id": "misuse"}
    )
    try:
        reader = kafkabatch.open_reader(consumer, "misuse", capacity=10)
        assert reader is not None
        with pytest.raises(RuntimeError, match="once"):
            reader.__init__(consumer, "misuse", 10)
        assert reader.queued() == 0  # still the first queue, still usable
        reader.close()
    finally:
        consumer.close()
