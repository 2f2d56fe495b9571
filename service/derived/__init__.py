"""Derived tables: the live result of a grouped view over another table (see table.py)."""
