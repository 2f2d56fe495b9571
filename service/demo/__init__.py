"""``livetables demo``: a local Kafka, live market data, the service and its dashboards."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from importlib import resources

import yaml

from service.config import parse_config
from service.demo.embedding import example_origins, serve_example
from service.demo.producer import QUOTES_TOPIC, TRADES_TOPIC, DemoProducer
from service.localkafka import LocalKafka
from service.runtime import Service, serve_until_signalled

log = logging.getLogger(__name__)

DEMO_PARTITIONS = 4


def demo_config_text() -> str:
    return resources.files("service.demo").joinpath("demo.yaml").read_text()


def _ensure_topics(bootstrap: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=15).topics
    wanted = [
        NewTopic(t, DEMO_PARTITIONS, 1) for t in (TRADES_TOPIC, QUOTES_TOPIC) if t not in existing
    ]
    if wanted:
        for future in admin.create_topics(wanted).values():
            future.result(timeout=30)


async def _serve(service: Service, host: str, port: int, example_port: int) -> None:
    """The service, and the example app of another origin that embeds its tables."""
    try:
        example = serve_example(host, example_port, port)
    except OSError as exc:
        log.warning("the embedding example is not served on port %d: %s", example_port, exc)
        example = None
    else:
        shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
        print(
            f"livetables demo: an app on another origin embeds the tables: "
            f"http://{shown}:{example_port}/",
            flush=True,
        )
    try:
        await serve_until_signalled(service, host, port)
    finally:
        if example is not None:
            example.stop()


def run_demo(
    bootstrap: str | None,
    host: str | None,
    port: int | None,
    backlog_trades: int = 100_000,
    example_port: int | None = None,
) -> None:
    """Start everything, print the URLs, run until Ctrl-C, then stop all it started.

    ``example_port`` (default: the service's port + 1) serves a page of another origin
    that embeds the demo's tables (service/demo/embedding.py); the service lists that
    origin in ``server.allowed_origins`` and ``server.frame_ancestors``.
    """
    broker: LocalKafka | None = None
    workdir = None
    if bootstrap is None:
        workdir = tempfile.TemporaryDirectory(prefix="livetables-demo-")
        broker = LocalKafka(workdir.name)
        print("livetables demo: starting a local Apache Kafka broker (KRaft)...", flush=True)
        broker.start()
        bootstrap = broker.bootstrap
        print(f"livetables demo: Kafka is up at {bootstrap}", flush=True)
    producer = None
    try:
        _ensure_topics(bootstrap)
        data = yaml.safe_load(demo_config_text())
        data["kafka"]["bootstrap_servers"] = bootstrap
        host = host if host is not None else data["server"]["host"]
        port = port if port is not None else data["server"]["port"]
        example_port = example_port if example_port is not None else port + 1
        data["server"]["allowed_origins"] = example_origins(host, example_port)
        data["server"]["frame_ancestors"] = example_origins(host, example_port)
        config = parse_config(data, "<demo config>")
        producer = DemoProducer(bootstrap)
        if broker is not None:
            print(
                f"livetables demo: producing a backlog of {backlog_trades:,} trades...", flush=True
            )
            producer.backlog(backlog_trades, 2_000)
        producer.start()
        asyncio.run(_serve(Service(config), host, port, example_port))
    finally:
        if producer is not None:
            producer.stop()
        if broker is not None:
            print("livetables demo: stopping the local Kafka broker", flush=True)
            broker.stop()
        if workdir is not None:
            workdir.cleanup()
