"""Which configuration a snapshot's rows were made with.

A snapshot is loaded only into a table configured exactly as the one that wrote
it: its topics, format and options, columns (in order) and where they come from,
index, limit, start policy, size limit on records. A change to any of them may
change which records became which rows, so the table is replayed instead. Two
keys do not change a table's rows and are left out: ``dead_letter_topic`` and
``editable``. The configuration is the resolved one, so columns derived from a
schema registry count too.
"""

from __future__ import annotations

import hashlib
import json

from service.config import TableConfig
from service.snapshots.files import FORMAT_VERSION

IGNORED_KEYS = frozenset({"dead_letter_topic", "editable"})


def fingerprint(table: TableConfig) -> str:
    """A hex digest of everything in the table's configuration that shapes its rows."""
    described = table.model_dump(mode="json", by_alias=True, exclude=set(IGNORED_KEYS))
    text = json.dumps({"format": FORMAT_VERSION, "table": described}, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
