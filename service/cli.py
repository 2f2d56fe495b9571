"""The ``livetables`` command: serve, check, demo."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import logging
import os
import signal
import sys

from service import __version__
from service.config import ConfigError, load, load_config, resolve_config, summary

EXIT_INVALID_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livetables",
        description="Kafka topics as live Perspective tables in the browser.",
    )
    parser.add_argument("--version", action="version", version=f"livetables {__version__}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("LIVETABLES_LOG_LEVEL", "INFO"),
        help="DEBUG, INFO, WARNING or ERROR (default INFO, or $LIVETABLES_LOG_LEVEL)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve the tables of a config file")
    serve.add_argument("--config", "-c", required=True, help="the livetables YAML file")
    serve.add_argument("--host", help="address to listen on (overrides server.host)")
    serve.add_argument("--port", type=int, help="port to listen on (overrides server.port)")

    check = commands.add_parser("check", help="validate a config file and print a summary")
    check.add_argument("--config", "-c", required=True, help="the livetables YAML file")

    demo = commands.add_parser(
        "demo", help="run a local Kafka, a live market-data producer and the service"
    )
    demo.add_argument("--bootstrap", help="use this existing Kafka (HOST:PORT) instead")
    demo.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    demo.add_argument("--port", type=int, help="port to listen on (default 8080)")
    demo.add_argument(
        "--embed-port",
        type=int,
        help="port of the example app that embeds the tables from another origin "
        "(default: the port after --port)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # `kill -USR1 <pid>` prints every thread's stack: the first thing to ask of a stuck process.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "check":
        return _check(args.config)
    if args.command == "serve":
        return _serve(args.config, args.host, args.port)
    if args.command == "demo":
        from service.demo import run_demo

        run_demo(args.bootstrap, args.host, args.port, example_port=args.embed_port)
        return 0
    return 1


def _check(path: str) -> int:
    try:
        # Columns derived from record schemas: shown when the registry can be reached.
        config, notes = resolve_config(load_config(path), reachable_only=True)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID_CONFIG
    print(f"{path}: OK")
    print(summary(config))
    for note in notes:
        print(f"note: {note}")
    return 0


def _serve(path: str, host: str | None, port: int | None) -> int:
    from service.runtime import Service, serve_until_signalled

    try:
        config = load(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID_CONFIG
    asyncio.run(serve_until_signalled(Service(config), host, port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
