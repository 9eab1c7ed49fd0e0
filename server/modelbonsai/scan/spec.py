"""What a sensitivity scan measures: the op settings, the layers, the fidelities. Plain data, no
torch, so the experiment file's parser, the CLI and the language server share it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

from ..store.lineage import canonical_json

Granularity = Literal["layer", "block"]
Fidelity = Literal["proxy", "full", "both"]

#: defaults, in one place (the parser, the CLI and the docs read them here)
DEFAULT_BATCHES = 2
DEFAULT_BATCH_SIZE = 8
DEFAULT_MAX_INSTANCES = 64
#: ops that touch one chosen set of parameters (`include`) can be scanned layer by layer
SCANNABLE_PARAM = "include"


@dataclass(frozen=True)
class ScanSetting:
    """One op with its parameters, applied to one layer (or block) at a time."""

    op: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.op}({args})" if args else self.op

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "params": self.params, "label": self.label}


@dataclass(frozen=True)
class ScanSpec:
    settings: tuple[ScanSetting, ...]
    include: tuple[str, ...] = ()  # parameter-name patterns of the layers to scan (default: the op targets)
    exclude: tuple[str, ...] = ()
    granularity: Granularity = "layer"
    fidelity: Fidelity = "proxy"
    batches: int = DEFAULT_BATCHES  # proxy: calibration batches whose base activations are cached
    batch_size: int = DEFAULT_BATCH_SIZE
    max_instances: int = DEFAULT_MAX_INSTANCES  # full: evaluated on this many instances
    seed: int = 0

    @property
    def proxy(self) -> bool:
        return self.fidelity in ("proxy", "both")

    @property
    def full(self) -> bool:
        return self.fidelity in ("full", "both")

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": [s.to_json() for s in self.settings],
            "include": list(self.include),
            "exclude": list(self.exclude),
            "granularity": self.granularity,
            "fidelity": self.fidelity,
            "batches": self.batches,
            "batchSize": self.batch_size,
            "maxInstances": self.max_instances,
            "seed": self.seed,
        }


def scan_fingerprint(base_fingerprint: str, spec: ScanSpec, task: str | None) -> str:
    """Identifies a scan's results: the base model, what was scanned and how, and the task's
    evaluation settings (a full scan's values depend on them)."""
    text = canonical_json({"base": base_fingerprint, "spec": spec.to_json(), "task": task})
    return "scan-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def spec_from_json(d: dict[str, Any]) -> ScanSpec:
    """The inverse of ScanSpec.to_json (a stored scan read back)."""
    return ScanSpec(
        settings=tuple(ScanSetting(s["op"], dict(s.get("params") or {})) for s in d["settings"]),
        include=tuple(d.get("include") or ()),
        exclude=tuple(d.get("exclude") or ()),
        granularity=d.get("granularity", "layer"),
        fidelity=d.get("fidelity", "proxy"),
        batches=int(d.get("batches", DEFAULT_BATCHES)),
        batch_size=int(d.get("batchSize", DEFAULT_BATCH_SIZE)),
        max_instances=int(d.get("maxInstances", DEFAULT_MAX_INSTANCES)),
        seed=int(d.get("seed", 0)),
    )
