"""Typed objects of a parsed experiment file, each keeping where it came from in the source.

Positions are 0-based lines and columns, like LSP. Columns count Unicode code points (what the
YAML parser reports); for files that are plain ASCII this equals LSP's UTF-16 columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ..scan.spec import ScanSpec
    from .mlflow_section import MlflowSpec

Severity = Literal["error", "warning", "info"]

#: The name that always refers to the base model in `from:` (besides the base's own name).
BASE = "base"


@dataclass(frozen=True)
class Range:
    """A span of source text: start inclusive, end exclusive (0-based lines and columns)."""

    start_line: int
    start_col: int
    end_line: int
    end_col: int

    def contains(self, line: int, col: int) -> bool:
        """True when (line, col) lies in the range, its end included (a cursor right after a word)."""
        if (line, col) < (self.start_line, self.start_col):
            return False
        return (line, col) <= (self.end_line, self.end_col)

    def to_lsp(self) -> dict[str, dict[str, int]]:
        return {
            "start": {"line": self.start_line, "character": self.start_col},
            "end": {"line": self.end_line, "character": self.end_col},
        }

    def __str__(self) -> str:
        return f"{self.start_line + 1}:{self.start_col + 1}"


#: Stable problem codes (diagnostic `code` in the editor; tests match on them).
PROBLEM_CODES = (
    "yaml-syntax",  # the text is not YAML
    "duplicate-key",  # the same key twice in one mapping
    "unknown-key",  # a key the format does not know
    "unknown-op",  # an op name that no registered op (nor an ops_from file) has
    "unknown-param",  # a parameter the op does not have
    "wrong-type",  # a value of the wrong type (string for a number, mapping for a list, ...)
    "out-of-range",  # a value outside the parameter's range or choices
    "missing-required",  # a required key or parameter is absent
    "unknown-parent",  # `from:` names no variant
    "cycle",  # variants derive from each other in a loop
    "duplicate-name",  # two variants (after sweep expansion) share a name
    "reserved-name",  # a variant named `base` or like the base model
    "missing-path",  # a file or folder named in the file does not exist
    "sweep",  # a list given for a parameter that cannot be swept, empty sweeps, bad name templates
    "unknown-task",  # a task kind that is not built in
    "task-data",  # an op needs data the task does not give (distillation without training data)
    "pattern-no-match",  # an include/exclude pattern matches no parameter of the base model
    "internal",  # checking itself failed (a bug, or an op module that does not import)
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an experiment file, at an exact place."""

    path: Path
    range: Range
    message: str
    severity: Severity = "error"
    code: str = ""

    def __str__(self) -> str:
        return f"{self.path}:{self.range}: {self.severity}: {self.message}"


@dataclass
class OpCall:
    """One op applied in a variant: `- prune.magnitude: {sparsity: 0.5}`.

    `params` are the values as written (not defaults-filled; `OpDef.resolve` does that). In a
    declared (unexpanded) variant a swept parameter holds its list of values; in an expanded
    variant every parameter holds one value. `name_range` is the op name key, `key_ranges` /
    `value_ranges` each parameter's key and value, `item_ranges` the items of list values.
    """

    name: str
    params: dict[str, Any]
    range: Range
    name_range: Range
    key_ranges: dict[str, Range] = field(default_factory=dict)
    value_ranges: dict[str, Range] = field(default_factory=dict)
    item_ranges: dict[str, list[Range]] = field(default_factory=dict)
    #: parameter names whose list value is a sweep (only in declared variants)
    swept: tuple[str, ...] = ()
    #: list-valued parameters of an op from `ops_from` that is not loaded (the editor never runs
    #: user code, and a file is parsed before a run imports it): their types are unknown, so each
    #: is a sweep when the variant's name template names it (`thr-{threshold}`), else a value
    #: (sweeps.axes_of)
    maybe_swept: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeploySpec:
    """`deploy:` as written: the targets each model is exported to and measured in, and the
    parity tolerance (None: the default, deploy.targets.DEFAULT_TOLERANCE). `range`: the value."""

    targets: tuple[str, ...]
    tolerance: float | None = None
    range: Range | None = None


@dataclass
class Variant:
    """A model derived from its parent (`from`) by applying `ops` in order.

    `parent` is another variant's name, or :data:`BASE` for the base model (`from: base` and
    `from: <base name>` both normalise to it). Variants made by sweep expansion have `sweep_of`
    set to the declared name (as written, e.g. ``prune-{sparsity}``) and `sweep_values` holding
    the swept values that made them (inherited from a swept parent first, then their own).
    All ranges point into the declaration, which expanded siblings share.
    """

    name: str
    parent: str
    ops: list[OpCall]
    range: Range
    name_range: Range
    parent_range: Range | None = None
    sweep_of: str | None = None
    sweep_values: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    seed: int | None = None
    #: the variant's own `deploy:` (None: the file's applies)
    deploy: DeploySpec | None = None

    @property
    def from_base(self) -> bool:
        return self.parent == BASE


@dataclass
class BaseSpec:
    """How to load the base model. `load` is as written; `resolved` is what it points to."""

    name: str
    load: str
    range: Range
    factory: str | None = None
    #: "hf-folder" | "safetensors" | "file-function" | "module-function" | "file"
    load_kind: str = "file"
    #: absolute path of the folder/file (`file.py` for "file.py:fn"), None for "pkg.mod:fn"
    load_path: Path | None = None
    load_range: Range | None = None
    factory_range: Range | None = None
    name_range: Range | None = None
    #: keyword arguments for the `load`/`factory` function
    args: dict[str, Any] | None = None
    #: "float32" | "float16" | "bfloat16" (None: float32)
    dtype: str | None = None
    #: the base model's own `deploy:` (None: the file's applies)
    deploy: DeploySpec | None = None


@dataclass
class TaskSpec:
    """How to evaluate: a task kind and its options (everything under `task:` except `kind`)."""

    kind: str
    options: dict[str, Any]
    range: Range
    kind_range: Range | None = None
    max_instances: int | None = None
    option_ranges: dict[str, Range] = field(default_factory=dict)

    @property
    def is_user_task(self) -> bool:
        return ":" in self.kind


@dataclass
class Experiment:
    """A whole experiment file.

    `variants` are the expanded variants (sweeps made into siblings), in dependency order:
    every parent before its children, otherwise in file order. `declared` are the entries as
    written (swept parameters still lists), in file order.
    """

    path: Path
    base: BaseSpec
    variants: list[Variant]
    declared: list[Variant] = field(default_factory=list)
    task: TaskSpec | None = None
    seed: int = 0
    device: str = "auto"
    ops_from: list[Path] = field(default_factory=list)
    ops_from_ranges: list[Range] = field(default_factory=list)
    #: the file's `scan:` (a sensitivity scan of the base model; None: none)
    scan: ScanSpec | None = None
    #: the file's `mlflow:` (log each run's models to MLflow; None: no logging)
    mlflow: MlflowSpec | None = None
    #: the file's `deploy:` (None: no deploy targets)
    deploy: DeploySpec | None = None

    @property
    def root(self) -> Path:
        """The folder relative paths in the file are resolved against."""
        return self.path.parent

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)

    def parent_name(self, variant: Variant) -> str:
        """The parent's model name: the base model's own name for variants `from: base`."""
        return self.base.name if variant.parent == BASE else variant.parent

    def children(self, name: str) -> list[Variant]:
        return [v for v in self.variants if v.parent == name]

    def deploy_for(self, variant: str | None) -> DeploySpec | None:
        """The deploy targets of a variant's model (its own `deploy:`, else the file's), or of the
        base model (`variant` None or empty: the file's)."""
        if variant:
            v = self.variant(variant)
            own = v.deploy if v is not None else None
        else:
            own = self.base.deploy
        spec = own if own is not None else self.deploy
        return spec if spec is not None and spec.targets else None


@dataclass
class ParseResult:
    """What parsing gives: every problem found, and the experiment when there is no error.

    `partial` is a best-effort experiment even when there are errors (invalid parts left out), for
    editor features such as CodeLens while the user types; never run it.
    """

    experiment: Experiment | None
    problems: list[Problem]
    partial: Experiment | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]
