"""Derived tables without a broker: config errors with key paths, the plan, the diff."""

from __future__ import annotations

import perspective
import pyarrow as pa
import pytest

from connectors.schema import arrow_schema
from service.config import ConfigError, parse_config, resolve_config
from service.config.derived import (
    KEY_COLUMN,
    NUMBER_AGGREGATES,
    TEXT_AGGREGATES,
    DerivedViewConfig,
    plan_view,
)
from service.derived.result import GroupDiff, group_keys, result_rows

TRADES = {
    "id": "string",
    "sym": "string",
    "side": "string",
    "px": "float",
    "qty": "integer",
    "ts": "datetime",
}


def _config(**tables) -> dict:
    return {"tables": {"trades": {"topic": "t", "schema": TRADES}, **tables}}


def _errors(config: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        resolve_config(parse_config(config, "f.yaml"))
    return caught.value.errors


@pytest.mark.parametrize(
    ("table", "line"),
    [
        (
            {"from": "nope", "view": {"group_by": ["sym"], "columns": ["qty"]}},
            "tables.d.from: unknown table 'nope'",
        ),
        (
            {"from": "trades", "view": {"group_by": ["sym"], "columns": ["qtx"]}},
            "tables.d.view.columns.0: unknown column 'qtx'; columns of 'trades' are:",
        ),
        (
            {"from": "trades", "view": {"group_by": ["sim"], "columns": ["qty"]}},
            "tables.d.view.group_by.0: unknown column 'sim'",
        ),
        (
            {
                "from": "trades",
                "view": {"group_by": ["sym"], "columns": ["qty"], "aggregates": {"qty": "summ"}},
            },
            "tables.d.view.aggregates.qty: unknown aggregate 'summ'",
        ),
        (
            {
                "from": "trades",
                "view": {"group_by": ["sym"], "columns": ["id"], "aggregates": {"id": "avg"}},
            },
            "tables.d.view.aggregates.id: 'avg' does not apply to a string column",
        ),
        (
            {
                "from": "trades",
                "view": {"group_by": ["sym"], "columns": ["qty"], "aggregates": {"px": "sum"}},
            },
            "tables.d.view.aggregates.px: not one of the view's columns",
        ),
        (
            {
                "from": "trades",
                "view": {"group_by": ["sym"], "columns": ["qty"], "filter": [["side", "~", "b"]]},
            },
            "tables.d.view.filter.0: unknown operator '~'",
        ),
        (
            {
                "from": "trades",
                "view": {"group_by": ["sym"], "columns": ["qty"], "filter": [["px", ">", "x"]]},
            },
            "tables.d.view.filter.0: 'x' is not a float value",
        ),
        (
            {"from": "trades", "view": {"group_by": ["sym"], "columns": ["sym"]}},
            "tables.d.view.columns.0: 'sym' is a group_by column",
        ),
        (
            {
                "from": "trades",
                "view": {"group_by": ["sym"], "columns": ["x"], "expressions": {"x": '"qty" +* 2'}},
            },
            "tables.d.view.expressions.x:",
        ),
        (
            {"from": "trades", "topic": "t", "view": {"group_by": ["sym"], "columns": ["qty"]}},
            "tables.d: a derived table (from: trades) takes its rows from its source: remove topic",
        ),
        ({"from": "trades"}, "tables.d: a derived table (from: trades) needs a view:"),
        (
            {
                "topic": "t",
                "schema": {"a": "string"},
                "view": {"group_by": ["a"], "columns": ["a"]},
            },
            "tables.d: view and refresh belong to a derived table",
        ),
        (
            {"topic": "t", "schema": {"a": "string"}, "retention": "15"},
            "tables.d.retention: expected a duration like 250ms, 30s, 15m, 2h or 1d",
        ),
        (
            {"topic": "t", "schema": {"a": "string"}, "retention": "1m", "retention_column": "a"},
            "tables.d: retention_column 'a' is a string column; it must be a datetime",
        ),
        (
            {"topic": "t", "schema": {"a": "datetime"}, "retention_column": "a"},
            "tables.d: retention_column needs retention",
        ),
        (
            {"topic": "t", "schema": {"__row__": "float"}},
            "tables.d: column '__row__' is a name livetables keeps for itself",
        ),
        (
            {"topic": "t", "schema": {"a": "string"}, "retention": "1m", "editable": True},
            "tables.d: retention and editable cannot be combined",
        ),
    ],
)
def test_mistakes_are_errors_with_their_key_path(table, line):
    errors = _errors(_config(d=table))
    assert any(e.startswith(line) for e in errors), errors


def test_a_cycle_of_derived_tables_is_named():
    view = {"group_by": ["sym"], "columns": ["qty"]}
    errors = _errors(_config(a={"from": "b", "view": view}, b={"from": "a", "view": view}))
    assert "tables.a.from: derived tables form a cycle: a -> b -> a" in errors


def test_a_derived_table_resolves_to_its_columns_and_key():
    view = {
        "group_by": ["sym", "side"],
        "columns": ["qty", "px", "id"],
        "aggregates": {"px": "avg", "id": "distinct count"},
    }
    config, _ = resolve_config(
        parse_config(
            _config(
                d={"from": "trades", "view": view},
                dd={"from": "d", "view": {"group_by": ["sym"], "columns": ["qty"]}},
            )
        )
    )
    d = config.tables["d"]
    # Integer sums are floats (a Perspective integer column has 32 bits).
    assert d.schema_ == {
        "sym": "string",
        "side": "string",
        "qty": "float",
        "px": "float",
        "id": "integer",
    }
    assert d.engine_index == KEY_COLUMN and d.hidden_columns == [KEY_COLUMN]
    assert config.tables["dd"].schema_ == {"sym": "string", "qty": "float"}
    assert config.tables["dd"].engine_index == "sym" and config.tables["dd"].hidden_columns == []


def test_an_average_is_a_sum_over_a_count_of_values():
    plan = plan_view(
        "trades",
        DerivedViewConfig(
            group_by=["sym"], columns=["px", "qty"], aggregates={"px": "avg", "qty": "mean"}
        ),
        TRADES,
    )
    assert plan.main["aggregates"] == {"px": "sum", "qty": "sum"}
    assert plan.main["group_rollup_mode"] == "flat"
    assert plan.counts["px"]["filter"] == [["px", "is not null", None]]
    assert plan.recomputing == ()


@pytest.mark.parametrize("kind", ["string", "integer", "float", "boolean", "date", "datetime"])
def test_perspective_takes_every_aggregate_listed_for_a_type(kind):
    allowed = NUMBER_AGGREGATES if kind in ("integer", "float") else TEXT_AGGREGATES
    client = perspective.Server().new_local_client()
    table = client.table({"g": "string", "c": kind}, name="t")
    for aggregate in sorted(allowed):
        view = table.view(group_by=["g"], columns=["c"], aggregates={"c": aggregate})
        view.delete()
    table.delete()


def test_group_keys_never_confuse_two_groups():
    table = pa.table(
        {
            "a": ["x|1:y", "x", None, "~", "", None],
            "b": ["z", "1:y|z", "q", "q", None, None],
        }
    )
    keys = group_keys(table, ["a", "b"]).to_pylist()
    assert len(set(keys)) == len(keys)


def _plan():
    view = DerivedViewConfig(group_by=["sym"], columns=["qty", "px"], aggregates={"px": "avg"})
    return plan_view("trades", view, TRADES)


def test_a_refresh_sends_only_new_and_changed_groups_and_removes_vanished_ones():
    plan = _plan()
    schema = arrow_schema({"sym": "string", "qty": "float", "px": "float"})
    diff = GroupDiff(plan)
    first = pa.table({"sym": ["A", "B", None], "qty": [1.0, 2.0, 3.0], "px": [1.0, None, 2.0]})
    rows, vanished, state = diff.changes(first.cast(schema))
    assert rows.num_rows == 3 and vanished is None
    diff.accept(state)
    second = pa.table({"sym": ["A", None, "C"], "qty": [1.0, 4.0, 5.0], "px": [1.0, 2.0, None]})
    rows, vanished, state = diff.changes(second.cast(schema))
    assert set(rows.column("sym").to_pylist()) == {None, "C"}  # A is unchanged
    assert vanished.to_pylist() == ["B"]
    diff.accept(state)
    rows, vanished, _ = diff.changes(second.cast(schema))
    assert rows is None and vanished is None


def test_result_rows_divide_sums_by_counts_of_values():
    plan = _plan()
    main = pa.table(
        {
            "sym (Group by 1)": pa.array(["A", "B"]).dictionary_encode(),
            "qty": pa.array([10, 4], pa.int64()),
            "px": [6.0, 0.0],
        }
    )
    counts = {"px": pa.table({"sym (Group by 1)": ["A"], "px": pa.array([3], pa.int64())})}
    schema = arrow_schema({"sym": "string", "qty": "float", "px": "float"})
    rows = result_rows(plan, main, counts, schema)
    assert rows.to_pydict() == {"sym": ["A", "B"], "qty": [10.0, 4.0], "px": [2.0, None]}
