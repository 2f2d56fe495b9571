"""Ingest: from each table's Kafka topics to its Perspective table (see ``pipeline.py``)."""

from service.ingest.ingestor import Ingestor

__all__ = ["Ingestor"]
