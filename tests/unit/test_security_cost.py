"""Pricing views and serialisations before the engine runs them; server-side view names.

A real TableHost (perspective engine, distinct-value tracking fed through
``apply`` like the applier does) and a stock client behind the guard.
"""

from __future__ import annotations

import perspective
import pyarrow as pa
import pytest

from connectors.base import DecodedBatch
from service.cardinality import TRACKED_VALUES, DistinctValues
from service.config import parse_config
from service.security import wire
from service.security.cost import CostLimits
from service.security.guard import GuardPolicy, SessionGuard
from service.security.protocol import KIND_NUMBERS
from service.tables import TableHost
from tests.unit.guarded_client import GuardedClient

ROWS = 20_000
SCHEMA = {"id": "string", "sym": "string", "px": "float", "qty": "integer"}


def _host() -> TableHost:
    config = parse_config(
        {
            "tables": {
                "ticks": {"topic": "t", "schema": SCHEMA, "index": "id"},
                "scratch": {"topic": "s", "schema": SCHEMA, "editable": True},
            }
        }
    )
    host = TableHost(config)
    rows = pa.table(
        {
            "id": [f"k{i}" for i in range(ROWS)],
            "sym": [f"S{i % 13}" for i in range(ROWS)],
            "px": [i / 7 for i in range(ROWS)],
            "qty": [i % 100 for i in range(ROWS)],
        }
    )
    for start in range(0, ROWS, 5000):  # as the applier does: batch after batch
        host.apply("ticks", DecodedBatch(rows=rows.slice(start, 5000)))
    return host


@pytest.fixture(scope="module")
def host():
    host = _host()
    yield host
    host.close()


class Session(GuardedClient):
    """One guarded session on the host's server, driven by a stock client."""

    def __init__(self, host: TableHost, **limits) -> None:
        policy = GuardPolicy(
            frozenset(host.tables), frozenset({"scratch"}), costs=CostLimits(**limits)
        )
        super().__init__(host.server, SessionGuard(policy, facts=host))

    def run(self, scenario, timeout: float = 60) -> None:
        try:
            super().run(scenario, timeout)
        finally:
            self.session.close()
            self.guard.close()


async def _refused(attempt) -> str:
    with pytest.raises(perspective.PerspectiveError) as caught:
        await attempt
    return str(caught.value)


def test_distinct_values_are_an_upper_bound_and_unique_columns_saturate(host):
    assert host.distinct_bound("ticks", "sym") == 13
    assert host.distinct_bound("ticks", "qty") == 100
    assert host.distinct_bound("ticks", "id") is None  # 20k values: counted as unique
    assert host.distinct_bound("scratch", "sym") is None  # clients write it: unknown
    values = DistinctValues(["a", "b"])
    values.observe(pa.table({"a": ["x", "y", None], "b": [1, 2, 3]}))
    many = TRACKED_VALUES
    values.observe(pa.table({"a": ["y", "z"] * (many // 2), "b": list(range(many))}))
    assert values.bound("a") == 4  # x, y, z and null
    assert values.bound("b") == TRACKED_VALUES
    values.observe(pa.table({"a": ["x"], "b": [TRACKED_VALUES + 1]}))
    assert values.bound("b") is None and values.bound("a") == 4
    assert values.bound("missing") is None


def test_expressions_are_limited_in_number_and_length(host):
    s = Session(host, max_expressions_per_view=3, max_expression_length=40)
    errors: list[str] = []

    async def scenario(client):
        ticks = await client.open_table("ticks")
        four = {f"e{i}": f'"px" * {i}' for i in range(4)}
        errors.append(await _refused(ticks.view(expressions=four)))
        errors.append(await _refused(ticks.validate_expressions(four)))
        long = {"e": '"px" + ' + " + ".join(["1"] * 30)}
        errors.append(await _refused(ticks.view(expressions=long)))
        view = await ticks.view(expressions={f"e{i}": f'"px" * {i}' for i in range(3)})
        assert await view.num_columns() == 7
        await view.delete()

    s.run(scenario)
    assert s.refusals() == ["too_many_expressions", "too_many_expressions", "expression_too_long"]
    assert "server.max_expressions_per_view (3)" in errors[0]
    assert "server.max_expression_length (40)" in errors[2]


def test_pivots_are_priced_by_the_distinct_values_of_their_columns(host):
    s = Session(host, max_view_cells=100_000, max_pivot_columns=2)
    errors: list[str] = []

    async def scenario(client):
        ticks = await client.open_table("ticks")
        # Every view: 20k cells (the table's rows). 13 symbols x 100 quantities, split by
        # 13 symbols, 1 column: (1300 + 1) x (13 + 1) x (1 + 1) = 36k more, whatever the rows.
        grouped = await ticks.view(group_by=["sym", "qty"], split_by=["sym"], columns=["px"])
        assert await grouped.num_rows() > 13
        await grouped.delete()
        # A unique column: one row per table row, 20k x (4 columns + 1) = 100k more.
        errors.append(await _refused(ticks.view(group_by=["id"])))
        # A split on a flat view: every row x 13 symbols x 4 columns.
        errors.append(await _refused(ticks.view(split_by=["sym"])))
        # An expression's cardinality is unknown: counted as unique.
        errors.append(
            await _refused(ticks.view(group_by=["e"], expressions={"e": 'concat("sym", "id")'}))
        )
        errors.append(await _refused(ticks.view(group_by=["sym", "qty", "px"])))
        # Fewer columns make a smaller view.
        narrow = await ticks.view(group_by=["id"], columns=["px"])
        await narrow.delete()

    s.run(scenario)
    assert s.refusals() == ["view_too_large"] * 3 + ["too_many_pivot_columns"]
    assert "server.max_view_cells (100,000)" in errors[0] and "group_by ['id']" in errors[0]
    assert "split_by ['sym']" in errors[1]
    assert "server.max_pivot_columns (2)" in errors[3]


def test_string_expressions_cost_more_than_numeric_ones(host):
    # 20k rows: a view costs 20k, a numeric expression 20k more, a string one 200k more.
    s = Session(host, max_view_cells=100_000)

    async def scenario(client):
        ticks = await client.open_table("ticks")
        numeric = await ticks.view(expressions={"a": '"px" * 2', "b": '"qty" + 1'})
        await numeric.delete()
        await _refused(ticks.view(expressions={"s": "concat(\"sym\", 'x')"}))

    s.run(scenario)
    assert s.refusals() == ["view_too_large"]


def test_a_session_s_views_share_one_budget(host):
    s = Session(host, max_view_cells=100_000, max_session_cells=50_000)
    errors: list[str] = []

    async def scenario(client):
        ticks = await client.open_table("ticks")
        first = await ticks.view()  # 20k cells
        second = await ticks.view()  # 40k
        errors.append(await _refused(ticks.view()))  # 60k > 50k
        await first.delete()
        third = await ticks.view()
        await second.delete()
        await third.delete()

    s.run(scenario)
    assert s.refusals() == ["session_too_large"]
    assert "server.max_session_cells (50,000)" in errors[0]


def test_serialisations_are_limited_in_cells_with_the_view_s_real_size(host):
    s = Session(host, max_serialized_cells=10_000)
    errors: list[str] = []

    async def scenario(client):
        ticks = await client.open_table("ticks")
        view = await ticks.view()
        errors.append(await _refused(view.to_arrow()))  # 20k rows x 4 columns
        errors.append(await _refused(view.to_columns()))
        errors.append(await _refused(view.to_csv(start_row=0, end_row=5000)))
        page = await view.to_columns(start_row=100, end_row=2600)
        assert len(page["id"]) == 2500  # 2500 x 4: exactly the limit
        # Asked beyond the end: priced by what the view really holds.
        grouped = await ticks.view(group_by=["sym"], columns=["px"])
        assert len((await grouped.to_columns(end_row=10**6))["px"]) == 14
        await grouped.delete()
        await view.delete()

    s.run(scenario)
    assert s.refusals() == ["serialization_too_large"] * 3
    assert "view_to_arrow of 20,000 rows x 4 columns" in errors[0]
    assert "server.max_serialized_cells (10,000)" in errors[0]


def test_views_carry_server_names_in_the_engine_and_client_names_outside(host):
    s = Session(host)
    names: dict[str, str] = {}

    async def scenario(client):
        ticks = await client.open_table("ticks")
        view = await ticks.view(group_by=["sym"])  # the client checks the name it gets back
        ((client_id, record),) = s.guard.views.items()
        names.update(client=client_id, server=record.server_id)
        await view.on_update(lambda *_: None)
        await view.to_arrow()
        await view.dimensions()
        await view.delete()

    s.run(scenario)
    assert names["server"].startswith("#view-") and names["client"] != names["server"]
    assert s.refusals() == []
    sent = b"".join(s.received)
    assert names["client"].encode() in sent and names["server"].encode() not in sent


def test_a_view_config_given_twice_is_priced_as_the_engine_merges_it(host):
    # Protobuf merges a message field that repeats: the engine reads both configs as one,
    # a flat view (20k cells) plus a split by 13 symbols. Pricing the first alone would
    # pass a view of about 1.4 M cells.
    s = Session(host, max_view_cells=100_000)
    flat, split = b"", wire.string_field(2, "sym")
    body = wire.string_field(1, "v1") + wire.bytes_field(2, flat) + wire.bytes_field(2, split)
    frame = (
        wire.varint_field(1, 7)
        + wire.string_field(2, "ticks")
        + wire.bytes_field(KIND_NUMBERS["table_make_view"], body)
    )
    verdict = s.guard.check(frame)
    assert verdict.reason == "view_too_large", verdict
    assert "split_by ['sym']" in (verdict.message or "")
    assert s.guard.views == {}
