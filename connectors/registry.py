"""The schema registry: Confluent wire format framing and a cached schema lookup.

A record in the Confluent wire format is a zero magic byte, a 4-byte big-endian
schema id, then the payload (for protobuf, message-index varints come first).
Any registry with the Confluent REST API serves the schemas: Confluent Schema
Registry, Apicurio Registry's ``/apis/ccompat/v7``, Redpanda, Karapace.

Schemas are fetched once per id and kept: an id names immutable content. An id
the registry does not know is remembered for a minute, so a topic full of bad
ids does not hammer the registry; its records become ``unknown_schema`` errors.
A registry that does not answer is retried a few times before the records that
need it are counted as ``registry_unavailable``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from connectors.spec import RegistrySettings

log = logging.getLogger(__name__)

UNKNOWN_ID_TTL_S = 60.0
RETRIES = (0.2, 0.5, 1.0)


class UnknownSchema(LookupError):
    """The registry answered that it has no such schema or subject."""


class RegistryUnavailable(ConnectionError):
    """The registry could not be reached or failed."""


@dataclass(frozen=True)
class RegisteredSchema:
    schema_id: int
    schema_type: str  # AVRO | PROTOBUF | JSON
    text: str
    references: dict[str, str]  # referenced name -> schema text (transitively)


def client_config(settings: RegistrySettings) -> dict[str, str | int]:
    """The schema-registry client's configuration."""
    # Retries are ours (RETRIES), so a registry that is down costs seconds, not minutes.
    out: dict[str, str | int] = {"url": settings.url, "max.retries": 0, "timeout": 10}
    if settings.user is not None:
        out["basic.auth.user.info"] = f"{settings.user}:{settings.password or ''}"
    for key, value in (
        ("ssl.ca.location", settings.ca),
        ("ssl.certificate.location", settings.cert),
        ("ssl.key.location", settings.key),
    ):
        if value:
            out[key] = value
    return out


class Registry:
    """Schema lookups against one registry, cached; safe to share between threads."""

    def __init__(self, config: RegistrySettings):
        self.config = config
        self._client = SchemaRegistryClient(client_config(config))
        self._by_id: dict[int, RegisteredSchema] = {}
        self._unknown: dict[int, float] = {}
        self._lock = threading.Lock()

    def schema(self, schema_id: int) -> RegisteredSchema:
        found = self._by_id.get(schema_id)
        if found is not None:
            return found
        missed = self._unknown.get(schema_id)
        if missed is not None and time.monotonic() - missed < UNKNOWN_ID_TTL_S:
            raise UnknownSchema(f"schema id {schema_id} is not in the registry")
        try:
            schema = self._call(lambda: self._client.get_schema(schema_id))
        except UnknownSchema:
            self._unknown[schema_id] = time.monotonic()
            raise UnknownSchema(f"schema id {schema_id} is not in the registry") from None
        found = RegisteredSchema(
            schema_id,
            schema.schema_type or "AVRO",
            schema.schema_str,
            self._references(schema.references or []),
        )
        with self._lock:
            self._by_id[schema_id] = found
        return found

    def latest(self, subject: str) -> RegisteredSchema:
        """The newest version under ``subject`` (uncached: asked at start-up only)."""
        try:
            registered = self._call(lambda: self._client.get_latest_version(subject))
        except UnknownSchema:
            raise UnknownSchema(f"subject {subject!r} is not in the registry") from None
        return self.schema(registered.schema_id)

    def _references(self, references: list) -> dict[str, str]:
        out: dict[str, str] = {}
        for ref in references:
            version = self._call(lambda r=ref: self._client.get_version(r.subject, r.version))
            out[ref.name] = version.schema.schema_str
            out.update(self._references(version.schema.references or []))
        return out

    def _call(self, request):
        for attempt, pause in enumerate((*RETRIES, None)):
            try:
                return request()
            except SchemaRegistryError as exc:
                if exc.http_status_code == 404:
                    raise UnknownSchema(str(exc)) from None
                if exc.http_status_code is not None and exc.http_status_code < 500:
                    raise RegistryUnavailable(f"{self.config.url}: {exc}") from None
                error: Exception = exc
            except Exception as exc:  # transport errors of the HTTP client
                error = exc
            if pause is None:
                raise RegistryUnavailable(f"{self.config.url}: {error}") from None
            log.debug("schema registry attempt %d failed: %s", attempt + 1, error)
            time.sleep(pause)
        raise AssertionError("unreachable")


_registries: dict[RegistrySettings, Registry] = {}
_registries_lock = threading.Lock()


def registry_for(config: RegistrySettings) -> Registry:
    """One shared, caching client per registry configuration."""
    with _registries_lock:
        registry = _registries.get(config)
        if registry is None:
            registry = _registries[config] = Registry(config)
        return registry


def wire_ids(values: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Schema ids of Confluent-framed values, and a mask of the values that are framed."""
    n = len(values)
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
    framed = lengths >= 5
    prefixes = b"".join(v[:5] if len(v) >= 5 else b"\xff\x00\x00\x00\x00" for v in values)
    head = np.frombuffer(prefixes, dtype=np.uint8).reshape(n, 5)
    framed &= head[:, 0] == 0
    ids = (
        (head[:, 1].astype(np.int64) << 24)
        | (head[:, 2].astype(np.int64) << 16)
        | (head[:, 3].astype(np.int64) << 8)
        | head[:, 4].astype(np.int64)
    )
    return ids, framed
