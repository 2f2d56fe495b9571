"""The ``dashboards:`` section, checked against the tables it shows.

A panel's ``viewer`` is a perspective-viewer configuration. Mistakes in it
(a plugin name that does not exist, a column the table does not have) would
otherwise surface only as a blank panel in someone's browser, so they are
errors when the config is loaded (or, for a table whose columns are derived
from a record schema, when it is resolved), with the key path of the mistake.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.config.base import Strict

#: plugins registered by @perspective-dev/viewer-datagrid and viewer-d3fc
KNOWN_PLUGINS = (
    "Datagrid",
    "X Bar",
    "Y Bar",
    "Y Line",
    "X/Y Line",
    "Y Area",
    "Y Scatter",
    "X/Y Scatter",
    "Treemap",
    "Sunburst",
    "Heatmap",
    "OHLC",
    "Candlestick",
)

#: perspective-viewer configuration keys a panel may set
VIEWER_KEYS = {
    "plugin",
    "columns",
    "group_by",
    "split_by",
    "sort",
    "filter",
    "expressions",
    "aggregates",
    "plugin_config",
    "columns_config",
    "group_rollup_mode",
    "settings",
    "theme",
    "title",
    "filter_op",
}

SORT_DIRECTIONS = {"asc", "desc", "col asc", "col desc", "asc abs", "desc abs", "none"}


def _expression_names(expressions: Any) -> set[str]:
    if isinstance(expressions, Mapping):
        return {str(k) for k in expressions}
    if isinstance(expressions, list):
        # The older list form: each expression is named by its own text, or "//name" first line.
        names = set()
        for expr in expressions:
            text = str(expr)
            first = text.splitlines()[0] if text else ""
            names.add(first[2:].strip() if first.startswith("//") else text)
        return names
    return set()


def viewer_errors(viewer: Mapping[str, Any], columns: Iterable[str], path: str) -> list[str]:
    """Every problem of one panel's viewer config, as ``key.path: reason`` lines."""
    errors = []
    known = set(columns)
    for key in viewer:
        if key not in VIEWER_KEYS:
            errors.append(f"{path}.{key}: unknown perspective-viewer setting")
    plugin = viewer.get("plugin", "Datagrid")
    if plugin not in KNOWN_PLUGINS:
        errors.append(
            f"{path}.plugin: unknown plugin {plugin!r}; known: {', '.join(KNOWN_PLUGINS)}"
        )
    names = known | _expression_names(viewer.get("expressions"))

    def check(key: str, value: Any) -> None:
        if value is not None and value not in names:
            errors.append(
                f"{path}.{key}: unknown column {value!r}; columns are: {', '.join(sorted(known))}"
            )

    for key in ("columns", "group_by", "split_by"):
        value = viewer.get(key)
        if value is None:
            continue
        if not isinstance(value, list):
            errors.append(f"{path}.{key}: expected a list of column names")
            continue
        for i, column in enumerate(value):
            check(f"{key}.{i}", column)
    for i, item in enumerate(viewer.get("sort") or []):
        if not isinstance(item, list) or len(item) != 2:
            errors.append(f"{path}.sort.{i}: expected [column, asc|desc]")
            continue
        check(f"sort.{i}", item[0])
        if item[1] not in SORT_DIRECTIONS:
            errors.append(f"{path}.sort.{i}: unknown direction {item[1]!r}")
    for i, item in enumerate(viewer.get("filter") or []):
        if not isinstance(item, list) or len(item) < 2:
            errors.append(f"{path}.filter.{i}: expected [column, operator, value]")
            continue
        check(f"filter.{i}", item[0])
    aggregates = viewer.get("aggregates") or {}
    if not isinstance(aggregates, Mapping):
        errors.append(f"{path}.aggregates: expected a mapping of column to aggregate")
    else:
        for column in aggregates:
            check(f"aggregates.{column}", column)
    return errors


class ViewerConfig(BaseModel):
    """A perspective-viewer configuration: open-ended, checked by :func:`viewer_errors`."""

    model_config = ConfigDict(extra="allow", frozen=True)
    plugin: str = "Datagrid"


class PanelConfig(Strict):
    table: str
    title: str | None = None
    viewer: ViewerConfig = Field(default_factory=ViewerConfig)

    def viewer_errors(self, columns: Iterable[str], path: str) -> list[str]:
        """The problems of this panel's viewer against the columns of its table."""
        return viewer_errors(self.viewer.model_dump(exclude_unset=False), columns, f"{path}.viewer")


class DashboardConfig(Strict):
    title: str | None = None
    panels: list[PanelConfig] = Field(min_length=1)
