"""Every custom LSP method between the Bonsai extension and this server, with its wire shapes.

This module is the single source of truth the extension's ``extension/shared/protocol.ts`` mirrors.
Shapes are TypedDicts whose keys are exactly the camelCase JSON fields. :func:`check` validates a
JSON value against a shape (the server uses it on every incoming custom request, and the fixture
test under ``tests/fixtures/protocol/`` uses it on every fixture message), so a field renamed on
one side fails a test instead of failing silently in the editor.
"""

from __future__ import annotations

import math
import types as _pytypes
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from typing_extensions import NotRequired, Required, TypedDict, get_type_hints, is_typeddict

# the Bonsai error codes, declared once with the error classes that carry them (see "Error codes")
from ..errors import EXPORT_EXISTS as EXPORT_EXISTS
from ..errors import INTERNAL_ERROR as INTERNAL_ERROR
from ..errors import JOB_FAILED as JOB_FAILED
from ..errors import NOT_FOUND as NOT_FOUND
from ..errors import USER_ERROR as USER_ERROR

# ---------------------------------------------------------------------------------------------
# Method names
# ---------------------------------------------------------------------------------------------
LINEAGE = "bonsai/lineage"
RUN = "bonsai/run"
JOBS = "bonsai/jobs"
CANCEL = "bonsai/cancel"
COMPARE_WEIGHTS = "bonsai/compare/weights"
COMPARE_ACTIVATIONS = "bonsai/compare/activations"
COMPARE_BEHAVIOR = "bonsai/compare/behavior"
TENSOR_TILES = "bonsai/tensor/tiles"
INSTANCES = "bonsai/instances"
RESULT_PAGE = "bonsai/result/page"
MODEL_DELETE = "bonsai/model/delete"
MODEL_EXPORT = "bonsai/model/export"
MODEL_MEASURE = "bonsai/model/measure"
EXPERIMENT_CREATE = "bonsai/experiment/create"
EXPERIMENT_FACTORIES = "bonsai/experiment/factories"
REPORT = "bonsai/report"
SCAN = "bonsai/scan"
SCANS = "bonsai/scans"
SCAN_BUDGET = "bonsai/scan/budget"

# server -> client notifications
LINEAGE_CHANGED = "bonsai/lineageChanged"
JOB_CHANGED = "bonsai/jobChanged"

# Commands the client registers; CodeLenses carry them with these arguments.
CMD_RUN_VARIANT = "bonsai.runVariant"  # (fileUri, variantName)
CMD_COMPARE_WITH_PARENT = "bonsai.compareWithParent"  # (fileUri, variantName)
CMD_SHOW_IN_MODEL_MAP = "bonsai.showInModelMap"  # (fileUri, variantName)
CMD_SHOW_SWEEP = "bonsai.showSweep"  # (fileUri, variantName, SweepRow[]): a sweep's models, one a line
CMD_CREATE_EXPERIMENT_FILE = "bonsai.createExperimentFile"  # (modelUri[, function])
CMD_INSPECT_MODEL = "bonsai.inspectModel"  # (configUri)

EXPERIMENT_GLOB = "**/*.bonsai.yaml"
EXPERIMENT_SUFFIX = ".bonsai.yaml"

# A msgpack page carried inline is at most this many bytes before base64; bigger results go
# through a file in the client's storage folder.
MAX_INLINE_PAGE_BYTES = 4 * 1024 * 1024

# ---------------------------------------------------------------------------------------------
# Error codes (JSON-RPC standard ones, LSP's, and Bonsai's in the server-defined range)
# ---------------------------------------------------------------------------------------------
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
REQUEST_CANCELLED = -32800  # LSP: the request (or the job behind it) was cancelled
WORKSPACE_UNTRUSTED = -32001  # model-loading request in a workspace the user has not trusted
# The engine's errors carry these by class, so they are declared once, in errors.py:
# INTERNAL_ERROR; NOT_FOUND (unknown model, job, result, tensor or file); USER_ERROR (something
# the user can fix); JOB_FAILED (the job behind the request raised; the message says why);
# EXPORT_EXISTS (bonsai/model/export into a folder that holds files: the message says which files
# a forced export overwrites and which it keeps; the client asks the user and re-sends with
# `force: true`). They are imported at the top of this module.

UNTRUSTED_MESSAGE = (
    "Bonsai does not load or run models in a restricted workspace: Workspace Trust is required "
    "(use 'Manage Workspace Trust' to trust this folder)."
)

# ---------------------------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------------------------
ProgressToken = int | str
Device = Literal["auto", "cpu", "cuda", "mps"]
ModelStatus = Literal["ok", "running", "failed", "broken", "stale"]
JobKind = Literal["run", "compare"]
JobState = Literal["queued", "running", "done", "failed", "cancelled"]
JOB_FINAL_STATES: tuple[str, ...] = ("done", "failed", "cancelled")


class InitializationOptions(TypedDict, total=False):
    storagePath: str
    device: Device
    maxInstances: int
    trusted: bool


class Empty(TypedDict):
    pass


class LineageParams(TypedDict):
    folder: NotRequired[str]  # fs path or file URI of a workspace folder; default: the first


class MetricDef(TypedDict):
    """What a metric is: sent once per lineage reply (LineageResult.metrics), not per model."""

    name: str
    unit: str
    higherIsBetter: bool
    headline: bool


class MetricSpread(TypedDict):
    """How far a model's metric can be trusted; only metrics measured in rounds have one (latency).
    `spread` (the metric's unit): how far above the value the rounds' medians' upper quartile lies
    (error bars run from value to value + spread); `noisy`: the rounds disagreed too much to trust
    the figure; `note`: why, for a tooltip (noisy ones)."""

    spread: float
    noisy: bool
    note: NotRequired[str]


class MetricInfo(TypedDict):
    """A model's metric with its definition: what each side assembles from a lineage reply
    (`model_metrics`; protocol.ts `lineageModels`). Not sent as such. `key` is the reply's key
    (the name, or `name#2`, ... for another definition under that name); `spread`, `noisy` and
    `note` come from the model's `spreads`."""

    key: str
    name: str
    value: float
    unit: str
    higherIsBetter: bool
    headline: bool
    spread: NotRequired[float]
    noisy: NotRequired[bool]
    note: NotRequired[str]


class ExperimentRef(TypedDict):
    file: str
    variant: str


class Evaluation(TypedDict):
    task: str  # hash of the task's kind and options (runner.evaluation_fingerprint)
    instances: str  # "<evaluated>/<total>" (total "?" when unknown), or the limit asked for


class ImportedFrom(TypedDict):
    """Where a model imported from another tool came from (`bonsai import-cc`): it has its recipe
    and metrics, no weights."""

    tool: str
    file: str
    id: str


class ModelInfo(TypedDict):
    id: str
    name: str
    parent: str | None
    op: str | None
    params: dict[str, Any]
    status: ModelStatus
    statusReason: NotRequired[str]
    metrics: dict[str, float]  # metric key (LineageResult.metrics) -> value; finite values only
    experiment: NotRequired[ExperimentRef]
    created: str  # ISO 8601
    # Other variants' (or steps') names that resolve to this model: their fingerprint is this
    # model's, so it was made once (store/identity.py).
    aliases: NotRequired[list[str]]
    imported: NotRequired[ImportedFrom]
    # metric key -> its spread, for the metrics that have one (latency)
    spreads: NotRequired[dict[str, MetricSpread]]
    # The seed its ops ran with (a root: the experiment's), and what its metrics were evaluated
    # on: the rest of its recipe, which the Model Map's recipe diff compares besides the ops.
    seed: NotRequired[int]
    evaluation: NotRequired[Evaluation]


class SweepRow(TypedDict):
    """One model of a swept variant as its lens's "show all" lists it (CMD_SHOW_SWEEP)."""

    name: str  # the expanded variant's name
    title: str  # its metrics, each against its parent and the base (lens.metrics_lens_title)
    tooltip: str  # why a figure is marked ~ ("" when none is)


class LineageResult(TypedDict):
    folder: str
    # metric key -> its definition, once per reply. The key is the metric's name, or
    # ``name#2``... for another definition under the same name (two tasks' "score").
    metrics: dict[str, MetricDef]
    models: list[ModelInfo]


def model_metrics(model: ModelInfo, defs: dict[str, MetricDef]) -> list[MetricInfo]:
    """A model's metrics with their definitions, in the model's order (a key the reply does not
    define is shown by its name, unitless)."""
    out: list[MetricInfo] = []
    spreads = model.get("spreads") or {}
    for key, value in model["metrics"].items():
        d = defs.get(key) or {"name": key, "unit": "", "higherIsBetter": True, "headline": False}
        info: MetricInfo = {
            "key": key,
            "name": d["name"],
            "value": value,
            "unit": d["unit"],
            "higherIsBetter": d["higherIsBetter"],
            "headline": d["headline"],
        }
        s = spreads.get(key)
        if s is not None:
            info["spread"], info["noisy"] = s["spread"], s["noisy"]
            if "note" in s:
                info["note"] = s["note"]
        out.append(info)
    return out


class RunParams(TypedDict):
    file: str  # URI or path of a *.bonsai.yaml
    variants: NotRequired[list[str]]
    force: NotRequired[bool]
    workDoneToken: NotRequired[ProgressToken]


class RunResult(TypedDict):
    jobId: str


class JobInfo(TypedDict):
    id: str
    kind: JobKind
    title: str
    state: JobState
    position: NotRequired[int]  # 1-based place in its device's queue, while queued
    progress: NotRequired[float]  # 0..1
    message: NotRequired[str]


class JobsResult(TypedDict):
    jobs: list[JobInfo]


class CancelParams(TypedDict):
    jobId: str


class CancelResult(TypedDict):
    cancelled: bool


class CompareParams(TypedDict):
    base: str  # model id
    models: list[str]
    options: NotRequired[dict[str, Any]]
    workDoneToken: NotRequired[ProgressToken]


class TilesParams(TypedDict):
    model: str
    tensor: str
    other: NotRequired[str]  # a second model: tiles of the difference other - model
    source: NotRequired[Literal["weight", "activation"]]  # activation: `tensor` is a module name
    instances: NotRequired[list[str]]  # activation tiles: instance ids, one row each, in this order
    level: int
    x0: int
    y0: int
    x1: int
    y1: int


class InstancesParams(TypedDict):
    ids: list[str]
    models: NotRequired[list[str]]


class ResultPageParams(TypedDict):
    resultId: str
    page: int


class ResultFile(TypedDict):
    path: str
    size: int
    sha256: str


class ResultRef(TypedDict):
    resultId: str
    # The job computing this result (cancel it with bonsai/cancel); absent when no job made it.
    jobId: NotRequired[str]
    page: int
    pages: int
    done: bool
    data: NotRequired[str]  # base64 of one msgpack page (wire.py envelope), <= 4 MB decoded
    file: NotRequired[ResultFile]


class DeleteParams(TypedDict):
    id: str
    recursive: NotRequired[bool]


class DeleteResult(TypedDict):
    deleted: list[str]


class ExportParams(TypedDict):
    id: str
    dir: str
    format: Literal["hf", "safetensors", "onnx", "executorch"]
    # replace the export files in a non-empty `dir` (else EXPORT_EXISTS); other files are kept
    force: NotRequired[bool]


class MeasureParams(TypedDict):
    """Measure these models' latency again (ids or names), each with its base in turn; a job
    (`RunResult.jobId`) that stores each measurement in the model's history."""

    ids: list[str]
    workDoneToken: NotRequired[ProgressToken]


class PathResult(TypedDict):
    path: str


class ReportParams(TypedDict):
    """Write a folder's lineage as one self-contained HTML page (`bonsai report --html`); with
    `compare` (a base, then others: ids or names) their Behaviors summary and Layers profile."""

    folder: str
    path: str
    compare: NotRequired[list[str]]


class CreateExperimentParams(TypedDict):
    """Write a starter experiment file for a model. `configPath` is the model's file: a Hugging
    Face config.json, a .py (`function`: which of its functions returns the model; default its
    only one), or a .safetensors file (`factory`: "file.py:function" building its architecture;
    default the one found beside it)."""

    configPath: str
    function: NotRequired[str]
    factory: NotRequired[str]


class FactoriesParams(TypedDict):
    """The model factories of a .py file, or those found beside a .safetensors file."""

    path: str


class ModelFactoryInfo(TypedDict):
    file: str
    function: str
    kind: Literal["function", "class"]
    line: int  # 0-based line of its def/class
    required: list[str]  # parameters without a default (the starter cannot call it)


class FactoriesResult(TypedDict):
    factories: list[ModelFactoryInfo]


class ScanParams(TypedDict):
    """Measure the `scan:` section of an experiment file (or read it back when the same scan is
    stored): a job (`RunResult.jobId`); bonsai/scans lists it once the job is done."""

    file: str  # URI or path of a *.bonsai.yaml
    fidelity: NotRequired[Literal["proxy", "full", "both"]]  # default: the file's `fidelity`
    force: NotRequired[bool]  # measure again even when the same scan is stored
    workDoneToken: NotRequired[ProgressToken]


class ScansParams(TypedDict):
    """The stored scans of one experiment file (`file`), or of a workspace folder (default: the first)."""

    file: NotRequired[str]
    folder: NotRequired[str]


class ScanSettingInfo(TypedDict):
    op: str
    params: dict[str, Any]
    label: str


class ScanSpecInfo(TypedDict):
    settings: list[ScanSettingInfo]
    include: list[str]
    exclude: list[str]
    granularity: Literal["layer", "block"]
    fidelity: Literal["proxy", "full", "both"]
    batches: int
    batchSize: int
    maxInstances: int
    seed: int


class ScanUnitInfo(TypedDict):
    name: str  # a layer (module) or a block, in depth order
    params: list[str]  # the weights it holds


class ScanMetricInfo(TypedDict):
    """A full scan's metric: its values are the loss against the base (base - model when higher is
    better) on `maxInstances` instances."""

    name: str
    unit: str
    higherIsBetter: bool
    base: float


class ScanData(TypedDict):
    """scan/measure.py ScanResult.to_json: every [setting][unit] table has one row per setting."""

    spec: ScanSpecInfo
    units: list[ScanUnitInfo]
    baseBytes: list[int]  # per unit: its weights as the base stores them
    numel: list[int]
    proxy: list[list[float | None]] | None  # relative L2 error of the unit's outputs
    full: list[list[float | None]] | None  # loss in the metric's unit
    bytes: list[list[int | None]]  # stored bytes of the unit under the setting
    skipped: dict[str, str]  # "setting:unit" -> why it was not measured
    metric: ScanMetricInfo | None
    rankCorrelation: list[float | None]  # per setting: Spearman's rho of proxy and full


class ScanInfo(TypedDict):
    id: str
    experimentFile: str | None  # relative to the workspace folder
    created: float  # seconds since the epoch
    result: ScanData


class ScansResult(TypedDict):
    folder: str
    scans: list[ScanInfo]  # newest first


class ScanBudgetParams(TypedDict):
    """The best per-layer recipe over a stored scan under one budget (`maxBytes` of the scanned
    weights, or `maxLoss` against the base), as a variant; with `file`, the edit that appends it
    to that experiment file's `variants:`."""

    scan: str  # ScanInfo.id
    maxBytes: NotRequired[int]
    maxLoss: NotRequired[float]
    name: NotRequired[str]  # the variant's name (default: budget-<size> / within-<loss>)
    file: NotRequired[str]


class TextInsert(TypedDict):
    """Insert `text` at (line, character) in the client's position encoding."""

    line: int
    character: int
    text: str


class ScanBudgetResult(TypedDict):
    feasible: bool  # False: no recipe meets the budget; the recipe is the closest found (`message`)
    message: str
    choice: list[int | None]  # per unit: the setting index, or null (its base weights)
    bytes: int  # the recipe's scanned weights, stored
    baseBytes: int  # the same weights as the base stores them
    loss: float  # the recipe's summed sensitivity
    exact: bool  # False: costs were grouped (a near-optimal recipe that still fits)
    name: str
    variant: str  # the variant as YAML ("" when the recipe keeps every layer as in the base)
    edit: NotRequired[TextInsert]  # with `file`, a feasible recipe: where the variant goes


class LineageChangedParams(TypedDict):
    folder: str


class JobChangedParams(TypedDict):
    job: JobInfo


@dataclass(frozen=True)
class Method:
    """One custom method: its shapes, direction, and whether it needs a trusted workspace."""

    name: str
    kind: Literal["request", "notification"]
    params: type
    result: type | None = None
    to_client: bool = False
    needs_trust: bool = False


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(LINEAGE, "request", LineageParams, LineageResult),
        Method(RUN, "request", RunParams, RunResult, needs_trust=True),
        Method(JOBS, "request", Empty, JobsResult),
        Method(CANCEL, "request", CancelParams, CancelResult),
        Method(COMPARE_WEIGHTS, "request", CompareParams, ResultRef, needs_trust=True),
        Method(COMPARE_ACTIVATIONS, "request", CompareParams, ResultRef, needs_trust=True),
        Method(COMPARE_BEHAVIOR, "request", CompareParams, ResultRef, needs_trust=True),
        Method(TENSOR_TILES, "request", TilesParams, ResultRef, needs_trust=True),
        Method(INSTANCES, "request", InstancesParams, ResultRef, needs_trust=True),
        Method(RESULT_PAGE, "request", ResultPageParams, ResultRef),
        Method(MODEL_DELETE, "request", DeleteParams, DeleteResult),
        Method(MODEL_EXPORT, "request", ExportParams, PathResult, needs_trust=True),
        Method(EXPERIMENT_CREATE, "request", CreateExperimentParams, PathResult),
        Method(EXPERIMENT_FACTORIES, "request", FactoriesParams, FactoriesResult),
        Method(REPORT, "request", ReportParams, PathResult, needs_trust=True),
        Method(MODEL_MEASURE, "request", MeasureParams, RunResult, needs_trust=True),
        Method(SCAN, "request", ScanParams, RunResult, needs_trust=True),
        Method(SCANS, "request", ScansParams, ScansResult),
        Method(SCAN_BUDGET, "request", ScanBudgetParams, ScanBudgetResult),
        Method(LINEAGE_CHANGED, "notification", LineageChangedParams, to_client=True),
        Method(JOB_CHANGED, "notification", JobChangedParams, to_client=True),
    )
}

# LSP adds these to any request's params; they are never an error.
_LSP_EXTRA_KEYS = frozenset({"workDoneToken", "partialResultToken"})


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------
class ShapeError(ValueError):
    """A JSON value does not have the declared shape; the message names the field."""


def check(value: Any, shape: Any, where: str = "params") -> None:
    """Raise :class:`ShapeError` naming the first field of `value` that does not fit `shape`."""
    problem = _problem(value, shape, where)
    if problem:
        raise ShapeError(problem)


def _type_name(shape: Any) -> str:
    if shape is type(None):
        return "null"
    origin = get_origin(shape)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(shape))
    if origin in (Union, _pytypes.UnionType):
        return " | ".join(_type_name(a) for a in get_args(shape))
    if is_typeddict(shape):
        return "object"
    if origin is list:
        return "array"
    if origin is dict:
        return "object"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(shape, str(shape))


def _problem(value: Any, shape: Any, where: str) -> str | None:
    if shape is Any:
        return None
    origin = get_origin(shape)
    if origin is NotRequired:
        return _problem(value, get_args(shape)[0], where)
    if origin is Literal:
        ok = any(type(value) is type(a) and value == a for a in get_args(shape))
        return None if ok else f"{where} must be {_type_name(shape)}, got {_show(value)}"
    if origin in (Union, _pytypes.UnionType):
        options = get_args(shape)
        if any(_problem(value, option, where) is None for option in options):
            return None
        return f"{where} must be {_type_name(shape)}, got {_show(value)}"
    if shape is type(None):
        return None if value is None else f"{where} must be null, got {_show(value)}"
    if is_typeddict(shape):
        if not isinstance(value, dict):
            return f"{where} must be an object, got {_show(value)}"
        hints = get_type_hints(shape, include_extras=True)
        required = _required_keys(shape, hints)
        for key in required:
            if key not in value:
                return f"{where}.{key} is missing"
        for key, item in value.items():
            if key not in hints:
                if key in _LSP_EXTRA_KEYS:
                    continue
                known = ", ".join(sorted(hints)) or "none"
                return f"{where}.{key} is not a known field (known: {known})"
            p = _problem(item, hints[key], f"{where}.{key}")
            if p:
                return p
        return None
    if origin is list:
        if not isinstance(value, list):
            return f"{where} must be an array, got {_show(value)}"
        (item_shape,) = get_args(shape)
        for i, item in enumerate(value):
            p = _problem(item, item_shape, f"{where}[{i}]")
            if p:
                return p
        return None
    if origin is dict:
        if not isinstance(value, dict):
            return f"{where} must be an object, got {_show(value)}"
        _, item_shape = get_args(shape)
        for k, item in value.items():
            p = _problem(item, item_shape, f"{where}.{k}")
            if p:
                return p
        return None
    if shape is bool:
        ok = isinstance(value, bool)
    elif shape is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif shape is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif shape is str:
        ok = isinstance(value, str)
    else:  # pragma: no cover - a shape this validator does not know is a bug in this module
        raise TypeError(f"protocol.check does not understand {shape!r}")
    return None if ok else f"{where} must be {_type_name(shape)}, got {_show(value)}"


def _required_keys(shape: Any, hints: dict[str, Any]) -> list[str]:
    # Computed from the resolved hints: with postponed annotations `__required_keys__` cannot
    # see NotRequired inside the annotation strings.
    total = getattr(shape, "__total__", True)
    out = []
    for key, hint in hints.items():
        origin = get_origin(hint)
        if origin is NotRequired:
            continue
        if origin is Required or total:
            out.append(key)
    return out


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
