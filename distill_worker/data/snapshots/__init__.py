"""Frozen, versioned training sets for distillation runs (see `build` for what goes in)."""

from distill_worker.data.snapshots.build import SnapshotInfo, create_snapshot, load_snapshot
from distill_worker.data.snapshots.records import SnapshotError, SnapshotRecord

__all__ = ["SnapshotError", "SnapshotInfo", "SnapshotRecord", "create_snapshot", "load_snapshot"]
