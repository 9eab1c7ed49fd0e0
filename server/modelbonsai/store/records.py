"""The records the lineage store hands out: plain dataclasses, JSON-friendly via `to_json`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def experiment_path(label: str, workspace: Path) -> Path:
    """The experiment file a stored label names (`runner.experiment_label` made it: relative to
    the workspace when inside it, else absolute)."""
    path = Path(label)
    return path if path.is_absolute() else Path(workspace) / path


@dataclass
class ModelRecord:
    """One model in the lineage.

    `artifact` is the artifact folder relative to `.bonsai/` (e.g. ``artifacts/3f2a9c1d0b7e``).
    `step` is the index of the op inside a multi-op variant (0-based); the final model of a
    variant has ``step == len(ops) - 1``. Roots (base models) have ``op is None`` and carry
    `base_spec`, the spec they were loaded from. `status` is computed when read: ``ok`` or
    ``broken`` (artifact missing or unreadable), with `status_reason` saying why.
    """

    name: str
    id: str = ""
    parent_id: str | None = None
    op: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    status_reason: str = ""
    artifact: str = ""
    created: float = 0.0
    seed: int = 0
    versions: dict[str, str] = field(default_factory=dict)
    experiment_file: str | None = None
    variant: str | None = None
    step: int = 0
    fingerprint: str = ""
    base_spec: dict[str, Any] | None = None
    complete: bool = False
    # What its metrics and outputs were evaluated with (runner.evaluation_fingerprint); None:
    # unknown (stored before this was recorded), so the next run re-evaluates it.
    eval_fingerprint: str | None = None
    # Other names this model answers to: variants (or steps) of the same fingerprint that were
    # matched to it instead of being made again (store/identity.py).
    aliases: list[str] = field(default_factory=list)
    # Where a model imported from another tool came from ({"tool", "file", "id"}); None for the
    # models Bonsai made. An imported model has no weights (share/cc_import.py).
    imported: dict[str, Any] | None = None

    @property
    def is_root(self) -> bool:
        return self.parent_id is None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MetricRecord:
    name: str
    value: float
    unit: str = ""
    higher_is_better: bool = True
    headline: bool = False
    model_id: str = ""
    detail: str = ""
    # How far apart the measurement's rounds were (same unit as `value`; None: not measured in
    # rounds), and whether that is too far to trust (store/measurements.py keeps the history).
    spread: float | None = None
    noisy: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


RUN_STATUSES = ("queued", "running", "done", "failed", "cancelled")


@dataclass
class RunRecord:
    """One `bonsai run` (or language-server job). `failures` maps a variant name to its error.

    A run left ``running`` or ``queued`` by a process that no longer exists (killed) is reported
    as ``failed`` with the message "interrupted".
    """

    id: str
    experiment_file: str
    variants: list[str]
    status: str
    message: str = ""
    started: float = 0.0
    finished: float | None = None
    failures: dict[str, str] = field(default_factory=dict)
    pid: int | None = None
    host: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
