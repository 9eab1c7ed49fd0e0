"""Channel dependency graph for structured pruning (the DepGraph idea, Fang et al., CVPR 2023).

Removing channel c of one layer's output is only correct if every tensor that carries channel c
shrinks with it: the BatchNorm after it, the inputs of every layer reading it, and — across a
residual addition — the outputs of every *other* layer adding into the same channels, and so on
transitively. This module traces the model with torch.fx and puts channels into *spaces*: each
Linear/Conv output starts a space; elementwise operations between two tensors (a residual
`x + f(x)`, a product) merge the spaces of their operands (union-find); a depthwise convolution
carries its input space through to its output; a layer called several times (shared weights)
merges the spaces of its calls. Every member of a space records how it shrinks (which tensor,
which dim, how many elements per channel).

Grouped convolutions (1 < groups < channels) keep their group structure: a space read or written
by one is split into `groups` equal blocks and pruned at the same positions in every block (its
weight's input dim holds only one block's channels, so the same local positions must go in every
group), which keeps `in_channels`/`out_channels` divisible by `groups`.

A space is *fixed* (cannot be pruned) when its channels reach anything the rules do not model:
the model's output or input, a concatenation, a reshape other than a flatten from dim 1, a
LayerNorm (it normalises over the channels), a constant tensor, an unknown function. The reason
is kept and shown for the layers producing it.

Why not the `torch-pruning` package, which implements DepGraph (1.6.1, installable here): it
builds its graph from an autograd trace of an example input, so it needs data where
structured pruning needs none, and it edits the modules in place, while Bonsai must record each
change as a replayable `structured.slice` edit with the kept indices of every tensor (the artifact
loader and the comparisons read those). The fx trace the op already used gives the same graph.

The result is a list of `structured.Unit`s — one per prunable space — which `prune.structured`
prunes like any other unit: kept indices per tensor and `structured.slice` edits for replay.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn
else:  # imported on first use: registering the ops needs no torch (lazy.py)
    from ..lazy import nn, torch

# operators that combine two tensors channel by channel (their operands share channels)
_BINARY_FUNCTIONS = {"add", "sub", "mul", "truediv", "iadd", "isub", "imul", "itruediv"}
_BINARY_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}
_UNARY_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone", "float", "half", "detach"}
_CHANNELS_FIRST = "nchw"  # channels on dim 1 (conv feature maps)
_CHANNELS_LAST = "last"  # channels on the last dim (Linear outputs, 2-D [N, C] tensors)
_FLAT = "flat"  # a conv map flattened from dim 1: channel c is `width` consecutive features


@dataclass
class Member:
    """One tensor that shrinks with a space: `global` members index all of the space's channels
    (dim of size channels x width); `local` ones one group's block (a grouped conv's input dim)."""

    module: str
    tensor: str
    dim: int
    width: int = 1
    local: bool = False
    score: bool = False  # a weight whose norm counts in the channels' importance


@dataclass
class Attr:
    """A module attribute counting channels: it becomes (kept channels) x width."""

    module: str
    attr: str
    width: int = 1


@dataclass
class Space:
    size: int
    blocks: int = 1
    members: list[Member] = field(default_factory=list)
    attrs: list[Attr] = field(default_factory=list)
    producers: list[str] = field(default_factory=list)
    fixed: str | None = None


@dataclass(frozen=True)
class Chan:
    """What a graph value carries: channels of space `space` laid out as `layout`."""

    space: int
    layout: str


class _Graph:
    def __init__(self) -> None:
        self.parent: list[int] = []
        self.spaces: list[Space] = []

    def new(self, size: int, fixed: str | None = None) -> int:
        self.parent.append(len(self.parent))
        self.spaces.append(Space(size, fixed=fixed))
        return len(self.parent) - 1

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def space(self, i: int) -> Space:
        return self.spaces[self.find(i)]

    def fix(self, i: int, why: str) -> None:
        s = self.space(i)
        if s.fixed is None:
            s.fixed = why

    def union(self, a: int, b: int, why: str) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        sa, sb = self.spaces[ra], self.spaces[rb]
        self.parent[rb] = ra
        sa.members += sb.members
        sa.attrs += sb.attrs
        sa.producers += [p for p in sb.producers if p not in sa.producers]
        sa.fixed = sa.fixed or sb.fixed
        if sa.size != sb.size:
            sa.fixed = sa.fixed or f"{why} joins {sa.size} and {sb.size} channels"
        elif sa.blocks != sb.blocks:
            if 1 in (sa.blocks, sb.blocks):
                sa.blocks = max(sa.blocks, sb.blocks)
            else:
                sa.fixed = sa.fixed or "grouped convolutions with different group counts share these channels"
        return ra

    def set_blocks(self, i: int, groups: int, where: str) -> None:
        s = self.space(i)
        if s.blocks == 1:
            s.blocks = groups
        elif s.blocks != groups:
            self.fix(i, f"grouped convolutions with different group counts share these channels ({where})")


@dataclass
class DepResult:
    spaces: list[Space]
    #: Linear/Conv modules the graph saw, mapped to the spaces they produce
    produced: dict[str, int]


def _pass_module(mod: nn.Module) -> bool:
    from .structured import _pass_modules

    return isinstance(mod, _pass_modules())


def _pass_function(fn: Any) -> bool:
    from .structured import _pass_functions

    return fn in _pass_functions()


def build(model: nn.Module, claimed: set[str]) -> DepResult | None:
    """Trace `model` and build its channel spaces; None when torch.fx cannot trace it."""
    try:
        import torch.fx

        graph = torch.fx.symbolic_trace(model).graph
    except Exception:
        return None
    g = _Graph()
    values: dict[Any, Chan | None] = {}
    out_space: dict[str, int] = {}  # a module called again produces the same space
    in_space: dict[str, int] = {}  # ... and reads the same channels on every call
    produced: dict[str, int] = {}

    def chans(args: Any) -> list[Chan]:
        found: list[Chan] = []
        if isinstance(args, (list, tuple)):
            for a in args:
                found += chans(a)
        elif isinstance(args, dict):
            for a in args.values():
                found += chans(a)
        elif isinstance(args, torch.fx.Node):
            c = values.get(args)
            if c is not None:
                found.append(c)
        return found

    def fix_all(node: Any, why: str) -> None:
        for c in chans((node.args, node.kwargs)):
            g.fix(c.space, why)

    for node in graph.nodes:
        values[node] = None
        if node.op == "placeholder":
            values[node] = Chan(g.new(0, fixed="it reaches an input of the model"), _CHANNELS_FIRST)
            continue
        if node.op == "get_attr":
            values[node] = Chan(
                g.new(0, fixed=f"it is combined with the constant '{node.target}'"), _CHANNELS_FIRST
            )
            continue
        if node.op == "output":
            fix_all(node, "it is an output of the model")
            continue
        first = node.args[0] if node.args else None
        cin = values.get(first) if isinstance(first, torch.fx.Node) else None
        if node.op == "call_module":
            name = str(node.target)
            mod = model.get_submodule(name)
            if cin is not None and isinstance(
                mod, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d)
            ):
                if name in in_space:  # shared weights: the calls' inputs are pruned alike
                    merged = g.union(in_space[name], cin.space, f"'{name}' called twice")
                    cin = Chan(merged, cin.layout)
                in_space[name] = cin.space
            values[node] = _module(g, model, name, mod, node, cin, out_space, produced, claimed, fix_all)
        elif node.op == "call_function":
            values[node] = _function(g, node, cin, chans, fix_all)
        elif node.op == "call_method":
            values[node] = _method(g, node, cin, chans, fix_all)
    return DepResult(g.spaces, {k: g.find(v) for k, v in produced.items()}) if _finish(g) else None


def _finish(g: _Graph) -> bool:
    """Point every space at its root's data (members are kept on the roots only)."""
    for i in range(len(g.spaces)):
        g.spaces[i] = g.space(i)
    return True


def _module(
    g: _Graph,
    model: nn.Module,
    name: str,
    mod: nn.Module,
    node: Any,
    cin: Chan | None,
    out_space: dict[str, int],
    produced: dict[str, int],
    claimed: set[str],
    fix_all: Any,
) -> Chan | None:
    if name in claimed:  # a Hugging Face rule already owns this layer
        fix_all(node, f"'{name}' is pruned by a transformer rule")
        return Chan(g.new(0, fixed=f"it comes from '{name}', pruned by a transformer rule"), _CHANNELS_LAST)
    if isinstance(mod, nn.Linear):
        if cin is not None:
            _consume_linear(g, name, mod, cin)
        return Chan(
            _produce(g, name, mod, int(mod.out_features), out_space, produced, "out_features"), _CHANNELS_LAST
        )
    if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
        groups, cin_n, cout = int(mod.groups), int(mod.in_channels), int(mod.out_channels)
        if cin is not None and cin.layout != _CHANNELS_FIRST:
            g.fix(cin.space, f"Conv '{name}' reads it with channels not on dim 1")
            cin = None
        if groups == 1:
            if cin is not None:
                _consume(g, cin.space, name, cin_n, "in_channels")
            return Chan(_produce(g, name, mod, cout, out_space, produced, "out_channels"), _CHANNELS_FIRST)
        if groups == cin_n and cout == cin_n:  # depthwise: channel c in -> channel c out
            space = cin.space if cin is not None else g.new(cin_n, fixed=f"the input of '{name}' is unknown")
            if name in out_space:
                space = g.union(out_space[name], space, f"'{name}' called twice")
            out_space[name] = space
            produced.setdefault(name, space)
            s = g.space(space)
            if s.size != cout:
                g.fix(space, f"depthwise '{name}' has {cout} channels, its input {s.size}")
            if name not in s.producers:
                s.producers.append(name)
                s.members += [
                    Member(name, t, 0, score=t == "weight") for t in ("weight", "bias") if _has(mod, t)
                ]
                s.attrs += [Attr(name, a) for a in ("in_channels", "out_channels", "groups")]
            return Chan(space, _CHANNELS_FIRST)
        if cin_n % groups or cout % groups:
            why = f"grouped convolution '{name}' has channels not divisible by its groups"
            if cin is not None:
                g.fix(cin.space, why)
            return Chan(g.new(cout, fixed=why), _CHANNELS_FIRST)
        # grouped: the input is `groups` blocks pruned at the same local positions
        if cin is not None:
            g.set_blocks(cin.space, groups, name)
            s = g.space(cin.space)
            if s.size != cin_n:
                g.fix(cin.space, f"its {s.size} channels do not match the {cin_n} inputs of '{name}'")
            if not any(m.module == name and m.dim == 1 for m in s.members):
                s.members.append(Member(name, "weight", 1, local=True))
                s.attrs.append(Attr(name, "in_channels"))
        space = _produce(g, name, mod, cout, out_space, produced, "out_channels")
        g.set_blocks(space, groups, name)
        return Chan(space, _CHANNELS_FIRST)
    if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if cin is None:
            return None
        s = g.space(cin.space)
        if not any(m.module == name for m in s.members):  # a norm called twice joins once
            s.members += [
                Member(name, t, 0) for t in ("weight", "bias", "running_mean", "running_var") if _has(mod, t)
            ]
            s.attrs.append(Attr(name, "num_features"))
        if s.size != int(mod.num_features):
            g.fix(cin.space, f"BatchNorm '{name}' has {mod.num_features} features, not {s.size}")
        return cin
    if isinstance(mod, nn.Flatten):
        if cin is None:
            return None
        if mod.start_dim != 1:
            g.fix(cin.space, f"Flatten '{name}' does not start at dim 1")
            return None
        return Chan(cin.space, _FLAT if cin.layout == _CHANNELS_FIRST else cin.layout)
    if _pass_module(mod):
        return cin
    fix_all(node, f"its output goes to {type(mod).__name__} '{name}', which no rule handles")
    return None


def _has(mod: nn.Module, tensor: str) -> bool:
    return isinstance(getattr(mod, tensor, None), torch.Tensor)


def _produce(
    g: _Graph,
    name: str,
    mod: nn.Module,
    size: int,
    out_space: dict[str, int],
    produced: dict[str, int],
    attr: str,
) -> int:
    if name in out_space:  # shared weights: every call's output is the same channels
        return out_space[name]
    space = g.new(size)
    s = g.space(space)
    s.producers.append(name)
    s.members += [Member(name, t, 0, score=t == "weight") for t in ("weight", "bias") if _has(mod, t)]
    s.attrs.append(Attr(name, attr))
    out_space[name] = space
    produced[name] = space
    return space


def _consume(g: _Graph, space: int, name: str, n_in: int, attr: str, width: int = 1) -> None:
    s = g.space(space)
    if any(m.module == name and m.dim == 1 for m in s.members):
        return  # called twice on the same channels
    if s.size * width != n_in:
        g.fix(space, f"its {s.size} channels do not match the {n_in} inputs of '{name}'")
        return
    s.members.append(Member(name, "weight", 1, width=width))
    s.attrs.append(Attr(name, attr, width=width))


def _consume_linear(g: _Graph, name: str, mod: nn.Linear, cin: Chan) -> None:
    s = g.space(cin.space)
    n_in = int(mod.in_features)
    if cin.layout == _CHANNELS_FIRST:
        g.fix(cin.space, f"Linear '{name}' reads it without a flatten")
    elif cin.layout == _FLAT:
        if s.size == 0 or n_in % s.size:
            g.fix(cin.space, f"Linear '{name}' has {n_in} inputs, not a multiple of {s.size}")
        else:
            _consume(g, cin.space, name, n_in, "in_features", width=n_in // s.size)
    else:
        _consume(g, cin.space, name, n_in, "in_features")


def _elementwise(g: _Graph, node: Any, cs: list[Chan], fix_all: Any) -> Chan | None:
    """Operands combined channel by channel: one space (a residual addition, a gate)."""
    if not cs:
        return None
    if len({c.layout for c in cs}) > 1:
        fix_all(node, f"'{node.name}' combines tensors with different channel layouts")
        return None
    space = cs[0].space
    for c in cs[1:]:
        space = g.union(space, c.space, f"'{node.name}'")
    return Chan(space, cs[0].layout)


def _reduce_spatial(node: Any, cin: Chan, dims: Any, keepdim: bool) -> Chan | None:
    """mean/sum/amax over the spatial dims of a conv map keep its channels."""
    if cin.layout != _CHANNELS_FIRST:
        return None
    ds = [dims] if isinstance(dims, int) else list(dims) if isinstance(dims, (list, tuple)) else None
    if not ds or any(not isinstance(d, int) or d in (0, 1) for d in ds):
        return None
    return Chan(cin.space, _CHANNELS_FIRST if keepdim else _CHANNELS_LAST)


def _flatten_dims(dims: Any) -> bool:
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = dims[0]
    return len(dims) == 2 and dims[1] == -1


def _function(g: _Graph, node: Any, cin: Chan | None, chans: Any, fix_all: Any) -> Chan | None:
    fn = node.target
    name = getattr(fn, "__name__", str(fn))
    cs = chans((node.args, node.kwargs))
    if not cs:
        return None
    if fn is getattr:
        return None  # x.shape and the like: no channels onward
    if (getattr(fn, "__module__", "") in ("_operator", "operator") and name in _BINARY_FUNCTIONS) or fn in (
        torch.add, torch.sub, torch.mul, torch.div,
    ):  # fmt: skip
        return _elementwise(g, node, cs, fix_all)
    if cin is not None and _pass_function(fn):
        return cin
    if cin is not None and fn is torch.flatten:
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        if start == 1:
            return Chan(cin.space, _FLAT if cin.layout == _CHANNELS_FIRST else cin.layout)
    if cin is not None and fn is torch.reshape and len(node.args) == 2 and _flatten_dims(node.args[1:]):
        return Chan(cin.space, _FLAT if cin.layout == _CHANNELS_FIRST else cin.layout)
    if cin is not None and fn in (torch.mean, torch.sum, torch.amax) and len(node.args) > 1:
        kept = _reduce_spatial(node, cin, node.args[1], bool(node.kwargs.get("keepdim", False)))
        if kept is not None:
            return kept
    if fn is operator.getitem:
        fix_all(node, f"it is indexed by '{node.name}'")
        return None
    fix_all(node, f"its output goes to {name}, which no rule handles")
    return None


def _method(g: _Graph, node: Any, cin: Chan | None, chans: Any, fix_all: Any) -> Chan | None:
    m = str(node.target)
    if m in ("size", "dim"):
        return None
    if cin is None:
        if chans((node.args, node.kwargs)):
            fix_all(node, f"its output goes to .{m}(), which no rule handles")
        return None
    if m in _BINARY_METHODS:
        return _elementwise(g, node, chans((node.args, node.kwargs)), fix_all)
    if m in _UNARY_METHODS:
        return cin
    if m == "flatten":
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        if start == 1:
            return Chan(cin.space, _FLAT if cin.layout == _CHANNELS_FIRST else cin.layout)
    if m in ("view", "reshape") and _flatten_dims(node.args[1:]):
        return Chan(cin.space, _FLAT if cin.layout == _CHANNELS_FIRST else cin.layout)
    if m in ("mean", "sum", "amax") and (len(node.args) > 1 or "dim" in node.kwargs):
        dims = node.args[1] if len(node.args) > 1 else node.kwargs["dim"]
        kept = _reduce_spatial(node, cin, dims, bool(node.kwargs.get("keepdim", False)))
        if kept is not None:
            return kept
    fix_all(node, f"its output goes to .{m}(), which no rule handles")
    return None
