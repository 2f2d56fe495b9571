"""perspective 4.3.0: many pivoted views on one table must not hang its updates."""

from __future__ import annotations

import threading

import pyarrow as pa

from service.config import parse_config
from service.tables import TableHost


def test_updates_of_a_table_with_many_grouped_views_finish():
    # With the engine's default pool (one thread per core, two here), two grouped views on
    # one table hung about half of the updates for good; eight hung every one.
    config = parse_config(
        {"tables": {"t": {"topic": "x", "schema": {"sym": "string", "px": "float"}}}}
    )
    host = TableHost(config)
    table = host.tables["t"]
    aggregates = ["sum", "count", "last", "high", "low", "avg", "min", "max"]
    views = [
        table.view(group_by=["sym"], columns=["px"], aggregates={"px": aggregate})
        for aggregate in aggregates
    ]
    rows = pa.table({"sym": ["A", "B", "C"], "px": [1.0, 2.0, 3.0]})

    def update() -> None:
        for _ in range(30):
            table.update(rows)

    thread = threading.Thread(target=update, daemon=True)  # a hung engine call never returns
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "a table update hung with 8 grouped views on the table"
    assert table.size() == 90
    for view in views:
        view.delete()
    host.close()
