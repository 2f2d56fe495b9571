"""Imports run one way: ``service`` -> ``connectors``, never back.

Walks every module under ``connectors/`` (imports inside functions and
``TYPE_CHECKING`` blocks included) and exits 1 naming each import of
``service``. Run by ``make lint``.

    python scripts/check_layers.py [ROOT]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

LOWER = "connectors"
FORBIDDEN = ("service",)


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in a module."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def violations(root: Path) -> list[str]:
    out = []
    for path in sorted((root / LOWER).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, module in imported_modules(tree):
            if module.split(".")[0] in FORBIDDEN:
                out.append(f"{path.relative_to(root)}:{line}: imports {module}")
    return out


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1]
    found = violations(root)
    for line in found:
        print(f"{line} ({LOWER}/ must not import {', '.join(FORBIDDEN)}: imports run one way)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
