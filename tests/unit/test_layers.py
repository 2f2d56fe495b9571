"""Imports run one way, service -> connectors: the check `make lint` runs, and that it bites."""

from __future__ import annotations

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
check = runpy.run_path(str(ROOT / "scripts" / "check_layers.py"))


def test_nothing_under_connectors_imports_service():
    assert check["violations"](ROOT) == []


def test_an_import_of_service_under_connectors_is_named_even_inside_a_function(tmp_path):
    module = tmp_path / "connectors" / "decoders" / "late.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        "def f():\n    from service.config import TableConfig\n    return TableConfig\n"
    )
    (tmp_path / "connectors" / "fine.py").write_text("import services_elsewhere\n")
    assert check["violations"](tmp_path) == [
        "connectors/decoders/late.py:2: imports service.config"
    ]
