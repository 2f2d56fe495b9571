"""What every section of the configuration shares: one strict base and errors with key paths.

A file that does not validate raises :class:`ConfigError` listing every problem as
``key.path: reason`` in the user's own key names, so a bad file never starts half a
service.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class Strict(BaseModel):
    """Base of every section: frozen, and unknown keys are typos, and typos are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigError(Exception):
    """A configuration that cannot be used; ``errors`` holds one line per problem."""

    def __init__(self, source: str, errors: list[str]):
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: invalid configuration\n" + "\n".join(f"  {e}" for e in errors))


def _key_path(loc: tuple[Any, ...]) -> str:
    parts = ("schema" if p == "schema_" else str(p) for p in loc)
    return ".".join(parts) or "(top level)"


def format_validation_error(error: ValidationError) -> list[str]:
    """One line per problem, ``key.path: reason``, in the user's own key names."""
    lines = []
    for err in error.errors():
        loc = tuple(p for p in err["loc"] if not str(p).startswith("function-"))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling)"
        if err["type"] == "missing":
            msg = "required key is missing"
        if not loc and ": " in msg:
            # Whole-file checks already name their key paths, one per line.
            lines.extend(msg.splitlines())
            continue
        lines.append(f"{_key_path(loc)}: {msg}")
    return lines
