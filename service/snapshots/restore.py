"""How a table starts: from its newest usable snapshot, or by replaying its topics.

A snapshot is usable when its file checks out (trailer, length, CRC, metadata),
it was written by a table configured the same way (the fingerprint), and its
offsets still describe the topic: every saved partition still exists, and each
saved offset lies between the partition's first offset and its end. Anything
else falls back to the table's start policy, for one reason from a fixed set
(the ``kind`` label of ``livetables_table_start``).

Files are tried newest first: when the newest is damaged, the one before it is
as good a starting point (its offsets are older, so more of the log is read).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from connectors.offsets import LogRanges
from connectors.source import Partition
from service.snapshots import files
from service.snapshots.files import LoadedSnapshot, Unusable

log = logging.getLogger(__name__)


class StartKind(StrEnum):
    """How a table started; each value is a ``kind`` label of ``livetables_table_start``."""

    SNAPSHOT = "snapshot"
    REPLAY = "replay"
    CONFIG_CHANGED = "fallback:config_changed"
    CORRUPT = "fallback:corrupt"
    RETENTION = "fallback:retention"
    TOPIC_CHANGED = "fallback:topic_changed"
    LOAD_FAILED = "fallback:load_failed"


_FALLBACKS = {
    "config_changed": StartKind.CONFIG_CHANGED,
    "corrupt": StartKind.CORRUPT,
    "retention": StartKind.RETENTION,
    "topic_changed": StartKind.TOPIC_CHANGED,
    "load_failed": StartKind.LOAD_FAILED,
}


@dataclass(frozen=True)
class StartDecision:
    """How a table starts, why, and the snapshot to load if any."""

    kind: StartKind
    detail: str
    snapshot: LoadedSnapshot | None = None


def fallback(reason: str, detail: str) -> StartDecision:
    return StartDecision(_FALLBACKS[reason], detail)


def choose(directory: Path, table: str, fingerprint: str) -> StartDecision:
    """The newest usable snapshot of ``table``, or why there is none."""
    paths = files.candidates(directory, table)
    if not paths:
        folder = files.table_dir(directory, table)
        return StartDecision(StartKind.REPLAY, f"no snapshot in {folder}")
    problems: list[tuple[Path, Unusable]] = []
    for path in paths:
        try:
            loaded = _verified(path, table, fingerprint)
        except Unusable as exc:
            problems.append((path, exc))
            continue
        for bad, problem in problems:
            log.warning(
                "table %s: snapshot %s not used (%s); the one before it is", table, bad, problem
            )
        return StartDecision(StartKind.SNAPSHOT, str(path), loaded)
    path, newest = problems[0]
    return fallback(newest.reason, f"{path}: {newest.detail}")


def _verified(path: Path, table: str, fingerprint: str) -> LoadedSnapshot:
    # The metadata first (a few bytes): a changed configuration costs no read of the rows.
    meta = files.read_meta(path)
    _check_meta(meta, table, fingerprint)
    loaded = files.read_snapshot(path)
    _check_meta(loaded.meta, table, fingerprint)
    if loaded.rows.num_rows and not loaded.meta.offsets:
        raise Unusable("corrupt", "rows without offsets")
    return loaded


def _check_meta(meta: files.SnapshotMeta, table: str, fingerprint: str) -> None:
    if meta.table != table:
        raise Unusable("corrupt", f"written for table {meta.table!r}")
    if meta.fingerprint != fingerprint:
        raise Unusable("config_changed", "the table's configuration changed since it was written")


def offsets_problem(saved: dict[Partition, int], ranges: LogRanges) -> StartDecision | None:
    """Why the saved offsets no longer describe the topics, or None if they still do."""
    for (topic, partition), offset in sorted(saved.items()):
        where = f"{topic}[{partition}]"
        if (topic, partition) not in ranges:
            return fallback("topic_changed", f"partition {where} no longer exists")
        low, high = ranges[(topic, partition)]
        if offset < low:
            return fallback(
                "retention",
                f"{where} now starts at offset {low}; the snapshot goes on from {offset} "
                "(the records between were deleted by retention)",
            )
        if offset > high:
            return fallback(
                "topic_changed",
                f"{where} ends at offset {high}, before the snapshot's {offset} "
                "(the topic was deleted and created again?)",
            )
    return None
