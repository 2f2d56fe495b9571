"""Value decoders, one module per format, looked up by the config's ``format:``."""

from __future__ import annotations

import pyarrow as pa

from connectors.base import Decoder
from connectors.decoders.json import JsonDecoder
from service.config import TableConfig

DECODERS: dict[str, type[Decoder]] = {JsonDecoder.name: JsonDecoder}


def make_decoder(table: TableConfig, arrow_schema: pa.Schema) -> Decoder:
    """The decoder for a table's format (the config has already checked it exists)."""
    return DECODERS[table.format](table, arrow_schema)
