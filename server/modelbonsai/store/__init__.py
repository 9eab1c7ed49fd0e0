"""The lineage store: `.bonsai/lineage.sqlite` (WAL, migrations), artifact folders, result cache."""

from .lineage import BONSAI_DIR, LineageStore, ModelNotFound, StoreError, canonical_json, new_id
from .records import MetricRecord, ModelRecord, RunRecord, experiment_path

__all__ = [
    "BONSAI_DIR",
    "LineageStore",
    "MetricRecord",
    "ModelNotFound",
    "ModelRecord",
    "RunRecord",
    "StoreError",
    "canonical_json",
    "experiment_path",
    "new_id",
]
