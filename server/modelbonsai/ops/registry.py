"""The one op registry: every compression op, its parameter schema and its documentation.

The registry drives validation of experiment files, completion and hover in the language server,
the JSON Schema of the file format and the CLI's `bonsai ops` listing, so an op is declared once,
here, through :func:`register_op`.
"""

from __future__ import annotations

import fnmatch
import inspect
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ..errors import UserError

if TYPE_CHECKING:
    import torch
    from torch import nn

ParamType = Literal["int", "float", "bool", "str", "enum", "patterns", "int_list"]


class OpError(UserError, ValueError):
    """A user-facing problem with an op: names the op, the parameter and, where known, the layer."""

    def __init__(self, op: str, message: str, *, param: str | None = None, layer: str | None = None):
        self.op = op
        self.param = param
        self.layer = layer
        where = [f"op {op}"]
        if param:
            where.append(f"parameter '{param}'")
        if layer:
            where.append(f"layer '{layer}'")
        super().__init__(f"{', '.join(where)}: {message}")


@dataclass(frozen=True)
class Param:
    """One parameter of an op. `minimum`/`maximum` are inclusive unless `exclusive_*` is set."""

    name: str
    type: ParamType
    doc: str
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    sweepable: bool = True
    #: a value above 0 trains on the task's training batches, which must be data of its own, not
    #: its evaluation instances (the experiment file is checked against the task's options)
    needs_training_data: bool = False

    def interval(self) -> str:
        """The allowed range in interval notation ("[0, 1)", "(0, inf)"), or "" when unbounded."""
        if self.minimum is None and self.maximum is None:
            return ""
        lo = (
            "(-inf"
            if self.minimum is None
            else f"{'(' if self.exclusive_minimum else '['}{_num(self.minimum)}"
        )
        hi = (
            "inf)"
            if self.maximum is None
            else f"{_num(self.maximum)}{')' if self.exclusive_maximum else ']'}"
        )
        return f"{lo}, {hi}"

    def check(self, value: Any) -> str | None:
        """Return a plain message if `value` is not acceptable, else None."""
        t = self.type
        if t == "bool":
            if not isinstance(value, bool):
                return f"'{self.name}' must be true or false, got {_show(value)}"
            return None
        if t == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                return f"'{self.name}' must be an integer, got {_show(value)}"
        elif t == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"'{self.name}' must be a number, got {_show(value)}"
        elif t == "str":
            if not isinstance(value, str):
                return f"'{self.name}' must be a string, got {_show(value)}"
            return None
        elif t == "enum":
            if value not in self.choices:
                return f"'{self.name}' must be one of {', '.join(self.choices)}; got {_show(value)}"
            return None
        elif t == "patterns":
            if isinstance(value, str):
                return None
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                return f"'{self.name}' must be a glob pattern or a list of them, got {_show(value)}"
            return None
        elif t == "int_list":
            if not isinstance(value, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            ):
                return f"'{self.name}' must be a list of integers, got {_show(value)}"
            return None
        return self._check_range(float(value))

    def _check_range(self, v: float) -> str | None:
        lo, hi = self.minimum, self.maximum
        if lo is not None and (v < lo or (self.exclusive_minimum and v == lo)):
            return (
                f"'{self.name}' must be {'>' if self.exclusive_minimum else '>='} {_num(lo)}, got {_num(v)}"
            )
        if hi is not None and (v > hi or (self.exclusive_maximum and v == hi)):
            return (
                f"'{self.name}' must be {'<' if self.exclusive_maximum else '<='} {_num(hi)}, got {_num(v)}"
            )
        return None

    def json_schema(self) -> dict[str, Any]:
        s: dict[str, Any]
        if self.type == "int":
            s = {"type": "integer"}
        elif self.type == "float":
            s = {"type": "number"}
        elif self.type == "bool":
            s = {"type": "boolean"}
        elif self.type == "str":
            s = {"type": "string"}
        elif self.type == "enum":
            s = {"enum": list(self.choices)}
        elif self.type == "patterns":
            s = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
        else:
            s = {"type": "array", "items": {"type": "integer"}}
        if self.minimum is not None:
            s["exclusiveMinimum" if self.exclusive_minimum else "minimum"] = self.minimum
        if self.maximum is not None:
            s["exclusiveMaximum" if self.exclusive_maximum else "maximum"] = self.maximum
        if self.default is not None:
            s["default"] = self.default
        s["description"] = self.doc
        if self.sweepable and self.type not in ("patterns", "int_list"):
            s = {"anyOf": [s, {"type": "array", "items": s, "minItems": 1}], "description": self.doc}
        return s


def _yaml(v: Any) -> str:
    """A default as the user writes it in the experiment file: true, global, 0.5."""
    return str(v).lower() if isinstance(v, bool) else str(v)


def _show(v: Any) -> str:
    return repr(v) if not isinstance(v, str) else f"'{v}'"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


class Encoding(Protocol):
    """How one tensor is stored in an artifact (e.g. packed 4-bit with scales).

    The in-memory model always holds runnable float weights; an encoding knows how to pack them
    for storage and how to project a float tensor back onto the representable set (used to keep
    quantization fixed while fine-tuning).
    """

    kind: str

    def project(self, tensor: torch.Tensor) -> torch.Tensor: ...

    def to_json(self) -> dict[str, Any]: ...


@dataclass
class CompressedModel:
    """A runnable model plus what is needed to store it honestly and rebuild it later.

    - `encodings`: parameter name -> Encoding, for tensors not stored as plain floats.
    - `edits`: structural edits applied on top of the base architecture, in order (each a JSON
      dict with a "kind" key understood by a replayer registered with :func:`register_edit`).
      They are cumulative along the lineage, so any model rebuilds from base + its own edits.
    - `kept_indices`: for structured pruning, parameter name -> {dim: kept indices in the base},
      so comparisons can align layers back to the base.
    - `masks`: parameter name -> bool tensor of weights that must stay zero (pruning), kept fixed
      by `finetune`.
    """

    module: nn.Module
    encodings: dict[str, Encoding] = field(default_factory=dict)
    edits: list[dict[str, Any]] = field(default_factory=list)
    kept_indices: dict[str, dict[int, list[int]]] = field(default_factory=dict)
    masks: dict[str, torch.Tensor] = field(default_factory=dict)


class Task(Protocol):
    """What an op may need from the task (calibration and training data); see tasks.base."""

    def calibration_batches(self, n: int, batch_size: int, seed: int) -> Iterator[Any]: ...

    def training_batches(self, batch_size: int, seed: int) -> Iterator[Any]: ...

    def forward(self, model: nn.Module, batch: Any) -> torch.Tensor: ...

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor: ...


@dataclass
class OpContext:
    """Everything an op may use besides the model and its parameters."""

    device: torch.device
    seed: int
    task: Task | None = None
    parent: CompressedModel | None = None
    progress: Callable[[float, str], None] = lambda fraction, message: None
    cancelled: Callable[[], bool] = lambda: False
    # Layers the op left as they were because their shape does not fit it (layer -> why): a
    # 1-channel stem conv under 2:4 pruning must not fail the whole variant. The runner lists
    # them in the run's output and stores them with the model (runner.SKIPPED_METRIC).
    skipped: dict[str, str] = field(default_factory=dict)

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise Cancelled()

    def skip_layer(self, op: str, layer: str, why: str, *, strict: bool, param: str | None = None) -> None:
        """Leave `layer` unchanged because `why`; with `strict` (the op's `strict: true`) fail instead."""
        if strict:
            raise OpError(
                op, f"{why} (strict: true; without it the layer is skipped)", param=param, layer=layer
            )
        self.skipped[layer] = why


class Cancelled(Exception):
    """Raised between steps when the user cancelled the job."""


OpFn = Callable[[CompressedModel, dict[str, Any], OpContext], CompressedModel]


@dataclass(frozen=True)
class OpDef:
    name: str
    family: str
    summary: str
    doc: str
    params: tuple[Param, ...]
    fn: OpFn
    needs_task: bool = False
    changes_structure: bool = False
    source: str = "builtin"
    # Whether the op reads the model its variant starts from (`OpContext.parent`) besides its
    # input: that model is then part of what makes its result (the step fingerprint covers it).
    # A function of the resolved params where it depends on them; None: not declared: a built-in
    # op that does declares it, while a user op may read it without saying so (assumed).
    reads_parent: bool | Callable[[dict[str, Any]], bool] | None = None

    def reads_parent_for(self, params: dict[str, Any]) -> bool:
        """Whether this op, with these resolved params, reads `OpContext.parent`."""
        reads = self.reads_parent
        if reads is None:
            return self.source != "builtin"
        return bool(reads(params)) if callable(reads) else reads

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def resolve(self, given: dict[str, Any]) -> dict[str, Any]:
        """Fill defaults and check every value; raises OpError on the first problem."""
        problems = self.problems(given)
        if problems:
            param, message = problems[0]
            raise OpError(self.name, message, param=param)
        out = {p.name: p.default for p in self.params if p.default is not None}
        out.update(given)
        return out

    def problems(self, given: dict[str, Any]) -> list[tuple[str | None, str]]:
        """Every problem with a (non-swept) parameter dict, as (param name or None, message)."""
        found: list[tuple[str | None, str]] = []
        known = {p.name for p in self.params}
        for key in given:
            if key not in known:
                hint = _closest(key, known)
                found.append(
                    (
                        key,
                        f"unknown parameter '{key}' for {self.name}"
                        + (f"; did you mean '{hint}'?" if hint else ""),
                    )
                )
        for p in self.params:
            if p.name in given:
                msg = p.check(given[p.name])
                if msg:
                    found.append((p.name, msg))
            elif p.required:
                found.append((None, f"{self.name} needs parameter '{p.name}'"))
        return found

    def markdown(self) -> str:
        """Hover and completion documentation. Parameters as a list, not a table: a hover is
        narrow, and a four-column table's long cells were cut off at its edge."""
        lines = [f"**{self.name}** — {self.summary}", "", self.doc, "", "**Parameters**", ""]
        for p in self.params:
            typ = " / ".join(f"`{c}`" for c in p.choices) if p.type == "enum" else p.type
            rng = f" in {p.interval()}" if p.interval() else ""
            default = (
                "required" if p.required else ("" if p.default is None else f"default `{_yaml(p.default)}`")
            )
            head = f"{typ}{rng}" + (f", {default}" if default else "")
            lines.append(f"- `{p.name}` ({head}): {p.doc}")
        return "\n".join(lines)


def _closest(word: str, options: Sequence[str] | set[str]) -> str | None:
    import difflib

    m = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return m[0] if m else None


_OPS: dict[str, OpDef] = {}
EditReplayer = Callable[["nn.Module", dict[str, Any]], None]
_EDITS: dict[str, EditReplayer] = {}


def register_op(
    name: str,
    *,
    family: str,
    summary: str,
    params: Sequence[Param] = (),
    needs_task: bool = False,
    changes_structure: bool = False,
    source: str = "builtin",
    reads_parent: bool | Callable[[dict[str, Any]], bool] | None = None,
) -> Callable[[OpFn], OpFn]:
    """Decorator: register `fn` as op `name`. The docstring of `fn` is its documentation."""

    def wrap(fn: OpFn) -> OpFn:
        if name in _OPS and _OPS[name].fn is not fn:
            raise ValueError(f"op '{name}' is registered twice")
        _OPS[name] = OpDef(
            name=name,
            family=family,
            summary=summary,
            # cleandoc: a docstring's continuation lines are indented, which Markdown (hover,
            # completion, the schema's markdownDescription) renders as a code block
            doc=inspect.cleandoc(fn.__doc__ or summary),
            params=tuple(params),
            fn=fn,
            needs_task=needs_task,
            changes_structure=changes_structure,
            source=source,
            reads_parent=reads_parent,
        )
        return fn

    return wrap


def register_edit(kind: str) -> Callable[[EditReplayer], EditReplayer]:
    """Decorator: register how to replay a structural edit of `kind` on a fresh base module."""

    def wrap(fn: EditReplayer) -> EditReplayer:
        _EDITS[kind] = fn
        return fn

    return wrap


def replay_edits(module: nn.Module, edits: Sequence[dict[str, Any]]) -> None:
    for edit in edits:
        kind = edit.get("kind")
        if kind not in _EDITS:
            raise ValueError(f"artifact needs structural edit '{kind}', which no registered op provides")
        _EDITS[str(kind)](module, edit)


def get_op(name: str) -> OpDef | None:
    _ensure_builtins()
    return _OPS.get(name)


def all_ops() -> list[OpDef]:
    _ensure_builtins()
    return sorted(_OPS.values(), key=lambda o: o.name)


def closest_op(name: str) -> str | None:
    _ensure_builtins()
    return _closest(name, set(_OPS))


_loaded = False
# The language server asks for ops from several threads at once: the first caller imports the
# built-in modules while the others wait, so nobody sees a half-filled registry.
_load_lock = threading.RLock()


def _ensure_builtins() -> None:
    global _loaded
    if _loaded:
        return
    with _load_lock:
        if not _loaded:
            from . import builtin  # noqa: F401  (importing registers the built-in ops)

            _loaded = True


def match_names(names: Sequence[str], patterns: str | Sequence[str]) -> list[str]:
    """Names matching any glob pattern (fnmatch, `*` crosses dots)."""
    pats = [patterns] if isinstance(patterns, str) else list(patterns)
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in pats)]
