"""The collector's settings once the service is up (service/gcpause.py)."""

from __future__ import annotations

import gc

from service.gcpause import YOUNG_THRESHOLD, settle_after_start


def test_start_up_objects_are_frozen_and_young_collections_are_rarer():
    threshold = gc.get_threshold()
    try:
        gc.unfreeze()
        survivor = {"start-up": [1, 2, 3]}  # a tracked object that exists at start-up
        settle_after_start()
        assert gc.get_freeze_count() > 0
        assert not any(o is survivor for o in gc.get_objects())  # out of the collector's walk
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        # Cyclic garbage made after start-up is still collected.
        cycle: list = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
