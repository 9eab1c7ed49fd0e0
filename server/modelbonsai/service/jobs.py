"""Every job the faces (the CLI, the language server) ask of the engine, as one frozen dataclass.

A spec is built once, by the face, from what it was given (the protocol's typed params, the
command line) and is then the whole job: it crosses the worker pipe as it is (pickled, never as a
dict) and its handler (table.py) reads nothing else. Defaults live here, in the fields, and in the
engine's own option types (`compare.activations.ActivationOptions`), nowhere in the faces.

Each spec names its result type (`JobSpec[R]`), so `service.handle(spec, reporter)` is typed per
job. Engine types are only named here (for the type checker): importing this costs no torch (the
server imports it at start).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Generic, Literal, TypeVar

if TYPE_CHECKING:
    from ..compare.activations import ActivationOptions

    # named in the quoted JobSpec["..."] bases below (kept unevaluated: both import torch)
    from ..measure import Measured  # noqa: F401
    from ..runner import RunResult  # noqa: F401

R = TypeVar("R")

#: include/exclude patterns of a weight comparison: one fnmatch glob or several
Patterns = str | tuple[str, ...] | None


class JobSpec(Generic[R]):
    """The base of every job spec; `R` is what its handler returns (sent back as `Done`)."""

    #: the job queue's kind (protocol.JobKind): "run" jobs write the store, "compare" ones read it
    queue_kind: ClassVar[Literal["run", "compare"]] = "compare"


# -- runs -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunJob(JobSpec["RunResult"]):
    """Run the variants of an experiment file that are not up to date (`bonsai run`, bonsai/run)."""

    file: str  # the *.bonsai.yaml, read again when the job starts (it may change while queued)
    folder: str  # the workspace folder holding .bonsai/
    device: str
    variants: tuple[str, ...] | None = None  # None: every variant
    force: bool = False
    max_instances: int | None = None  # where the file sets no max_instances (runner.evaluation_limit)
    allow_pickle: bool = False
    queue_kind: ClassVar[Literal["run", "compare"]] = "run"


@dataclass(frozen=True)
class UnaskedModel:
    """A model a run makes or re-evaluates without being asked (a stale ancestor)."""

    id: str | None  # the stored model it re-evaluates or replaces; None: a variant made anew
    variant: str | None
    why: str


@dataclass(frozen=True)
class RunPlanned:
    """What a run will do, said before it starts: the language server marks the unasked models
    in the lineage and shows `message`; the CLI prints `lines`, draws one bar per `bars` and at
    the end lists the models of `steps`."""

    unasked: tuple[UnaskedModel, ...]
    message: str  # "" when the run does nothing unasked
    lines: tuple[str, ...]  # runner.describe_plan
    bars: tuple[str, ...]  # the base's step and every variant, in plan order
    steps: tuple[str, ...]  # every step's name (a variant's last step is the variant's), in plan order


@dataclass(frozen=True)
class MeasureJob(JobSpec["list[Measured]"]):
    """Measure stored models' latency again, each with its base in turn (measure.py)."""

    folder: str
    models: tuple[str, ...]  # ids, id prefixes or names
    device: str = "auto"
    allow_pickle: bool = False
    queue_kind: ClassVar[Literal["run", "compare"]] = "run"  # it uses the device, writes the store


@dataclass(frozen=True)
class ExportJob(JobSpec[str]):
    """Write a stored model as a Hugging Face folder, one safetensors file, or for a runtime
    (ONNX: model.onnx, ExecuTorch: model.pte, checked in the runtime); returns the path."""

    folder: str
    model: str
    dir: str
    format: Literal["hf", "safetensors", "onnx", "executorch"] = "hf"
    force: bool = False  # replace the export files of a non-empty `dir` (else ExportExistsError)
    dequantize: bool = False  # hf: float weights instead of compressed-tensors packed ones
    queue_kind: ClassVar[Literal["run", "compare"]] = "run"


@dataclass(frozen=True)
class ScanJob(JobSpec["ScanDone"]):
    """Measure (or read back) the sensitivity scan of an experiment file's `scan:` section
    (`bonsai scan`, bonsai/scan); the scan is stored in the lineage by its fingerprint."""

    file: str  # the *.bonsai.yaml, read again when the job starts
    folder: str
    device: str = "auto"
    fidelity: Literal["proxy", "full", "both"] | None = None  # None: the file's `fidelity`
    force: bool = False  # measure again even when the same scan is stored
    allow_pickle: bool = False
    queue_kind: ClassVar[Literal["run", "compare"]] = "run"  # it uses the device, writes the store


@dataclass(frozen=True)
class ScanDone:
    """A finished scan: its stored record's id and whether it was read back instead of measured."""

    id: str
    reused: bool
    units: int
    settings: int


@dataclass(frozen=True)
class ReportJob(JobSpec[str]):
    """Write the lineage of `folder` as one self-contained HTML page (share/report_html.py); with
    `compare` (a base, then others) their Behaviors summary and Layers profile too. Returns the path."""

    folder: str
    output: str
    compare: tuple[str, ...] = ()


# -- comparisons: one result page (wire envelope) per compared model, in order ----------------------
@dataclass(frozen=True)
class CompareWeightsJob(JobSpec[None]):
    folder: str
    base: str
    models: tuple[str, ...]
    include: Patterns = None
    exclude: Patterns = None


@dataclass(frozen=True)
class CompareActivationsJob(JobSpec[None]):
    folder: str
    base: str
    models: tuple[str, ...]
    options: ActivationOptions  # checked by the face before the job is queued
    device: str = "cpu"
    max_instances: int | None = None  # the task's evaluation limit, as a run would evaluate


@dataclass(frozen=True)
class CompareBehaviorJob(JobSpec[None]):
    folder: str
    base: str
    models: tuple[str, ...]
    bootstrap: int = 1000  # resamples for the confidence intervals
    seed: int = 0
    # A causal LM's per-token KL (runs both models on the task's data) when the task loads
    token_kl: bool = True
    device: str = "cpu"
    max_instances: int | None = None


@dataclass(frozen=True)
class TilesJob(JobSpec[None]):
    """Tiles of a weight (`tensor` is a parameter name) or of a module's output for `instances`
    (`source` "activation": `tensor` is a module name), or of the difference other - model."""

    folder: str
    model: str
    tensor: str
    level: int
    window: tuple[int, int, int, int]  # y0, x0, y1, x1: rows are y, columns x
    other: str | None = None
    source: Literal["weight", "activation"] = "weight"
    instances: tuple[str, ...] | None = None
    device: str = "cpu"
    max_instances: int | None = None


@dataclass(frozen=True)
class InstancesJob(JobSpec[None]):
    """The instances `ids` as the first model's task renders them, with every model's stored
    prediction and the target."""

    folder: str
    models: tuple[str, ...]  # at least one
    ids: tuple[str, ...]
    max_instances: int | None = None


__all__ = [
    "CompareActivationsJob",
    "CompareBehaviorJob",
    "CompareWeightsJob",
    "ExportJob",
    "InstancesJob",
    "JobSpec",
    "MeasureJob",
    "Patterns",
    "RunJob",
    "RunPlanned",
    "ScanDone",
    "ScanJob",
    "TilesJob",
    "UnaskedModel",
]
