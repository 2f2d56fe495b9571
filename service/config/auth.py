"""The ``auth:`` section of the config file.

Static tokens are named, so that logs and per-table allow-lists can refer to
them without repeating the secret. They come from the file, from the
environment (``LIVETABLES_AUTH__TOKENS__GRAFANA=...``, one variable per token,
which is how a Kubernetes Secret is usually injected), or from a YAML file of
``name: token`` lines (``tokens_file``, e.g. a mounted Secret). Validation does
not read that file: resolving the configuration does, once
(:meth:`AuthConfig.with_file_tokens`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, SecretStr, field_validator, model_validator

from service.config.base import Strict

MIN_TOKEN_LENGTH = 16
# Asymmetric algorithms only: a JWKS publishes public keys, and accepting an HMAC
# algorithm would let anyone holding a public key sign tokens with it.
ASYMMETRIC_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)


class OidcConfig(Strict):
    """JWTs from an OpenID Connect provider, checked against its published keys."""

    jwks_url: str = Field(description="where the provider publishes its signing keys (JWKS)")
    issuer: str = Field(description="the exact `iss` every token must carry")
    audience: str | list[str] = Field(description="an `aud` value every token must carry")
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"], min_length=1)
    leeway_seconds: float = Field(30.0, ge=0, le=600, description="clock skew allowed on exp/nbf")
    name_claim: str = Field("sub", description="the claim that names the user in logs")
    jwks_cache_seconds: float = Field(300.0, ge=1, description="how long fetched keys are kept")

    @field_validator("algorithms")
    @classmethod
    def _asymmetric(cls, value: list[str]) -> list[str]:
        bad = [a for a in value if a not in ASYMMETRIC_ALGORITHMS]
        if bad:
            raise ValueError(
                f"unsupported algorithm(s) {', '.join(bad)}; use {', '.join(ASYMMETRIC_ALGORITHMS)}"
            )
        return value

    @field_validator("jwks_url", "issuer")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value


class TableAccessConfig(Strict):
    """Who may read one table: any listed token name, or any listed claim value."""

    tokens: list[str] = Field(default_factory=list, description="static token names")
    claims: dict[str, list[str]] = Field(
        default_factory=dict, description="JWT claim -> accepted values (a list claim: any)"
    )


class AuthConfig(Strict):
    enabled: bool = False
    tokens: dict[str, SecretStr] = Field(default_factory=dict, description="name -> bearer token")
    tokens_file: str | None = Field(None, description="YAML file of `name: token` lines")
    oidc: OidcConfig | None = None
    table_access: dict[str, TableAccessConfig] = Field(
        default_factory=dict, description="per-table allow-lists; unlisted tables: any user"
    )

    @field_validator("tokens")
    @classmethod
    def _long_enough(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        short = sorted(n for n, t in value.items() if len(t.get_secret_value()) < MIN_TOKEN_LENGTH)
        if short:
            raise ValueError(
                f"token(s) {', '.join(short)} shorter than {MIN_TOKEN_LENGTH} characters"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AuthConfig:
        has_source = bool(self.tokens or self.tokens_file or self.oidc)
        if self.enabled and not has_source:
            raise ValueError("auth is enabled but no tokens, tokens_file or oidc is configured")
        if not self.enabled and (has_source or self.table_access):
            raise ValueError(
                "auth settings are given but auth.enabled is false; set it to true (or remove them)"
            )
        return self

    def static_tokens(self) -> dict[str, str]:
        """Every static token by name: the file's, then the config's and environment's.

        A resolved configuration has read ``tokens_file`` into ``tokens`` already.
        """
        tokens = read_tokens_file(self.tokens_file) if self.tokens_file else {}
        tokens.update({name: t.get_secret_value() for name, t in self.tokens.items()})
        return tokens

    def with_file_tokens(self) -> AuthConfig:
        """This section with the tokens of ``tokens_file`` read into ``tokens`` (which win).

        Raises ValueError naming the file when it cannot be read or holds bad tokens.
        """
        if self.tokens_file is None:
            return self
        tokens = {name: SecretStr(t) for name, t in read_tokens_file(self.tokens_file).items()}
        tokens.update(self.tokens)
        return self.model_copy(update={"tokens": tokens, "tokens_file": None})


def read_tokens_file(path: str) -> dict[str, str]:
    """The ``name: token`` lines of a tokens file; ValueError naming the file if unusable."""
    try:
        data: Any = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError:
        raise ValueError(f"{path} is not valid YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ValueError(f"{path} must be a mapping of token name to token")
    short = sorted(n for n, t in data.items() if len(t) < MIN_TOKEN_LENGTH)
    if short:
        raise ValueError(
            f"{path}: token(s) {', '.join(short)} shorter than {MIN_TOKEN_LENGTH} characters"
        )
    return dict(data)
