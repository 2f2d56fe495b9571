"""Retention: rows older than a table's window are removed (see book.py and tracker.py)."""
