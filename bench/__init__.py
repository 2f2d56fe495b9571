"""The livetables benchmark suite: ``python -m bench`` (or ``make bench``)."""
