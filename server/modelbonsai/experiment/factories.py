"""Which functions of a Python file build a PyTorch model, found by reading it (no import, no torch).

The CodeLens over a `.py` file and "Create Experiment File" from a `.safetensors` file ask this
module for the file's model factories: top-level functions that return an `nn.Module` and
top-level `nn.Module` subclasses (calling the class builds the model). Reading the syntax tree
instead of importing the file keeps the language server free of torch and of the workspace's code
(a lens must not run what it describes, and Restricted Mode forbids it).

A function counts as a factory when
- its return annotation names a module class (`-> nn.Module`, `-> torch.nn.Sequential`, a class
  of the file that subclasses one, or the same as a string), or
- one of its own `return`s gives a module: a call of a module class (`nn.Sequential(...)`, a class
  of the file), of another factory of the file, of a `torchvision.models` builder or of a
  transformers model class; a local name bound to one of these; or one of these with `.eval()`,
  `.to(...)`, `.float()` and the like applied.

Names starting with `_` are helpers, not factories. A factory whose parameters have no defaults
is listed with them (`required`): the starter cannot call it without `args:`.
"""

from __future__ import annotations

import ast
import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

#: Methods of nn.Module that return the module itself, so `return model.eval()` is a model.
_SELF_RETURNING = frozenset(
    {"eval", "train", "to", "float", "half", "double", "bfloat16", "cpu", "cuda", "requires_grad_"}
)
#: torch.nn sub-namespaces whose capitalised names are not module classes.
_NOT_MODULES = ("torch.nn.functional.", "torch.nn.init.", "torch.nn.utils.", "torch.nn.parameter.")
#: Python files larger than this are not read for factories (generated code, vendored libraries).
MAX_SOURCE_BYTES = 2_000_000
#: The safetensors header is JSON of at most this many bytes (the format's own limit is 100 MB).
_MAX_HEADER = 100_000_000


class FactoryError(UserError, ValueError):
    """A model file cannot be read for what the starter needs (syntax error, unreadable weights)."""


@dataclass(frozen=True)
class ModelFactory:
    """One way a file builds a model: `name` in `file` (a function or a class)."""

    name: str
    kind: str  # "function" | "class"
    line: int  # 0-based line of its `def` / `class`
    required: tuple[str, ...]  # parameters without a default
    file: Path | None = None

    @property
    def callable_without_args(self) -> bool:
        return not self.required

    def ref(self, relative_to: Path | None = None) -> str:
        """`file.py:name`, the file relative to `relative_to` when given (as the yaml writes it)."""
        if self.file is None:
            return self.name
        import os

        f = self.file if relative_to is None else Path(os.path.relpath(self.file, relative_to))
        return f"{f.as_posix()}:{self.name}"

    def to_json(self) -> dict[str, object]:
        return {
            "file": str(self.file) if self.file is not None else "",
            "function": self.name,
            "kind": self.kind,
            "line": self.line,
            "required": list(self.required),
        }


def model_factories(source: str, file: Path | None = None) -> list[ModelFactory]:
    """The model factories of `source`, in file order. A syntax error raises FactoryError."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        where = f"{file.name}, line {e.lineno}" if file is not None else f"line {e.lineno}"
        raise FactoryError(f"cannot read {where}: {e.msg}") from None
    return _Finder(tree, file).factories()


def factories_in_file(path: Path) -> list[ModelFactory]:
    """The model factories of a Python file on disk."""
    try:
        size = path.stat().st_size
        if size > MAX_SOURCE_BYTES:
            raise FactoryError(f"{path.name} is {size:,} bytes; Bonsai reads model files up to 2 MB")
        source = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise FactoryError(f"cannot read {path}: not UTF-8 text ({e.reason})") from None
    except OSError as e:
        raise FactoryError(f"cannot read {path}: {e.strerror or e}") from None
    return model_factories(source, path.absolute())


def factories_near(weights: Path) -> list[ModelFactory]:
    """Factories callable without arguments in the `.py` files beside a weights file and in its
    folder's parent (the digits layout: `model/model.safetensors` built by `model.py`). Files
    that cannot be read are skipped: they are candidates, not the user's choice."""
    folder = weights.absolute().parent
    seen: set[Path] = set()
    out: list[ModelFactory] = []
    for d in (folder, folder.parent):
        try:
            files = sorted(p for p in d.glob("*.py") if p.is_file())
        except OSError:
            continue
        for p in files:
            if p in seen or p.name.startswith(("test_", "setup.", "conftest.")):
                continue
            seen.add(p)
            try:
                out += [f for f in factories_in_file(p) if f.callable_without_args]
            except FactoryError:
                continue
    return out


def safetensors_summary(path: Path) -> tuple[int, int]:
    """(tensor count, element count) from a safetensors file's header; FactoryError names what is
    wrong when the file is not one (read without torch: only the header is read)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            size = path.stat().st_size
            if len(head) < 8:
                raise FactoryError(f"{path.name} is not a safetensors file: it is {len(head)} bytes long")
            (n,) = struct.unpack("<Q", head)
            if n > min(_MAX_HEADER, size - 8):
                raise FactoryError(
                    f"{path.name} is not a safetensors file: its header length ({n:,} bytes) "
                    f"does not fit in the file ({size:,} bytes)"
                )
            header = json.loads(fh.read(n))
    except OSError as e:
        raise FactoryError(f"cannot read {path}: {e.strerror or e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise FactoryError(f"{path.name} is not a safetensors file: its header is not JSON") from None
    if not isinstance(header, dict):
        raise FactoryError(f"{path.name} is not a safetensors file: its header is not a JSON object")
    tensors = 0
    elements = 0
    data = size - 8 - n
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            begin, end = (int(x) for x in info["data_offsets"])
            shape = [int(x) for x in info["shape"]]
        except (KeyError, TypeError, ValueError):
            raise FactoryError(f"{path.name}: tensor '{key}' has no valid shape and data offsets") from None
        if not 0 <= begin <= end <= data:
            raise FactoryError(
                f"{path.name}: tensor '{key}' lies past the end of the file (truncated download?)"
            )
        count = 1
        for s in shape:
            count *= s
        tensors += 1
        elements += count
    if tensors == 0:
        raise FactoryError(f"{path.name} holds no tensors")
    return tensors, elements


# -- the reader ----------------------------------------------------------------------------------


def _is_library_model(q: str) -> bool:
    """A qualified name that builds a model when called, outside the file."""
    if q.startswith("torch.nn.") and not q.startswith(_NOT_MODULES):
        last = q.rsplit(".", 1)[-1]
        return last[:1].isupper()
    if q.startswith("torchvision.models."):
        return True  # resnet18(), vit_b_16(), ...: every public builder returns a module
    if q.startswith("transformers."):
        parts = q.split(".")
        return any("Model" in p for p in parts[1:])  # BertModel, AutoModelForX.from_pretrained
    return False


class _Finder:
    def __init__(self, tree: ast.Module, file: Path | None):
        self.tree = tree
        self.file = file
        self.aliases: dict[str, str] = {}
        self.classes: dict[str, ast.ClassDef] = {}
        self.functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        for node in tree.body:
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        self.aliases[a.asname] = a.name
                    else:
                        top = a.name.split(".")[0]
                        self.aliases[top] = top
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    if a.name != "*":
                        self.aliases[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, ast.ClassDef):
                self.classes[node.name] = node
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self.functions[node.name] = node
        self.module_classes = self._module_classes()
        self.model_functions: set[str] = set()

    # qualified names ---------------------------------------------------------------------------
    def qual(self, e: ast.expr) -> str | None:
        if isinstance(e, ast.Name):
            return self.aliases.get(e.id, e.id)
        if isinstance(e, ast.Attribute):
            base = self.qual(e.value)
            return f"{base}.{e.attr}" if base else None
        if isinstance(e, ast.Constant) and isinstance(e.value, str):  # "nn.Module" annotations
            try:
                return self.qual(ast.parse(e.value, mode="eval").body)
            except SyntaxError:
                return None
        if isinstance(e, ast.Subscript):  # Optional[nn.Module] and the like: not a sure model
            return None
        return None

    def is_module_type(self, e: ast.expr) -> bool:
        q = self.qual(e)
        if q is None:
            return False
        return q in self.module_classes or _is_library_model(q)

    def _module_classes(self) -> set[str]:
        found: set[str] = set()
        changed = True
        while changed:  # a class of the file may subclass another class of the file
            changed = False
            for name, c in self.classes.items():
                if name in found:
                    continue
                for b in c.bases:
                    q = self.qual(b)
                    if q is not None and (q in found or (q.startswith("torch.nn.") and _is_library_model(q))):
                        found.add(name)
                        changed = True
                        break
        return found

    # what a return gives -----------------------------------------------------------------------
    def _builds(self, e: ast.expr | None, bound: set[str]) -> bool:
        if e is None:
            return False
        if isinstance(e, ast.Name):
            return e.id in bound
        if isinstance(e, ast.Call):
            f = e.func
            if isinstance(f, ast.Attribute) and f.attr in _SELF_RETURNING and self._builds(f.value, bound):
                return True
            q = self.qual(f)
            if q is None:
                return False
            return q in self.module_classes or q in self.model_functions or _is_library_model(q)
        return False

    def _returns_model(self, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
        if fn.returns is not None and self.is_module_type(fn.returns):
            return True
        bound: set[str] = set()
        returns: list[ast.expr | None] = []
        for node in _own_nodes(fn.body):
            if isinstance(node, ast.Assign) and self._builds(node.value, bound):
                bound.update(t.id for t in node.targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                if self._builds(node.value, bound) or self.is_module_type(node.annotation):
                    bound.add(node.target.id)
            elif isinstance(node, ast.Return):
                returns.append(node.value)
        return any(self._builds(r, bound) for r in returns)

    def factories(self) -> list[ModelFactory]:
        changed = True
        while changed:  # build() may return make_net(), itself a factory of the file
            changed = False
            for name, fn in self.functions.items():
                if name not in self.model_functions and self._returns_model(fn):
                    self.model_functions.add(name)
                    changed = True
        out: list[ModelFactory] = []
        for node in self.tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if node.name in self.model_functions and not node.name.startswith("_"):
                    out.append(
                        ModelFactory(node.name, "function", _def_line(node), _required(node.args), self.file)
                    )
            elif isinstance(node, ast.ClassDef):
                if node.name in self.module_classes and not node.name.startswith("_"):
                    out.append(
                        ModelFactory(
                            node.name, "class", _def_line(node), self._init_required(node), self.file
                        )
                    )
        return out

    def _init_required(self, c: ast.ClassDef) -> tuple[str, ...]:
        seen: set[str] = set()
        cur: ast.ClassDef | None = c
        while cur is not None and cur.name not in seen:
            seen.add(cur.name)
            for node in cur.body:
                if isinstance(node, ast.FunctionDef) and node.name == "__init__":
                    return _required(node.args)[1:]  # without self
            # no __init__ here: the first base of the file that is a module class has it
            cur = next(
                (self.classes[q] for b in cur.bases if (q := self.qual(b) or "") in self.module_classes),
                None,
            )
        return ()


def _def_line(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> int:
    """The 0-based line of the `def`/`class` keyword (decorators sit above it)."""
    return node.lineno - 1


def _required(args: ast.arguments) -> tuple[str, ...]:
    positional = [*args.posonlyargs, *args.args]
    without_default = positional[: len(positional) - len(args.defaults)]
    kw = [a for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None]
    return tuple(a.arg for a in [*without_default, *kw])


def _own_nodes(body: Iterable[ast.stmt]) -> Iterable[ast.AST]:
    """The nodes of a function body, not descending into nested functions, classes or lambdas
    (their returns are theirs)."""
    for node in body:  # in source order: `m = nn.Linear(...)` is bound before `m = m.eval()`
        yield from _walk_own(node)


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def _walk_own(node: ast.AST) -> Iterable[ast.AST]:
    if isinstance(node, _SCOPES):
        return
    yield node
    for child in ast.iter_child_nodes(node):
        yield from _walk_own(child)
