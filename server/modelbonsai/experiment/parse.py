"""`parse_experiment`: YAML text -> typed Experiment plus every problem, with exact positions."""

from __future__ import annotations

import difflib
import importlib.util
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..deploy.targets import TARGETS, target_names
from ..ops.registry import get_op
from . import taskinfo
from .keys import DEPLOY_KEYS, DEVICES, DTYPES, keys_of
from .mlflow_section import parse_mlflow
from .model import (
    BASE,
    BaseSpec,
    DeploySpec,
    Experiment,
    OpCall,
    ParseResult,
    Problem,
    Range,
    TaskSpec,
    Variant,
)
from .opcalls import parse_op, user_op_names
from .problems import Collector, did_you_mean
from .scan_section import parse_scan
from .sweeps import MAX_VARIANTS, axes_of, count, expand, placeholders
from .yamlnodes import (
    MappingNode,
    Node,
    ScalarNode,
    SequenceNode,
    YamlSyntaxError,
    compose,
    is_null,
    node_range,
    to_value,
    type_name,
)

_log = logging.getLogger(__name__)
_INVALID = "\x00invalid"  # a `from:` that is not a name (already reported)
_FILE_FN = re.compile(r"^(?P<file>.+\.py):(?P<fn>[A-Za-z_]\w*)$")
_MODULE_FN = re.compile(r"^(?P<module>[A-Za-z_]\w*(\.[A-Za-z_]\w*)*):(?P<fn>[A-Za-z_]\w*)$")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_BAD_NAME = re.compile(r"[/\\\x00-\x1f]")
_TORCH_SUFFIXES = (".pt", ".pth", ".bin")


def load_experiment(path: Path | str) -> ParseResult:
    """Read and parse an experiment file; an unreadable file is a problem, not an exception."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        return ParseResult(
            None, [Problem(p, Range(0, 0, 0, 0), f"cannot read {p}: {reason}", "error", "missing-path")]
        )
    return parse_experiment(text, p)


def parse_experiment(text: str, path: Path | str) -> ParseResult:
    """Parse experiment text. Paths in it resolve against `path`'s folder. Never raises for bad
    input: every problem is reported, each at the exact node (the value for bad values, the key
    for unknown keys)."""
    path = Path(path)
    c = Collector(path, text)
    try:
        root_node = compose(text)
    except YamlSyntaxError as e:
        return ParseResult(None, [Problem(path, e.range, e.message, "error", "yaml-syntax")])
    if root_node is None or is_null(root_node):
        c.add(
            Range(0, 0, 0, 0),
            "the experiment file is empty: it needs `base` and `variants`",
            "missing-required",
        )
        return ParseResult(None, c.problems)
    if not isinstance(root_node, MappingNode):
        c.add(
            root_node,
            f"an experiment file is a mapping (base:, task:, variants:), got {type_name(root_node)}",
            "wrong-type",
        )
        return ParseResult(None, c.problems)
    try:
        partial = _Parser(c, path).run(root_node)
    except Exception as e:  # a bug (ours, or an op module failing to import) must not kill the editor
        _log.exception("checking %s failed", path)
        c.add(Range(0, 0, 0, 0), f"Bonsai could not check this file: {type(e).__name__}: {e}", "internal")
        partial = None
    c.problems.sort(key=lambda p: (p.range.start_line, p.range.start_col))
    ok = not any(p.severity == "error" for p in c.problems)
    return ParseResult(partial if ok else None, c.problems, partial)


@dataclass(eq=False)  # compared by identity
class _Decl:
    """A declared variant while the tree is being resolved."""

    variant: Variant
    name_node: Node | None
    from_node: Node | None
    from_value: str
    index: int
    expanded: list[Variant] = field(default_factory=list)
    done: bool = False
    # a problem was reported inside it (its ops): what follows from that (a placeholder whose
    # sweep was misspelt, a child naming one of its names) is not reported again
    broken: bool = False


class _Parser:
    def __init__(self, c: Collector, path: Path):
        self.c = c
        self.path = path
        self.root = path.absolute().parent
        self.user_ops: set[str] = set()
        self.has_task = False
        self.task_spec: TaskSpec | None = None

    # -- top level ------------------------------------------------------------------------------
    def run(self, node: MappingNode) -> Experiment | None:
        c = self.c
        items = c.mapping_items(node, keys_of("top"), "the experiment file")
        seed = 0
        if "seed" in items:
            v = to_value(items["seed"][1])
            if isinstance(v, int) and not isinstance(v, bool):
                seed = v
            else:
                c.add(
                    items["seed"][1],
                    f"'seed' must be an integer, got {type_name(items['seed'][1])}",
                    "wrong-type",
                )
        device = "auto"
        if "device" in items:
            dn = items["device"][1]
            dv = to_value(dn)
            if isinstance(dv, str) and _DEVICE.match(dv):
                device = dv
            else:
                c.add(
                    dn,
                    f"'device' must be one of {', '.join(DEVICES)} (or cuda:N), got {type_name(dn)}",
                    "out-of-range" if isinstance(dv, str) else "wrong-type",
                )
        ops_from, ops_from_ranges = self.ops_from(items.get("ops_from"))
        base = self.base(items.get("base"), node)
        task = self.task(items["task"]) if "task" in items else None
        self.has_task = "task" in items and not is_null(items["task"][1])
        self.task_spec = task
        scan = parse_scan(c, items["scan"], self.user_ops, seed) if "scan" in items else None
        mlflow = parse_mlflow(c, items["mlflow"]) if "mlflow" in items else None
        deploy = self.deploy(items["deploy"]) if "deploy" in items else None
        declared, variants = self.variants(items.get("variants"), node, base)
        if base is None:
            return None
        return Experiment(
            deploy=deploy,
            path=self.path,
            base=base,
            variants=variants,
            declared=declared,
            task=task,
            seed=seed,
            device=device,
            ops_from=ops_from,
            ops_from_ranges=ops_from_ranges,
            scan=scan,
            mlflow=mlflow,
        )

    def _path(self, node: Node, value: str, what: str, *, want: str = "any") -> Path:
        """Resolve a path against the experiment's folder, reporting it when it does not exist
        (or cannot be a path at all: too long, a NUL character)."""
        p = _resolve(value, self.root)
        unusable = _unusable(p)
        if unusable:
            self.c.add(node, f"{what} '{_short(value)}' cannot be a path: {unusable}", "missing-path")
        elif not _exists(p):
            self.c.add(
                node, f"{what} '{_short(value)}' does not exist (looked for {_short(str(p))})", "missing-path"
            )
        elif want == "file" and not _is_file(p):
            self.c.add(node, f"{what} '{_short(value)}' is a folder; expected a file", "missing-path")
        return p

    def _string(
        self, items: dict[str, tuple[Node, Node]], key: str, where: str, *, name: bool = False
    ) -> tuple[str | None, Node | None]:
        """A string value. For names (`name: 50`, `from: 8bit`) any plain scalar is taken as written."""
        if key not in items:
            return None, None
        n = items[key][1]
        v = to_value(n)
        if name and isinstance(n, ScalarNode) and v is not None and not isinstance(v, bool):
            v = n.value
        if not isinstance(v, str) or not v.strip():
            self.c.add(n, f"'{key}' in {where} must be a non-empty string, got {type_name(n)}", "wrong-type")
            return None, n
        return v, n

    # -- ops_from -------------------------------------------------------------------------------
    def ops_from(self, entry: tuple[Node, Node] | None) -> tuple[list[Path], list[Range]]:
        if entry is None:
            return [], []
        node = entry[1]
        nodes = node.value if isinstance(node, SequenceNode) else [node]
        paths: list[Path] = []
        ranges: list[Range] = []
        for n in nodes:
            v = to_value(n)
            if not isinstance(n, ScalarNode) or not isinstance(v, str):
                self.c.add(n, f"'ops_from' lists Python files, got {type_name(n)}", "wrong-type")
                continue
            if not v.endswith(".py"):
                self.c.add(n, f"'ops_from' lists Python files (.py), got '{v}'", "wrong-type")
                continue
            p = self._path(n, v, "ops file", want="file")
            paths.append(p)
            ranges.append(node_range(n))
            if _is_file(p):
                names = user_op_names(p)
                if isinstance(names, str):
                    self.c.add(n, names, "wrong-type")
                else:
                    self.user_ops |= names
        return paths, ranges

    # -- deploy ---------------------------------------------------------------------------------
    def deploy(self, entry: tuple[Node, Node]) -> DeploySpec | None:
        """`deploy: [onnxruntime, executorch]`, `deploy: {targets: [...], tolerance: 0.001}`, or
        `deploy: []` / `deploy:` (none: a variant's turns the file's off)."""
        c = self.c
        node = entry[1]
        if is_null(node):
            return DeploySpec((), None, node_range(node))
        targets_node: Node | None = node
        tolerance: float | None = None
        if isinstance(node, MappingNode):
            items = c.mapping_items(node, DEPLOY_KEYS, "deploy")
            targets_node = items["targets"][1] if "targets" in items else None
            if targets_node is None and not c.misspelt(node, "targets"):  # `targts:` is reported once
                c.add(entry[0], "'deploy' needs `targets:` (a list of runtimes)", "missing-required")
            if "tolerance" in items:
                tn = items["tolerance"][1]
                tv = to_value(tn)
                if isinstance(tv, (int, float)) and not isinstance(tv, bool) and tv > 0:
                    tolerance = float(tv)
                else:
                    c.add(
                        tn,
                        f"'tolerance' is a positive number (relative to the largest output), got {type_name(tn)}",
                        "wrong-type"
                        if not isinstance(tv, (int, float)) or isinstance(tv, bool)
                        else "out-of-range",
                    )
        elif not isinstance(node, (SequenceNode, ScalarNode)):
            c.add(
                node,
                f"'deploy' lists targets ({', '.join(target_names())}), got {type_name(node)}",
                "wrong-type",
            )
            return None
        targets: list[str] = []
        if targets_node is not None and not is_null(targets_node):
            nodes = targets_node.value if isinstance(targets_node, SequenceNode) else [targets_node]
            for n in nodes:
                v = to_value(n)
                if not isinstance(n, ScalarNode) or not isinstance(v, str):
                    c.add(
                        n,
                        f"a deploy target is a name ({', '.join(target_names())}), got {type_name(n)}",
                        "wrong-type",
                    )
                elif v not in TARGETS:
                    hint = did_you_mean(v, target_names()) or f"; the targets are {', '.join(target_names())}"
                    c.add(n, f"unknown deploy target '{_short(v)}'{hint}", "out-of-range")
                elif v in targets:
                    c.add(n, f"deploy target '{v}' is listed twice", "duplicate-name")
                else:
                    targets.append(v)
        return DeploySpec(tuple(targets), tolerance, node_range(node))

    # -- base -----------------------------------------------------------------------------------
    def base(self, entry: tuple[Node, Node] | None, top: MappingNode) -> BaseSpec | None:
        c = self.c
        if entry is None:
            c.add(
                c.head(top),
                "the experiment file needs a `base:` section (the model to compress)",
                "missing-required",
            )
            return None
        key, node = entry
        if not isinstance(node, MappingNode):
            c.add(
                node if not is_null(node) else key,
                "'base' must be a mapping with `load:` (and `name:`)",
                "wrong-type",
            )
            return None
        items = c.mapping_items(node, keys_of("base"), "base")
        load, load_node = self._string(items, "load", "base")
        if "load" not in items:
            c.add(
                key,
                "base needs `load:` (a Hugging Face folder, a .safetensors file with `factory`, "
                "`file.py:function` or `package.module:function`)",
                "missing-required",
            )
        factory, factory_node = self._string(items, "factory", "base")
        kind, load_path = "file", None
        if load is not None and load_node is not None:
            kind, load_path = self._load_kind(load, load_node, factory is not None)
        if factory is not None and factory_node is not None:
            self._callable(factory, factory_node, "factory")
        args: dict[str, Any] | None = None
        if "args" in items:
            an = items["args"][1]
            if isinstance(an, MappingNode):
                value = to_value(an)
                args = value if isinstance(value, dict) else None
                if args is not None and not all(isinstance(k, str) for k in args):
                    c.add(an, "the keys of 'args' are argument names (strings)", "wrong-type")
            elif not is_null(an):
                c.add(an, f"'args' must be a mapping of keyword arguments, got {type_name(an)}", "wrong-type")
        dtype, dtype_node = self._string(items, "dtype", "base")
        if dtype is not None and dtype_node is not None and dtype not in DTYPES:
            c.add(dtype_node, f"'dtype' must be one of {', '.join(DTYPES)}, got '{dtype}'", "out-of-range")
            dtype = None
        name, name_node = self._string(items, "name", "base", name=True)
        if name is not None and name_node is not None and _bad_name(name):
            c.add(name_node, _bad_name_message("base", name), "wrong-type")
            name = None
        if name is None:
            name = _default_base_name(load or "base", kind)
            if _bad_name(name):  # a load path's last part with control characters
                name = "base-model"
        if name == BASE:
            name = "base-model"
        deploy = self.deploy(items["deploy"]) if "deploy" in items else None
        return BaseSpec(
            deploy=deploy,
            name=name,
            load=load or "",
            range=node_range(node),
            factory=factory,
            load_kind=kind,
            load_path=load_path,
            load_range=node_range(load_node) if load_node is not None else None,
            factory_range=node_range(factory_node) if factory_node is not None else None,
            name_range=node_range(name_node) if name_node is not None else None,
            args=args,
            dtype=dtype,
        )

    def _load_kind(self, load: str, node: Node, has_factory: bool) -> tuple[str, Path | None]:
        m = _FILE_FN.match(load)
        if m:
            return "file-function", self._path(node, m["file"], "model file", want="file")
        if _MODULE_FN.match(load):
            self._module(load, node)
            return "module-function", None
        p = self._path(node, load, "model")
        if not _exists(p):
            return "file", p
        if _is_dir(p):
            if not _is_file(p / "config.json") and not has_factory:
                self.c.add(
                    node,
                    f"folder '{load}' has no config.json, so it is not a Hugging Face model folder; "
                    "add `factory:` to build the model",
                    "missing-path",
                )
            return "hf-folder", p
        suffix = p.suffix.lower()
        if suffix == ".safetensors" or suffix in _TORCH_SUFFIXES:
            if not has_factory and not _is_file(p.parent / "config.json"):
                self.c.add(
                    node,
                    f"'{load}' holds only weights: add `factory:` (file.py:function) that builds the "
                    "model, or put its config.json beside it",
                    "missing-required",
                )
            return ("safetensors" if suffix == ".safetensors" else "torch-file"), p
        if suffix == ".py":
            self.c.add(
                node,
                f"'{load}' is a Python file: name the function that builds the model, e.g. '{load}:build'",
                "wrong-type",
            )
            return "file", p
        self.c.add(
            node,
            f"cannot load a model from '{load}': use a Hugging Face folder, a .safetensors file, "
            "file.py:function or package.module:function",
            "wrong-type",
        )
        return "file", p

    def _callable(self, value: str, node: Node, what: str) -> None:
        m = _FILE_FN.match(value)
        if m:
            self._path(node, m["file"], f"{what} file", want="file")
        elif _MODULE_FN.match(value):
            self._module(value, node)
        else:
            self.c.add(
                node,
                f"'{what}' must be 'file.py:function' or 'package.module:function', got '{value}'",
                "wrong-type",
            )

    def _module(self, ref: str, node: Node) -> None:
        """`pkg.module:function`: the top package must be beside the file or installed (not imported
        here: importing runs code)."""
        top = ref.split(":", 1)[0].split(".", 1)[0]
        if _is_file(self.root / f"{top}.py") or _is_dir(self.root / top):
            return
        try:
            found = importlib.util.find_spec(top) is not None
        except (ImportError, ValueError, OSError):
            found = False
        if not found:
            self.c.add(
                node,
                f"module '{top}' is neither a file beside the experiment ({top}.py) nor an installed package",
                "missing-path",
            )

    # -- task -----------------------------------------------------------------------------------
    def task(self, entry: tuple[Node, Node]) -> TaskSpec | None:
        c = self.c
        key, node = entry
        if is_null(node):
            return None
        if not isinstance(node, MappingNode):
            c.add(node, f"'task' must be a mapping with `kind:`, got {type_name(node)}", "wrong-type")
            return None
        items = c.mapping_items(node, None, "task")
        kind, kind_node = self._string(items, "kind", "task")
        if "kind" not in items:
            kinds = ", ".join(taskinfo.builtin_kinds() or taskinfo.KNOWN_KINDS)
            c.add(key, f"task needs `kind:` ({kinds}, or my_tasks.py:MyTask)", "missing-required")
        declared: dict[str, tuple[str, str]] | None = None
        if kind is not None and kind_node is not None:
            declared = self._task_kind(kind, kind_node)
        max_instances = None
        options: dict[str, Any] = {}
        option_ranges: dict[str, Range] = {}
        for name, (k, v) in items.items():
            if name == "kind":
                continue
            value = to_value(v)
            if name == "max_instances":
                if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
                    max_instances = value
                elif value is not None:
                    code = (
                        "out-of-range"
                        if isinstance(value, int) and not isinstance(value, bool)
                        else "wrong-type"
                    )
                    c.add(v, f"'max_instances' must be an integer >= 1, got {type_name(v)}", code)
                continue
            typ = None
            if declared is not None:
                if name not in declared:
                    allowed = [*declared, *taskinfo.COMMON_TASK_KEYS]
                    c.add(
                        k,
                        f"unknown option '{name}' for task {kind}{did_you_mean(name, allowed)}",
                        "unknown-key",
                    )
                    continue
                typ = declared[name][0]
                expected = taskinfo.check_option_type(typ, value)
                if expected and value is not None:
                    c.add(v, f"task option '{name}' must be {expected}, got {type_name(v)}", "wrong-type")
                    continue
            if taskinfo.is_path_option(name, typ) and isinstance(value, str):
                self._path(v, value, f"task {name}")
            options[name] = value
            option_ranges[name] = node_range(v)
        return TaskSpec(
            kind=kind or "",
            options=options,
            range=node_range(node),
            kind_range=node_range(kind_node) if kind_node is not None else None,
            max_instances=max_instances,
            option_ranges=option_ranges,
        )

    def _task_kind(self, kind: str, node: Node) -> dict[str, tuple[str, str]] | None:
        if ":" in kind:
            m = _FILE_FN.match(kind)
            if m:
                self._path(node, m["file"], "task file", want="file")
            elif not _MODULE_FN.match(kind):
                self.c.add(
                    node,
                    f"a user task is 'file.py:ClassName' or 'package.module:ClassName', got '{kind}'",
                    "wrong-type",
                )
            return None
        if taskinfo.tasks_available() and kind not in taskinfo.builtin_kinds():
            kinds = taskinfo.builtin_kinds()
            self.c.add(
                node,
                f"unknown task kind '{kind}'{did_you_mean(kind, kinds)} (built in: {', '.join(kinds)}; "
                "or my_tasks.py:MyTask)",
                "unknown-task",
            )
            return None
        return taskinfo.task_options(kind)

    # -- variants -------------------------------------------------------------------------------
    def variants(
        self, entry: tuple[Node, Node] | None, top: MappingNode, base: BaseSpec | None
    ) -> tuple[list[Variant], list[Variant]]:
        c = self.c
        if entry is None:
            c.add(
                c.head(top),
                "the experiment file needs `variants:` (a list of compressed models to make)",
                "missing-required",
            )
            return [], []
        node = entry[1]
        if is_null(node):
            return [], []
        if not isinstance(node, SequenceNode):
            c.add(node, f"'variants' must be a list (`- name: ...`), got {type_name(node)}", "wrong-type")
            return [], []
        decls: list[_Decl] = []
        for i, item in enumerate(node.value):
            d = self.variant(item, i, base)
            if d is not None:
                decls.append(d)
        return [d.variant for d in decls], self.resolve(decls, base)

    def variant(self, item: Node, index: int, base: BaseSpec | None) -> _Decl | None:
        c = self.c
        if not isinstance(item, MappingNode):
            c.add(
                item,
                f"each variant is a mapping with `name:`, `from:` and `ops:`, got {type_name(item)}",
                "wrong-type",
            )
            return None
        items = c.mapping_items(item, keys_of("variant"), "a variant")
        name, name_node = self._string(items, "name", "a variant", name=True)
        if "name" not in items and not c.misspelt(item, "name"):
            c.add(c.head(item), "this variant needs `name:`", "missing-required")
        if name is not None and name_node is not None:
            if _bad_name(name):
                c.add(name_node, _bad_name_message("variant", name), "wrong-type")
                name = None
            elif name == BASE or (base is not None and name == base.name):
                c.add(
                    name_node, f"'{name}' names the base model; choose another variant name", "reserved-name"
                )
                name = None
        parent, from_node = self._string(items, "from", "a variant", name=True)
        from_value = parent or BASE
        if "from" in items and parent is None:
            from_value = _INVALID  # reported already; keeps the variant out of the tree
        ops: list[OpCall] = []
        before = len(c.problems)
        if "ops" not in items:
            if not c.misspelt(item, "ops"):  # `opss:` is reported once, as an unknown key
                c.add(
                    name_node if name_node is not None else c.head(item),
                    f"variant '{name or '?'}' needs `ops:` (the ops that make it from its parent)",
                    "missing-required",
                )
        else:
            ops_node = items["ops"][1]
            if isinstance(ops_node, SequenceNode) and ops_node.value:
                for op_item in ops_node.value:
                    call = parse_op(c, op_item, self.user_ops)
                    if call is not None:
                        ops.append(call)
                        self._check_task_use(call)
            elif isinstance(ops_node, SequenceNode) or is_null(ops_node):
                c.add(
                    items["ops"][0],
                    f"variant '{name or '?'}' has no ops; list at least one",
                    "missing-required",
                )
            else:
                c.add(
                    ops_node,
                    f"'ops' must be a list (`- op.name: {{...}}`), got {type_name(ops_node)}",
                    "wrong-type",
                )
        broken = len(c.problems) > before
        description, _ = self._string(items, "description", "a variant")
        seed = None
        if "seed" in items:
            sv = to_value(items["seed"][1])
            if isinstance(sv, int) and not isinstance(sv, bool):
                seed = sv
            else:
                c.add(
                    items["seed"][1],
                    f"'seed' must be an integer, got {type_name(items['seed'][1])}",
                    "wrong-type",
                )
        deploy = self.deploy(items["deploy"]) if "deploy" in items else None
        if name is None:
            return None
        v = Variant(
            deploy=deploy,
            name=name,
            parent=parent or BASE,
            ops=ops,
            range=node_range(item),
            name_range=node_range(name_node) if name_node is not None else node_range(item),
            parent_range=node_range(from_node) if from_node is not None else None,
            description=description,
            seed=seed,
        )
        return _Decl(v, name_node, from_node, from_value, index, broken=broken)

    def _check_task_use(self, call: OpCall) -> None:
        """The op needs a task, and (for distillation) training data the task has of its own."""
        op = get_op(call.name)
        if op is not None and op.needs_task and not self.has_task:
            self.c.add(
                call.name_range,
                f"{call.name} needs data from a task (calibration or training batches); "
                "add a `task:` section",
                "missing-required",
            )
        task = self.task_spec
        if op is None or task is None or not taskinfo.trains_on_evaluation(task.kind, task.options):
            return
        for p in op.params:
            value = call.params.get(p.name)
            values = value if isinstance(value, list) else [value]
            if p.needs_training_data and any(_positive(v) for v in values):
                where = call.value_ranges.get(p.name, call.name_range)
                self.c.add(
                    where,
                    f"{call.name} with {p.name} > 0 trains on the task's training batches, and this "
                    f"{task.kind} task has no training data of its own (it would fit its evaluation "
                    "instances): give the task `train:`",
                    "task-data",
                )

    def resolve(self, decls: list[_Decl], base: BaseSpec | None) -> list[Variant]:
        """Link parents, expand sweeps (parents first, then file order), report names and loops."""
        c = self.c
        by_name: dict[str, _Decl] = {}
        for d in decls:
            if d.variant.name in by_name:
                first = by_name[d.variant.name].variant.name_range.start_line + 1
                c.add(
                    d.variant.name_range,
                    f"variant name '{d.variant.name}' is already used (line {first})",
                    "duplicate-name",
                )
                d.done = True  # the second declaration is left out
                continue
            by_name[d.variant.name] = d
        base_names = {BASE} | ({base.name} if base is not None else set())
        for d in decls:
            if d.from_value in base_names:
                d.from_value = d.variant.parent = BASE
        expanded_by_name: dict[str, tuple[_Decl, Variant]] = {}
        out: list[Variant] = []
        progress = True
        while progress:
            progress = False
            for d in decls:
                if d.done:
                    continue
                targets = self._targets(d, by_name, expanded_by_name)
                if targets is None:
                    continue
                d.done = True
                progress = True
                inherited_keys = list(targets[0][1]) if targets else []
                axes = axes_of(d.variant, inherited_keys)
                if not self._check_template(d, inherited_keys + [a.key for a in axes], quiet=d.broken):
                    continue
                total = len(out) + len(targets) * count(axes)
                if total > MAX_VARIANTS:
                    c.add(
                        d.variant.name_range,
                        f"with its sweeps this file would make {total} variants (the limit is "
                        f"{MAX_VARIANTS}); sweep fewer values",
                        "sweep",
                    )
                    continue
                for parent_name, inherited in targets:
                    for v in expand(d.variant, parent_name, inherited, axes):
                        if v.name in expanded_by_name or v.name in base_names:
                            other = expanded_by_name.get(v.name)
                            where = f" (line {other[1].name_range.start_line + 1})" if other else ""
                            c.add(
                                d.variant.name_range,
                                f"the sweep makes the name '{v.name}', already used{where}; "
                                "put the swept parameters in the name, e.g. 'prune-{sparsity}'",
                                "duplicate-name",
                            )
                            continue
                        expanded_by_name[v.name] = (d, v)
                        d.expanded.append(v)
                        out.append(v)
                break  # restart from the top: keeps file order among ready variants
        self._report_unresolved([d for d in decls if not d.done], by_name, expanded_by_name, base_names)
        return out

    def _targets(
        self, d: _Decl, by_name: dict[str, _Decl], expanded: dict[str, tuple[_Decl, Variant]]
    ) -> list[tuple[str, dict[str, Any]]] | None:
        """(parent name, inherited sweep values) per parent, or None while the parent is not ready."""
        if d.from_value == BASE:
            return [(BASE, {})]
        parent = by_name.get(d.from_value)
        if parent is not None and parent is not d:
            if not parent.done or not parent.expanded:
                return None
            if len(parent.expanded) == 1 and not parent.expanded[0].sweep_values:
                return [(parent.expanded[0].name, {})]
            return [(v.name, dict(v.sweep_values)) for v in parent.expanded]
        if d.from_value in expanded:
            return [(d.from_value, {})]
        return None

    def _check_template(self, d: _Decl, keys: list[str], *, quiet: bool = False) -> bool:
        """Placeholders in a name must be swept keys (its own, or inherited from a swept parent).
        `quiet`: the variant's ops have a problem already (`sparsty: [...]` leaves `{sparsity}`
        unswept): one typo, one diagnostic."""
        bad = [ph for ph in placeholders(d.variant.name) if ph not in keys]
        for ph in [] if quiet else bad:
            swept = ", ".join(keys) or "nothing is swept"
            self.c.add(
                d.variant.name_range,
                f"'{{{ph}}}' in the name is not a swept parameter (swept: {swept})",
                "sweep",
            )
        return not bad

    def _report_unresolved(
        self,
        pending: list[_Decl],
        by_name: dict[str, _Decl],
        expanded: dict[str, tuple[_Decl, Variant]],
        base_names: set[str],
    ) -> None:
        c = self.c
        pending_ids = {id(d) for d in pending}
        reported: set[int] = set()
        for d in pending:
            if id(d) in reported or d.from_value == _INVALID:
                continue
            where = d.from_node if d.from_node is not None else d.variant.name_range
            parent = by_name.get(d.from_value)
            if parent is None:
                if self._follows_from_a_broken_one(d, by_name, expanded):
                    continue
                # never itself, nor its own sweep's names: 'global-0.7-bn' is not a typo of
                # 'global-0.7-bn-int8', the variant that names it
                own = {d.variant.name, *(v.name for v in d.expanded)}
                choices = [n for n in (*sorted(base_names), *by_name, *expanded) if n not in own]
                c.add(
                    where,
                    f"unknown parent '{d.from_value}'{did_you_mean(d.from_value, choices)}: `from` names "
                    "`base` or another variant",
                    "unknown-parent",
                )
                continue
            # Follow the chain: a loop reports every member; a variant below a loop, nothing more.
            chain: list[_Decl] = [d]
            cur: _Decl | None = parent
            while cur is not None and id(cur) in pending_ids and cur not in chain:
                chain.append(cur)
                cur = by_name.get(cur.from_value)
            if cur is not None and cur in chain:
                loop = chain[chain.index(cur) :]
                text = " → ".join([x.variant.name for x in loop] + [cur.variant.name])
                for x in loop:
                    if id(x) not in reported:
                        reported.add(id(x))
                        rng = x.from_node if x.from_node is not None else x.variant.name_range
                        c.add(rng, f"variants derive from each other in a loop: {text}", "cycle")

    @staticmethod
    def _follows_from_a_broken_one(
        d: _Decl, by_name: dict[str, _Decl], expanded: dict[str, tuple[_Decl, Variant]]
    ) -> bool:
        """`d`'s unknown parent is a problem reported at another declaration: one of the names a
        sweep that did not expand would have made (`global-0.7-bn` of `global-{sparsity}-bn`), or
        closest to a declaration that is itself broken (its name's placeholder misspelt)."""
        failed = [x for x in by_name.values() if not x.expanded and x is not d]
        for x in failed:
            pattern = re.escape(x.variant.name)
            for ph in placeholders(x.variant.name):
                pattern = pattern.replace(re.escape(f"{{{ph}}}"), ".+")
            if pattern != re.escape(x.variant.name) and re.fullmatch(pattern, d.from_value):
                return True
        names = [n for n in (*by_name, *expanded) if n != d.variant.name]
        close = difflib.get_close_matches(d.from_value, names, n=1, cutoff=0.6)
        return bool(close) and close[0] in by_name and by_name[close[0]] in failed


def _bad_name(name: str) -> bool:
    """One rule for the base's and the variants' names: model names are shown in paths, trees and
    command lines, so no slashes (no `../x` or `a/b`), no control characters, not `.` or `..`."""
    return bool(_BAD_NAME.search(name)) or name.strip() in (".", "..")


def _bad_name_message(what: str, name: str) -> str:
    return f"{what} name '{_short(name)}' must not contain slashes or control characters, nor be '.' or '..'"


def _short(text: str, limit: int = 80) -> str:
    """A value as quoted in a message: long ones cut (a message with a 100 KB path helps nobody)."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def _resolve(value: str, root: Path) -> Path:
    try:
        p = Path(value).expanduser()
    except RuntimeError:  # `~someone` with no such user: taken as written
        p = Path(value)
    return p if p.is_absolute() else root / p


def _unusable(p: Path) -> str | None:
    """Why the OS refuses `p` as a path (name too long, a NUL character, a symlink loop), or None."""
    try:
        p.stat()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None  # an ordinary path: reported as missing (or found) by the caller
    except OSError as e:
        return e.strerror or str(e)
    except ValueError:
        return "it contains a NUL character"
    return None


# Path probes that answer False for a path the OS refuses (Path.exists raises for some errors).
def _exists(p: Path) -> bool:
    try:
        return p.exists()
    except (OSError, ValueError):
        return False


def _is_file(p: Path) -> bool:
    try:
        return p.is_file()
    except (OSError, ValueError):
        return False


def _is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except (OSError, ValueError):
        return False


def _default_base_name(load: str, kind: str) -> str:
    if kind in ("file-function", "module-function"):
        return load.rsplit(":", 1)[-1]
    p = Path(load.rstrip("/\\"))
    return (p.stem if p.suffix else p.name) or "base-model"


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
