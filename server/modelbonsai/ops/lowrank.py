"""Low-rank factorisation: replace a layer's weight W (out x in) by two factors of rank r.

W ~= U_r S_r V_r^T from a truncated SVD; the layer becomes `first` (in -> r, weight
sqrt(S_r) V_r^T, no bias) followed by `second` (r -> out, weight U_r sqrt(S_r), the old bias).
Splitting sqrt(S) over both factors keeps their scales alike, which helps later quantization
and fine-tuning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn
else:  # imported on first use: registering the ops needs no torch (lazy.py)
    from ..lazy import nn, torch

if TYPE_CHECKING:
    from .lowrank_modules import LowRankConv2d, LowRankLinear

from .registry import CompressedModel, OpContext, OpError, Param, register_edit, register_op
from .targets import EXCLUDE, INCLUDE, is_hf_conv1d, owner, refuse_encoded, select_weights, to_device

OP = "lowrank"
EDIT = "lowrank.factorize"


def __getattr__(name: str) -> Any:
    # The factorised layer classes live in lowrank_modules.py (torch at import); importable from
    # here as before.
    if name in ("LowRankLinear", "LowRankConv2d"):
        from . import lowrank_modules

        return getattr(lowrank_modules, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _weight(module: nn.Module) -> torch.Tensor:
    w = getattr(module, "weight", None)
    assert isinstance(w, torch.Tensor)
    return w


def _matrix(module: nn.Module) -> torch.Tensor:
    """The weight as an (out x in) matrix, whatever the layer's own layout."""
    w = _weight(module).detach().float()
    if is_hf_conv1d(module):
        return w.t()
    return w.reshape(w.shape[0], -1)


def _applicable(module: nn.Module) -> str | None:
    """None if the layer can be factorised, else why not."""
    if isinstance(module, nn.Linear) or is_hf_conv1d(module):
        return None
    if isinstance(module, nn.Conv2d):
        if module.kernel_size != (1, 1) or module.groups != 1 or module.padding_mode != "zeros":
            return "only 1x1, ungrouped Conv2d layers can be factorised"
        return None
    return f"{type(module).__name__} is not a Linear, 1x1 Conv2d or Conv1D layer"


def _factorised(module: nn.Module, rank: int) -> LowRankLinear | LowRankConv2d:
    from .lowrank_modules import LowRankConv2d, LowRankLinear

    if isinstance(module, nn.Conv2d):
        return LowRankConv2d(module, rank)
    out_f, in_f = _matrix(module).shape
    return LowRankLinear(in_f, out_f, rank, bias=getattr(module, "bias", None) is not None)


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)


@register_edit(EDIT)
def _replay(model: nn.Module, edit: dict[str, Any]) -> None:
    """Swap the layer for its factorised shell; the artifact's tensors fill it afterwards."""
    old = model.get_submodule(edit["module"])
    new = _factorised(old, int(edit["rank"]))
    new.to(device=_weight(old).device, dtype=_weight(old).dtype)
    _set_module(model, edit["module"], new)


def choose_rank(s: torch.Tensor, rank: int | None, energy: float | None) -> int:
    """Rank asked for directly, or the smallest rank keeping `energy` of sum(s^2)."""
    if rank is not None:
        return min(rank, int(s.numel()))
    assert energy is not None
    cum = torch.cumsum(s.double() ** 2, 0)
    total = float(cum[-1])
    if total == 0.0:
        return 1
    # small tolerance so energy=1.0 is not defeated by float rounding of the cumulative sum
    return int(torch.searchsorted(cum / total, torch.tensor(energy - 1e-12, dtype=cum.dtype)).item()) + 1


@register_op(
    OP,
    family="factorisation",
    summary="Truncated-SVD factorisation of Linear / 1x1 Conv layers into two smaller layers.",
    params=[
        Param("rank", "int", "Rank kept in every targeted layer (give `rank` or `energy`).", minimum=1, maximum=1_000_000),
        Param("energy", "float", "Keep the smallest rank whose singular values hold this fraction of sum(s^2) "
              "(give `rank` or `energy`).", minimum=0.0, maximum=1.0, exclusive_minimum=True),
        INCLUDE,
        EXCLUDE,
    ],
    changes_structure=True,
)  # fmt: skip
def lowrank(cm: CompressedModel, params: dict[str, Any], ctx: OpContext) -> CompressedModel:
    """Factorise each targeted layer W (out x in) into two layers of rank r via truncated SVD.

    Give exactly one of `rank` (the same r everywhere) or `energy` (per layer, the smallest r
    whose singular values keep that fraction of the squared Frobenius norm). Targets default to
    every Linear, transformers Conv1D and 1x1 Conv2d weight; a layer is left whole (and a
    progress message says so) when r x (in + out) would not be smaller than in x out, since
    factorising it would only grow the model. The new module has submodules `first` and
    `second`, so parameter names become e.g. `fc1.first.weight`; the artifact stores the factors.
    Pruning masks on a factorised weight are dropped (the factors are dense).
    """
    rank, energy = params.get("rank"), params.get("energy")
    if (rank is None) == (energy is None):
        raise OpError(
            OP, "give exactly one of 'rank' or 'energy'", param="rank" if rank is None else "energy"
        )
    model = to_device(cm, ctx)
    names = select_weights(OP, model, params.get("include"), params.get("exclude"))
    explicit = bool(params.get("include"))
    targets: list[tuple[str, nn.Module]] = []
    for name in names:
        mod_name, module, attr = owner(model, name)
        why = _applicable(module) if attr == "weight" else "only layer weights can be factorised"
        if why is None:
            targets.append((mod_name, module))
        elif explicit:
            raise OpError(OP, why, param="include", layer=mod_name)
    if not targets:
        raise OpError(OP, "no Linear, Conv1D or 1x1 Conv2d layer among the targets", param="include")
    refuse_encoded(OP, cm, [f"{n}.weight" for n, _ in targets], "factorise")
    skipped: list[str] = []
    done = 0
    for i, (mod_name, module) in enumerate(targets):
        ctx.check_cancelled()
        w = _matrix(module)
        out_f, in_f = w.shape
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        r = choose_rank(s, rank, energy)
        if r * (in_f + out_f) >= in_f * out_f:
            skipped.append(f"{mod_name} (rank {r} of {out_f}x{in_f})")
            continue
        root = s[:r].sqrt()
        new = _factorised(module, r)
        dtype, device = _weight(module).dtype, _weight(module).device
        with torch.no_grad():
            first = (root[:, None] * vh[:r]).to(dtype)
            second = (u[:, :r] * root[None, :]).to(dtype)
            new.first.weight.copy_(first.reshape(new.first.weight.shape))
            new.second.weight.copy_(second.reshape(new.second.weight.shape))
            if new.second.bias is not None:
                bias = getattr(module, "bias", None)
                assert isinstance(bias, torch.Tensor)
                new.second.bias.copy_(bias.detach())
        new.to(device=device, dtype=dtype)
        hf = is_hf_conv1d(module)
        _set_module(model, mod_name, new)
        _rename_records(cm, mod_name, out_dim=1 if hf else 0)
        cm.edits.append({"kind": EDIT, "module": mod_name, "rank": r})
        done += 1
        ctx.progress((i + 1) / len(targets), f"{mod_name}: rank {r} of {min(in_f, out_f)}")
    if skipped:
        ctx.progress(1.0, "not factorised (would not save parameters): " + ", ".join(skipped))
    if done == 0:
        raise OpError(OP, "no layer would get smaller at this rank/energy: " + ", ".join(skipped[:5]),
                      param="rank" if rank is not None else "energy")  # fmt: skip
    return cm


def _rename_records(cm: CompressedModel, mod_name: str, out_dim: int) -> None:
    """The weight is now two dense factors: its mask and kept indices no longer apply as such.

    Kept output indices still hold for `second` (same rows, same bias), input indices for `first`.
    `out_dim` is the old weight's output dimension (1 for transformers Conv1D, stored [in, out]).
    """
    w, b = f"{mod_name}.weight", f"{mod_name}.bias"
    cm.masks.pop(w, None)
    cm.masks.pop(b, None)
    kept = cm.kept_indices.pop(w, None)
    if kept:
        if out_dim in kept:
            cm.kept_indices[f"{mod_name}.second.weight"] = {0: kept[out_dim]}
        if 1 - out_dim in kept:
            cm.kept_indices[f"{mod_name}.first.weight"] = {1: kept[1 - out_dim]}
    kept_b = cm.kept_indices.pop(b, None)
    if kept_b:
        cm.kept_indices[f"{mod_name}.second.bias"] = kept_b
