"""How far each table has got: catch-up for /readyz, and lag per partition.

A table is ready once, for every partition, the next offset it has *applied*
(not merely consumed) reaches the end offset seen when the partition was
assigned. End-of-partition events carry the end offset too, so a partition
that ends in transaction markers or compacted gaps still counts as caught up.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from connectors.source import Partition


@dataclass
class TableProgress:
    name: str
    assigned: bool = False
    connected: bool = True
    targets: dict[Partition, int] = field(default_factory=dict)
    applied: dict[Partition, int] = field(default_factory=dict)
    highs: dict[Partition, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _ready: bool = False

    def on_assigned(self, starts: dict[Partition, int], ends: dict[Partition, int]) -> None:
        with self._lock:
            for tp, end in ends.items():
                self.targets.setdefault(tp, end)
                self.highs[tp] = max(self.highs.get(tp, 0), end)
            for tp, start in starts.items():
                self.applied[tp] = max(self.applied.get(tp, 0), start)
            self.assigned = True

    def on_applied(self, positions: dict[Partition, int]) -> None:
        with self._lock:
            for tp, offset in positions.items():
                if offset > self.applied.get(tp, -1):
                    self.applied[tp] = offset
                if offset > self.highs.get(tp, -1):
                    self.highs[tp] = offset

    def on_watermarks(self, highs: dict[Partition, int]) -> None:
        with self._lock:
            for tp, high in highs.items():
                self.highs[tp] = max(high, self.highs.get(tp, 0))

    @property
    def ready(self) -> bool:
        """Caught up with the end offsets seen at start-up (and stays ready after)."""
        if self._ready:
            return True
        with self._lock:
            if not self.assigned:
                return False
            done = all(self.applied.get(tp, 0) >= end for tp, end in self.targets.items())
        self._ready = done
        return done

    def behind(self) -> dict[Partition, int]:
        """Records still to apply before the start-up end offsets, per partition."""
        with self._lock:
            return {
                tp: end - self.applied.get(tp, 0)
                for tp, end in self.targets.items()
                if self.applied.get(tp, 0) < end
            }

    def lag(self) -> dict[Partition, int]:
        """Messages not yet applied per partition, against the latest known high watermark."""
        with self._lock:
            return {
                tp: max(0, high - self.applied.get(tp, high)) for tp, high in self.highs.items()
            }
