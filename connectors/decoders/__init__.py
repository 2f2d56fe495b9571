"""Value decoders, one module per format, looked up by the config's ``format:``."""

from __future__ import annotations

import pyarrow as pa

from connectors.base import Decoder
from connectors.decoders.arrow import ArrowDecoder
from connectors.decoders.avro import AvroDecoder
from connectors.decoders.csv import CsvDecoder
from connectors.decoders.json import JsonDecoder
from connectors.decoders.protobuf import ProtobufDecoder
from connectors.spec import DecoderSpec

DECODERS: dict[str, type[Decoder]] = {
    d.name: d for d in (JsonDecoder, AvroDecoder, ProtobufDecoder, CsvDecoder, ArrowDecoder)
}


def make_decoder(spec: DecoderSpec, arrow_schema: pa.Schema) -> Decoder:
    """The decoder for a format (the config has already checked it exists)."""
    return DECODERS[spec.format](spec, arrow_schema)
