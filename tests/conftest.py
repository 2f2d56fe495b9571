"""Shared fixtures: a real Kafka broker (KRaft, from Maven jars), and the service in-process.

The broker is started once per test session on free loopback ports; tests
that stop a broker start one of their own (see ``fresh_kafka``). The schema
registry (Apicurio Registry from Maven Central) starts once, for the tests
that ask for it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from service.localkafka import LocalKafka
from service.localregistry import LocalRegistry
from tests.helpers import ServiceThread


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    broker = LocalKafka(tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def schema_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A real schema registry (Apicurio, Confluent-compatible API), once per session."""
    registry = LocalRegistry(tmp_path_factory.mktemp("registry"))
    registry.start()
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture
def fresh_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A broker of the test's own, free to be stopped and restarted."""
    broker = LocalKafka(tmp_path_factory.mktemp("kafka-own"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> str:
    """A topic name unique to the test."""
    base = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[:60].strip("-")
    return f"{base}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def run_service() -> Iterator:
    """Start services in-process; every one started is stopped at the end of the test."""
    started: list[ServiceThread] = []

    def start(config: dict, port: int = 0) -> ServiceThread:
        service = ServiceThread(config, port)
        service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()
