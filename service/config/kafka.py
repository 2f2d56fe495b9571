"""The ``kafka:`` section: the brokers, librdkafka properties, and the schema registry."""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator

from connectors.spec import RegistrySettings
from service.config.base import Strict


class RegistryAuth(Strict):
    user: str
    password: SecretStr


class RegistryTls(Strict):
    ca: str | None = Field(None, description="CA bundle (PEM) to verify the registry with")
    cert: str | None = Field(None, description="client certificate (PEM)")
    key: str | None = Field(None, description="client key (PEM)")

    @model_validator(mode="after")
    def _pair(self) -> RegistryTls:
        if (self.cert is None) != (self.key is None):
            raise ValueError("give both cert and key, or neither")
        return self


class SchemaRegistryConfig(Strict):
    """A Confluent-compatible schema registry (Confluent, Apicurio's ccompat API, ...)."""

    url: str
    basic_auth: RegistryAuth | None = None
    tls: RegistryTls | None = None

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, not {value!r}")
        return value.rstrip("/")

    def settings(self) -> RegistrySettings:
        """The registry as the decoders' client takes it."""
        auth, tls = self.basic_auth, self.tls
        return RegistrySettings(
            url=self.url,
            user=auth.user if auth is not None else None,
            password=auth.password.get_secret_value() if auth is not None else None,
            ca=tls.ca if tls is not None else None,
            cert=tls.cert if tls is not None else None,
            key=tls.key if tls is not None else None,
        )


class KafkaConfig(Strict):
    bootstrap_servers: str = "localhost:9092"
    client: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="librdkafka properties passed verbatim (security.protocol, sasl.*, ssl.*)",
    )
    schema_registry: SchemaRegistryConfig | None = None

    @field_validator("client")
    @classmethod
    def _no_managed_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        managed = {"bootstrap.servers", "group.id", "enable.auto.commit"}
        clash = sorted(managed & set(value))
        if clash:
            raise ValueError(
                f"{', '.join(clash)} cannot be set here: livetables manages "
                "them (use kafka.bootstrap_servers for the brokers)"
            )
        return value
