"""Structured pruning: remove whole output channels, neurons or attention heads, for real.

Tensors shrink, so the model gets smaller and faster. Removing outputs of one layer means
removing the matching inputs of the layers that read them, so the op first finds, for each
candidate layer, every tensor that must shrink with it (a *unit*). The rules, in order:

1. **Hugging Face transformer blocks**, recognised by their structure:
   - BERT-style self-attention (a module with `query`/`key`/`value` Linears, `num_attention_heads`
     and `attention_head_size`, whose parent has `output.dense`): heads are removed from q/k/v
     rows and from the columns of `output.dense`; `num_attention_heads` and `all_head_size` are
     updated.
   - GPT-2-style attention (Conv1D `c_attn` + `c_proj`, `num_heads`, `head_dim`, `split_size`):
     heads are removed from the q, k and v column blocks of `c_attn` and the rows of `c_proj`;
     `num_heads`, `split_size` and the Conv1D `nf` are updated.
   - BERT-style feed-forward (`intermediate.dense` feeding `output.dense`), GPT-2-style MLP
     (Conv1D `c_fc` feeding `c_proj`) and gated MLP as in Llama, Mistral or Qwen (`gate_proj` and
     `up_proj` feeding `down_proj`): neurons are removed from the first layers' outputs and the
     last layer's inputs. (Attention heads of those gated models are not handled yet.)
2. **The channel dependency graph** (depgraph.py, when the model traces with
   `torch.fx.symbolic_trace`): channels that must go together form one unit — a layer's
   outputs, the BatchNorms after it, the inputs of every layer reading them, and across a
   residual addition the outputs of every other layer adding into the same channels; a depthwise
   convolution carries its channels through; grouped convolutions prune the same positions in
   every group. Activations, dropout, pooling, spatial means and a flatten from dim 1 pass
   channels on (after a flatten, channel c of a conv feeds H*W consecutive inputs of a Linear).
3. **Sequential fallback**: when tracing fails, a producer followed by norms/elementwise layers
   and one consumer among the children of every `nn.Sequential`, in order.

Channels that reach anything else (the model output, a concatenation, a reshape, a LayerNorm)
cannot be pruned safely. With no `include`, such layers are skipped and listed in a progress
message; naming one in `include` is an error that says why.

Importance of a unit is the L1 or L2 norm of its producer weights (for a head: its q, k and v
weights together; for coupled channels: every weight writing them, in every group). The lowest
`round(amount x units)` are removed from every targeted layer; at least one always stays. Ties keep the earlier index.

Records: `cm.kept_indices[param][dim]` lists, for every shrunk tensor, which indices of the base
tensor remain (composed across repeated structured pruning), and one `structured.slice` edit per
changed module, which the artifact loader replays on a fresh base model before loading weights.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn
else:  # imported on first use: registering the ops needs no torch (lazy.py)
    from ..lazy import nn, torch

from .registry import CompressedModel, OpContext, OpError, Param, match_names, register_edit, register_op
from .targets import (
    EXCLUDE,
    INCLUDE,
    as_patterns,
    is_hf_conv1d,
    param_names,
    refuse_encoded,
    replace_param,
    to_device,
)

OP = "prune.structured"
EDIT = "structured.slice"


@dataclass(frozen=True)
class Slice:
    """Tensor `module.tensor` shrinks along `dim`. Along that dim the layout is
    [blocks, units, width] with block stride `stride` (0 means units x width)."""

    module: str
    tensor: str
    dim: int
    width: int = 1
    blocks: int = 1
    stride: int = 0

    def index(self, keep: list[int], units: int) -> list[int]:
        stride = self.stride or units * self.width
        return [
            b * stride + u * self.width + j
            for b in range(self.blocks)
            for u in keep
            for j in range(self.width)
        ]


@dataclass
class Unit:
    """One prunable layer and everything that shrinks with it."""

    name: str  # the producer module, as shown to the user
    kind: str  # "neurons" (channels, neurons) or "heads"
    size: int
    score: list[Slice] = field(default_factory=list)  # producer weights (importance)
    slices: list[Slice] = field(default_factory=list)  # every tensor that shrinks
    attrs: list[tuple[str, str, int]] = field(default_factory=list)  # (module, attr, per unit)
    params: list[str] = field(default_factory=list)  # parameter names for include/exclude


@dataclass
class Found:
    units: dict[str, Unit] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)  # producer -> why it cannot be pruned


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _has(module: nn.Module, tensor: str) -> bool:
    return isinstance(getattr(module, tensor, None), torch.Tensor)


def _slices(model: nn.Module, module: str, tensors: tuple[str, ...], dim: int, **kw: int) -> list[Slice]:
    m = model.get_submodule(module)
    return [Slice(module, t, dim, **kw) for t in tensors if _has(m, t)]


# ---------------------------------------------------------------------------------------------
# rule 1: Hugging Face blocks


def _hf_units(model: nn.Module, found: Found, claimed: set[str]) -> None:
    for name, mod in model.named_modules():
        if all(isinstance(getattr(mod, a, None), nn.Linear) for a in ("query", "key", "value")) and hasattr(
            mod, "attention_head_size"
        ):
            parent_name = name.rpartition(".")[0]
            out_name = _join(parent_name, "output.dense")
            try:
                out = model.get_submodule(out_name)
            except AttributeError:
                continue
            if not isinstance(out, nn.Linear):
                continue
            hd, heads = int(mod.attention_head_size), int(mod.num_attention_heads)
            u = Unit(name, "heads", heads)
            for a in ("query", "key", "value"):
                u.score.append(Slice(_join(name, a), "weight", 0, width=hd))
                u.slices += _slices(model, _join(name, a), ("weight", "bias"), 0, width=hd)
                u.attrs.append((_join(name, a), "out_features", hd))
                u.params.append(_join(name, a, "weight"))
            u.slices.append(Slice(out_name, "weight", 1, width=hd))
            u.attrs += [
                (out_name, "in_features", hd),
                (name, "num_attention_heads", 1),
                (name, "all_head_size", hd),
            ]
            found.units[name] = u
            claimed.update({_join(name, a) for a in ("query", "key", "value")} | {out_name})
        elif (
            is_hf_conv1d(getattr(mod, "c_attn", nn.Identity()))
            and is_hf_conv1d(getattr(mod, "c_proj", nn.Identity()))
            and hasattr(mod, "num_heads")
            and hasattr(mod, "split_size")
        ):
            if getattr(mod, "is_cross_attention", False):
                found.problems[name] = "cross-attention heads are not supported"
                continue
            hd, heads, e = int(mod.head_dim), int(mod.num_heads), int(mod.split_size)
            qkv, proj = _join(name, "c_attn"), _join(name, "c_proj")
            u = Unit(name, "heads", heads)
            u.score.append(Slice(qkv, "weight", 1, width=hd, blocks=3, stride=e))
            u.slices += [
                Slice(qkv, "weight", 1, width=hd, blocks=3, stride=e),
                Slice(qkv, "bias", 0, width=hd, blocks=3, stride=e),
            ]
            u.slices.append(Slice(proj, "weight", 0, width=hd))
            u.attrs += [
                (qkv, "nf", 3 * hd),
                (proj, "nx", hd),
                (name, "num_heads", 1),
                (name, "split_size", hd),
            ]
            u.params.append(_join(qkv, "weight"))
            found.units[name] = u
            claimed.update({qkv, proj})
        elif is_hf_conv1d(getattr(mod, "c_fc", nn.Identity())) and is_hf_conv1d(
            getattr(mod, "c_proj", nn.Identity())
        ):
            fc, proj = _join(name, "c_fc"), _join(name, "c_proj")
            n = int(getattr(model.get_submodule(fc), "nf"))  # noqa: B009  (Conv1D is untyped)
            u = Unit(fc, "neurons", n, score=[Slice(fc, "weight", 1)])
            u.slices = [Slice(fc, "weight", 1), Slice(fc, "bias", 0), Slice(proj, "weight", 0)]
            u.attrs = [(fc, "nf", 1), (proj, "nx", 1)]
            u.params = [_join(fc, "weight")]
            found.units[fc] = u
            claimed.update({fc, proj})
        elif all(isinstance(getattr(mod, a, None), nn.Linear) for a in ("gate_proj", "up_proj", "down_proj")):
            gate, up, down = (_join(name, a) for a in ("gate_proj", "up_proj", "down_proj"))
            u = Unit(up, "neurons", int(getattr(mod, "up_proj").out_features))  # noqa: B009
            u.score = [Slice(gate, "weight", 0), Slice(up, "weight", 0)]
            u.slices = [
                *_slices(model, gate, ("weight", "bias"), 0),
                *_slices(model, up, ("weight", "bias"), 0),
            ]
            u.slices.append(Slice(down, "weight", 1))
            u.attrs = [(gate, "out_features", 1), (up, "out_features", 1), (down, "in_features", 1)]
            if isinstance(getattr(mod, "intermediate_size", None), int):
                u.attrs.append((name, "intermediate_size", 1))
            u.params = [_join(gate, "weight"), _join(up, "weight")]
            found.units[up] = u
            claimed.update({gate, up, down})
        else:
            inter, output = getattr(mod, "intermediate", None), getattr(mod, "output", None)
            dense_in, dense_out = getattr(inter, "dense", None), getattr(output, "dense", None)
            if isinstance(dense_in, nn.Linear) and isinstance(dense_out, nn.Linear):
                if dense_in.out_features != dense_out.in_features:
                    continue
                fc, proj = _join(name, "intermediate.dense"), _join(name, "output.dense")
                u = Unit(fc, "neurons", dense_in.out_features, score=[Slice(fc, "weight", 0)])
                u.slices = [*_slices(model, fc, ("weight", "bias"), 0), Slice(proj, "weight", 1)]
                u.attrs = [(fc, "out_features", 1), (proj, "in_features", 1)]
                u.params = [_join(fc, "weight")]
                found.units[fc] = u
                claimed.update({fc, proj})


# ---------------------------------------------------------------------------------------------
# rules 2 and 3: a producer followed by norms/elementwise ops and one consumer


@functools.cache
def _pass_modules() -> tuple[type[nn.Module], ...]:
    # A function, not a module constant: registering the op must not import torch (lazy.py).
    return (
        nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Sigmoid, nn.Tanh, nn.Hardswish,
        nn.Hardsigmoid, nn.Mish, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity, nn.MaxPool1d,
        nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
    )  # fmt: skip


@functools.cache
def _pass_functions() -> frozenset[Any]:
    return frozenset({
        torch.relu, torch.sigmoid, torch.tanh, nn.functional.relu, nn.functional.relu6, nn.functional.gelu,
        nn.functional.silu, nn.functional.leaky_relu, nn.functional.elu, nn.functional.hardswish,
        nn.functional.dropout, nn.functional.max_pool2d, nn.functional.avg_pool2d,
        nn.functional.adaptive_avg_pool2d, nn.functional.adaptive_max_pool2d, nn.functional.sigmoid,
        nn.functional.tanh,
    })  # fmt: skip


_PASS_METHODS = {"relu", "sigmoid", "tanh", "contiguous"}


@dataclass
class _Chain:
    norms: list[str] = field(default_factory=list)
    consumer: str | None = None
    flattened: bool = False


def _producer_ok(mod: nn.Module) -> bool:
    return isinstance(mod, nn.Linear) or (isinstance(mod, nn.Conv2d) and mod.groups == 1)


def _add_chain(model: nn.Module, name: str, chain: _Chain, found: Found) -> None:
    """Turn a producer + its chain into a unit, checking sizes fit."""
    prod = model.get_submodule(name)
    assert isinstance(prod, (nn.Conv2d, nn.Linear))
    size = int(prod.out_channels if isinstance(prod, nn.Conv2d) else prod.out_features)
    assert chain.consumer is not None
    cons = model.get_submodule(chain.consumer)
    if isinstance(cons, nn.Conv2d):
        if chain.flattened or cons.groups != 1 or cons.in_channels != size:
            found.problems[name] = f"its outputs do not match the inputs of Conv2d '{chain.consumer}'"
            return
        width = 1
    else:
        assert isinstance(cons, nn.Linear)
        if isinstance(prod, nn.Conv2d) and not chain.flattened:
            found.problems[name] = f"Linear '{chain.consumer}' reads it without a flatten"
            return
        if cons.in_features % size:
            found.problems[name] = (
                f"Linear '{chain.consumer}' has {cons.in_features} inputs, not a multiple of {size}"
            )
            return
        width = cons.in_features // size
    u = Unit(name, "neurons", size, score=[Slice(name, "weight", 0)])
    u.slices = _slices(model, name, ("weight", "bias"), 0)
    u.attrs = [(name, "out_channels" if isinstance(prod, nn.Conv2d) else "out_features", 1)]
    for bn in chain.norms:
        u.slices += _slices(model, bn, ("weight", "bias", "running_mean", "running_var"), 0)
        u.attrs.append((bn, "num_features", 1))
    u.slices.append(Slice(chain.consumer, "weight", 1, width=width))
    u.attrs.append((chain.consumer, "in_channels" if isinstance(cons, nn.Conv2d) else "in_features", width))
    u.params = [_join(name, "weight")]
    found.units[name] = u


def _fx_units(model: nn.Module, found: Found, claimed: set[str]) -> bool:
    """Rule 2: the channel dependency graph (depgraph.py). Returns False when the model does
    not trace."""
    from . import depgraph

    result = depgraph.build(model, claimed)
    if result is None:
        return False
    seen: set[int] = set()
    for space in result.spaces:
        if id(space) in seen or not space.producers:
            continue
        seen.add(id(space))
        if space.fixed is not None:
            for name in space.producers:
                found.problems.setdefault(name, space.fixed)
            continue
        unit = _space_unit(space)
        if unit is None:
            for name in space.producers:
                found.problems.setdefault(name, "its channels cannot be split evenly into its groups")
            continue
        found.units[unit.name] = unit
        claimed.update(m.module for m in space.members)
    return True


def _space_unit(space: Any) -> Unit | None:
    """A unit from a dependency-graph space: every member shrinks at the kept channels (in each
    of its `blocks` groups, at the same positions)."""
    blocks = int(space.blocks)
    if space.size % blocks:
        return None
    units = space.size // blocks
    u = Unit(space.producers[0], "neurons", units)
    done: set[tuple[str, str, int]] = set()
    for m in space.members:
        key = (m.module, m.tensor, m.dim)
        if key in done:
            continue
        done.add(key)
        if m.local:  # a grouped conv's weight holds one group's channels on its input dim
            sl = Slice(m.module, m.tensor, m.dim)
        else:
            sl = Slice(m.module, m.tensor, m.dim, width=m.width, blocks=blocks, stride=units * m.width)
        u.slices.append(sl)
        if m.score:
            u.score.append(sl)
    attrs: set[tuple[str, str]] = set()
    for a in space.attrs:
        if (a.module, a.attr) not in attrs:
            attrs.add((a.module, a.attr))
            u.attrs.append((a.module, a.attr, blocks * a.width))
    u.params = [_join(p, "weight") for p in space.producers]
    return u


def _flat_children(prefix: str, seq: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for child_name, child in seq.named_children():
        full = _join(prefix, child_name)
        if isinstance(child, nn.Sequential):
            yield from _flat_children(full, child)
        else:
            yield full, child


def _sequential_units(model: nn.Module, found: Found, claimed: set[str]) -> None:
    """Rule 3: chains inside nn.Sequential containers (outermost ones, flattened)."""
    inner = {
        id(m)
        for n, s in model.named_modules()
        if isinstance(s, nn.Sequential)
        for m in s.modules()
        if m is not s
    }
    for seq_name, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential) or id(seq) in inner:
            continue
        children = list(_flat_children(seq_name, seq))
        for i, (name, mod) in enumerate(children):
            if name in claimed or not isinstance(mod, (nn.Linear, nn.Conv2d)):
                continue
            if not _producer_ok(mod):
                found.problems[name] = "grouped convolutions are not supported"
                continue
            chain = _Chain()
            for next_name, nxt in children[i + 1 :]:
                if isinstance(nxt, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    chain.norms.append(next_name)
                elif isinstance(nxt, nn.Flatten):
                    chain.flattened = True
                elif isinstance(nxt, (nn.Linear, nn.Conv2d)):
                    chain.consumer = next_name
                    break
                elif not isinstance(nxt, _pass_modules()):
                    found.problems[name] = (
                        f"its output goes to {type(nxt).__name__} '{next_name}', which no rule handles"
                    )
                    break
            if name in found.problems:
                continue
            if chain.consumer is None:
                found.problems[name] = (
                    f"it is the last layer of Sequential '{seq_name or 'model'}', so its outputs leave it"
                )
                continue
            _add_chain(model, name, chain, found)


def find_units(model: nn.Module) -> Found:
    """Every prunable unit of the model, and why the other Linear/Conv2d layers are not."""
    found = Found()
    claimed: set[str] = set()
    _hf_units(model, found, claimed)
    if not _fx_units(model, found, claimed):
        _sequential_units(model, found, claimed)
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Linear, nn.Conv2d)) and name not in claimed and name not in found.units:
            found.problems.setdefault(name, "no rule finds the layers that read its outputs")
    return found


# ---------------------------------------------------------------------------------------------
# applying


def _unit_scores(model: nn.Module, unit: Unit, criterion: str) -> torch.Tensor:
    total: torch.Tensor | None = None
    for s in unit.score:
        w = model.get_submodule(s.module).get_parameter(s.tensor).detach().float()
        w = w.movedim(s.dim, 0)
        stride = s.stride or unit.size * s.width
        w = w.reshape(s.blocks, stride, -1)[:, : unit.size * s.width].reshape(s.blocks, unit.size, -1)
        part = w.abs().sum((0, 2)) if criterion == "l1" else w.pow(2).sum((0, 2))
        total = part if total is None else total + part
    assert total is not None
    return total if criterion == "l1" else total.sqrt()


def slice_module(model: nn.Module, edit: dict[str, Any]) -> None:
    """Apply one structured.slice edit (used by the op itself and by artifact replay)."""
    mod = model.get_submodule(edit["module"])
    with torch.no_grad():
        for s in edit["slices"]:
            t = getattr(mod, s["tensor"])
            idx = torch.tensor(s["index"], dtype=torch.long, device=t.device)
            replace_param(mod, s["tensor"], t.index_select(int(s["dim"]), idx))
    for attr, value in edit["attrs"].items():
        setattr(mod, attr, value)


@register_edit(EDIT)
def _replay(model: nn.Module, edit: dict[str, Any]) -> None:
    slice_module(model, edit)


def _plan_edits(model: nn.Module, unit: Unit, keep: list[int]) -> list[dict[str, Any]]:
    by_module: dict[str, dict[str, Any]] = {}
    for s in unit.slices:
        e = by_module.setdefault(s.module, {"kind": EDIT, "module": s.module, "slices": [], "attrs": {}})
        sl: dict[str, Any] = {"tensor": s.tensor, "dim": s.dim, "index": s.index(keep, unit.size)}
        if s.width > 1:  # elements per unit along dim (channels per head): views group by it
            sl["group"] = s.width
        e["slices"].append(sl)
    for module, attr, per_unit in unit.attrs:
        e = by_module.setdefault(module, {"kind": EDIT, "module": module, "slices": [], "attrs": {}})
        e["attrs"][attr] = per_unit * len(keep)
    return list(by_module.values())


def _record(cm: CompressedModel, edit: dict[str, Any]) -> None:
    """Compose kept indices and slice masks for every tensor an edit shrinks."""
    for s in edit["slices"]:
        pname = _join(edit["module"], s["tensor"])
        dim, index = int(s["dim"]), list(s["index"])
        per_dim = cm.kept_indices.setdefault(pname, {})
        before = per_dim.get(dim)
        per_dim[dim] = index if before is None else [before[i] for i in index]
        if pname in cm.masks:
            mask = cm.masks[pname]
            cm.masks[pname] = mask.index_select(
                dim, torch.tensor(index, dtype=torch.long, device=mask.device)
            )


def _select_units(found: Found, model: nn.Module, params: dict[str, Any]) -> list[Unit]:
    include, exclude = as_patterns(params.get("include")), as_patterns(params.get("exclude"))
    universe = param_names(model)
    for pname, pats in (("include", include), ("exclude", exclude)):
        for p in pats:
            if not match_names(universe, [p]):
                raise OpError(OP, f"pattern '{p}' matches no parameter of the model", param=pname)
    kinds = {"all": ("neurons", "heads"), "neurons": ("neurons",), "heads": ("heads",)}[params["structures"]]
    units = [u for u in found.units.values() if u.kind in kinds]
    if include:
        chosen = [u for u in units if match_names(u.params, include)]
        for p in include:  # a pattern must select at least one prunable layer, else say why not
            if any(match_names(u.params, [p]) for u in units):
                continue
            for name in match_names(universe, [p]):
                module = name.rpartition(".")[0]
                if module in found.problems:
                    raise OpError(
                        OP,
                        f"cannot prune this layer: {found.problems[module]}",
                        param="include",
                        layer=module,
                    )
            raise OpError(
                OP,
                f"pattern '{p}' matches no prunable layer ({params['structures']}: Conv2d channels, "
                "Linear/Conv1D neurons, attention heads)",
                param="include",
            )
    else:
        chosen = units
    if exclude:
        chosen = [u for u in chosen if not match_names(u.params, exclude)]
    if not chosen:
        why = "; ".join(f"{k}: {v}" for k, v in list(found.problems.items())[:3])
        raise OpError(
            OP, "no layer can be structurally pruned" + (f" ({why})" if why else ""), param="include"
        )
    return chosen


@register_op(
    OP,
    family="pruning",
    summary="Structured pruning: remove channels, neurons or attention heads; tensors really shrink.",
    params=[
        Param("amount", "float", "Fraction of the units (channels, neurons, heads) removed from each targeted layer.",
              default=0.25, minimum=0.0, maximum=1.0, exclusive_maximum=True),
        Param("criterion", "enum", "Importance of a unit: `l1` or `l2` norm of its weights.", default="l2", choices=("l1", "l2")),
        Param("structures", "enum", "What to remove: `neurons` (conv channels and Linear/MLP neurons), `heads` (attention heads), or `all`.",
              default="all", choices=("all", "neurons", "heads")),
        INCLUDE,
        EXCLUDE,
    ],
    changes_structure=True,
)  # fmt: skip
def prune_structured(cm: CompressedModel, params: dict[str, Any], ctx: OpContext) -> CompressedModel:
    """Remove the least important output channels, neurons or attention heads of each layer.

    Works on Conv2d channels (the following BatchNorm and the next Conv2d/Linear shrink with it,
    including across a flatten), Linear neurons (e.g. an MLP's fc1 rows and fc2 columns) and the
    heads of Hugging Face BERT-style and GPT-2-style attention. In residual CNNs, channels joined
    by a residual addition are pruned together in every layer writing or reading them, depthwise
    convolutions shrink with their input, and grouped convolutions lose the same positions in
    every group (so their groups stay equal). Shapes really shrink, so parameter
    count, size and latency all drop, and the model still runs.

    `include`/`exclude` match parameter names of the layer being pruned (for heads, the q/k/v
    weights: `*attention.self.query.weight` or `*attn.c_attn.weight`). Without `include`, every
    layer that can be pruned safely is; output layers and channels reaching a concatenation or
    a reshape are left alone. Naming one layer of a coupled group prunes the whole group. Kept indices are recorded so comparisons align pruned layers with the base.
    """
    model = to_device(cm, ctx)
    found = find_units(model)
    units = _select_units(found, model, params)
    touched = {_join(s.module, s.tensor) for u in units for s in u.slices}
    refuse_encoded(OP, cm, touched, "prune structurally")
    for module in sorted({s.module for u in units for s in u.slices}):
        if "input_scale" in model.get_submodule(module)._buffers:  # smoothquant's per-channel input scale
            raise OpError(
                OP,
                "this layer has a per-channel input scale (smoothquant); prune structurally before it",
                layer=module,
            )
    removed_any = False
    for i, unit in enumerate(units):
        ctx.check_cancelled()
        n_remove = min(round(params["amount"] * unit.size), unit.size - 1)
        if n_remove <= 0:
            continue
        scores = _unit_scores(model, unit, params["criterion"])
        order = torch.sort(scores.cpu(), descending=True, stable=True).indices
        keep = sorted(order[: unit.size - n_remove].tolist())
        for edit in _plan_edits(model, unit, keep):
            slice_module(model, edit)
            _record(cm, edit)
            cm.edits.append(edit)
        removed_any = True
        ctx.progress((i + 1) / len(units), f"{unit.name}: kept {len(keep)} of {unit.size} {unit.kind}")
    if not removed_any:
        raise OpError(OP, "removes nothing: amount x units rounds to 0 for every layer", param="amount")
    if not params.get("include") and found.problems:
        skipped = ", ".join(sorted(found.problems)[:5])
        ctx.progress(
            1.0, f"left unpruned (no safe rule): {skipped}{' ...' if len(found.problems) > 5 else ''}"
        )
    return cm
