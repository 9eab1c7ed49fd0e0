"""Structurally changed models (`prune.structured`, `lowrank`) as Hugging Face folders: a config
that states the new shapes where the architecture can, else a clear reason and a loader script.

A Hugging Face class builds every layer from its config, so a pruned model loads with plain
`from_pretrained` only when some config rebuilds exactly its shapes and the module attributes
the pruning changed. That is checked, not assumed: each candidate config is built on the meta
device (no memory, no weights) and compared tensor by tensor and attribute by attribute with the
pruned model. Candidates are the size keys a config may hold for the feed-forward width
(`intermediate_size`, GPT-2's `n_inner`, ...), set to a width every pruned layer shares.

What no config can state, with transformers 5.25:
- heads removed from BERT or GPT-2 attention (the head size is `hidden_size /
  num_attention_heads`, and `pruned_heads` is no longer read by any model);
- layers pruned to different widths (one config key sizes every layer);
- factorised layers (`lowrank`: two Linear layers where the class has one).

Input hooks (`input.transform`: SmoothQuant / AWQ input scales that could not be folded, and
`quantize.static`'s activation rounding) are refused too. W8A8 has a compressed-tensors form
(`int-quantized` with `input_activations`), but transformers 5.25 cannot load it on the CPU: its
weight initialisation draws normal values into the int8 weight ("normal_kernel_cpu" not
implemented for 'Char'), and its `dequantize` route drops the activation rounding.

For structure, `write_loader` writes `load_bonsai_model.py` beside `model.safetensors`: it builds
the original class (from the config it embeds) with plain torch + transformers, resizes the
pruned tensors, swaps factorised layers for two Linear / 1x1 Conv layers, and loads the weights.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .hf_compressed import NotExpressible

LOADER = "load_bonsai_model.py"
SLICE, FACTORIZE = "structured.slice", "lowrank.factorize"
#: config keys that size the feed-forward layers of common architectures
WIDTH_KEYS = ("intermediate_size", "n_inner", "ffn_dim", "d_ff", "dim_feedforward", "inner_dim")
#: edits that do not change a model's tensor shapes
_SHAPE_NEUTRAL = ("cast.dtype", "quantize.dynamic")


def config_for(module: nn.Module, edits: Sequence[dict[str, Any]], ops: Sequence[str] = ()) -> dict[str, Any]:
    """Config keys to change so the module's class rebuilds `module` as it is ({} when its
    config already does); NotExpressible (op, layer, why) when no config can."""
    for e in edits:
        kind = e.get("kind")
        if kind == FACTORIZE:
            raise NotExpressible(
                "lowrank",
                str(e.get("module")),
                f"factorised into two layers of rank {e.get('rank')}, and a Hugging Face config has "
                "no key for a factorised layer",
            )
        if kind == "input.transform":
            quantized = list(e.get("quantized") or [])
            layers = [*quantized, *(e.get("scaled") or [])] or ["the model"]
            raise NotExpressible(
                "quantize.static" if quantized else _op_of(kind, ops),
                str(layers[0]),
                "the layer "
                + ("fake-quantizes" if quantized else "scales")
                + " its input in a forward hook, which no Hugging Face class has",
            )
        if kind not in (SLICE, *_SHAPE_NEUTRAL):
            raise NotExpressible(
                str(kind),
                str(e.get("module") or "the model"),
                f"a '{kind}' change is not part of any Hugging Face class",
            )
    slices = [e for e in edits if e.get("kind") == SLICE]
    config = module.config  # type: ignore[union-attr]
    mismatch = _mismatch(module, config, slices)
    if mismatch is None:
        return {}
    if not slices:
        raise NotExpressible("export", mismatch[0], f"the model no longer matches its config: {mismatch[1]}")
    heads = [e for e in slices if set(e.get("attrs", {})) & {"num_attention_heads", "num_heads"}]
    if heads:
        e = heads[0]
        attrs = e["attrs"]
        kept = attrs.get("num_attention_heads", attrs.get("num_heads"))
        raise NotExpressible(
            "prune.structured",
            str(e["module"]),
            f"{kept} attention heads kept: {type(config).__name__} takes the head size from "
            "hidden_size / num_attention_heads for every layer, and transformers no longer reads "
            "`pruned_heads`, so fewer heads per layer cannot be stated in config.json",
        )
    widths = _widths(slices)
    name = type(config).__name__
    if len(set(widths.values())) > 1:
        listed = ", ".join(f"{m}: {w}" for m, w in list(widths.items())[:4])
        raise NotExpressible(
            "prune.structured",
            next(iter(widths)),
            f"the pruned layers keep different widths ({listed}), and {name} has one width for every layer",
        )
    layer, what = mismatch
    if widths:
        width = next(iter(widths.values()))
        keys = [key for key in WIDTH_KEYS if _has_key(config, key)]
        for key in keys:
            candidate = copy.deepcopy(config)
            setattr(candidate, key, width)
            found = _mismatch(module, candidate, slices)
            if found is None:
                return {key: width}
            layer, what = found
        if keys:
            # e.g. only some layers pruned: the candidate resizes the others too
            raise NotExpressible(
                "prune.structured",
                layer,
                f"{name} has one {keys[0]} for every layer, and with {keys[0]} = {width} this layer "
                f"differs ({what}); were all layers pruned alike?",
            )
    raise NotExpressible("prune.structured", layer, f"no key of {name} states this shape ({what})")


def _op_of(kind: str | None, ops: Sequence[str]) -> str:
    """The op of the lineage that scaled a layer's input (an `input.transform` edit)."""
    for op in reversed(ops):
        if op in ("smoothquant", "quantize.awq"):
            return op
    return "smoothquant / quantize.awq"


def _has_key(config: Any, key: str) -> bool:
    return key in config.to_dict() or key in getattr(config, "attribute_map", {})


def _widths(slices: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Feed-forward layer -> the width it keeps (from the attributes the pruning set)."""
    out: dict[str, int] = {}
    for e in slices:
        attrs = e.get("attrs", {})
        for attr in ("out_features", "nf", "intermediate_size"):
            if attr in attrs and "num_attention_heads" not in attrs:
                out[str(e["module"])] = int(attrs[attr])
                break
    # a layer's producer and its consumer both appear; keep the producers' widths (the consumer
    # records in_features / nx of the same width)
    return out


def _mismatch(module: nn.Module, config: Any, slices: Sequence[dict[str, Any]]) -> tuple[str, str] | None:
    """(first tensor or attribute that differs, how) between `module` and its class built from
    `config` on the meta device; None when they agree."""
    try:
        with torch.device("meta"):
            fresh = type(module)(copy.deepcopy(config))
    except Exception as e:  # a config the class refuses
        return "config", f"the class cannot be built from it ({e})"
    want = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}
    for k in have:
        if k not in want:
            return k, "a tensor the config does not make"
        if want[k] != have[k]:
            return k, f"{list(have[k])} here, {list(want[k])} from the config"
    for k in want:
        if k not in have:
            return k, "a tensor the model lacks"
    for edit in slices:
        layer = str(edit["module"])
        try:
            built = fresh.get_submodule(layer)
        except AttributeError:
            return layer, "a layer the config does not make"
        for attr, value in edit.get("attrs", {}).items():
            if getattr(built, attr, None) != value:
                return layer, f"{attr} is {value} here, {getattr(built, attr, None)} from the config"
    return None


# -- the loader script -----------------------------------------------------------------------------
def loader_plan(edits: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The edits as the loader replays them: resizes (module, attrs) and factorisations."""
    plan: list[dict[str, Any]] = []
    for e in edits:
        if e.get("kind") == SLICE:
            plan.append(
                {
                    "resize": str(e["module"]),
                    "tensors": sorted({str(s["tensor"]) for s in e["slices"]}),
                    "attrs": dict(e.get("attrs", {})),
                }
            )
        elif e.get("kind") == FACTORIZE:
            plan.append({"factorize": str(e["module"])})
    return plan


def write_loader(path: Any, module: nn.Module, edits: Sequence[dict[str, Any]]) -> None:
    """Write the loader script for `module` (rebuilt from its class and config when it is a
    Hugging Face model; otherwise `load(folder, model=your_base_model)`)."""
    config = getattr(module, "config", None)
    hf: dict[str, Any] | None = None
    if config is not None and hasattr(config, "to_dict"):
        hf = {
            "class": [type(module).__module__, type(module).__name__],
            "config_class": [type(config).__module__, type(config).__name__],
            "config": json.loads(config.to_json_string(use_diff=False)),
        }
    text = _LOADER_TEMPLATE.replace("@HF@", repr(json.dumps(hf))).replace(
        "@PLAN@", repr(json.dumps(loader_plan(edits)))
    )
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


_LOADER_TEMPLATE = '''"""Load this Bonsai export with plain torch (+ transformers for a Hugging Face class).

The model's structure changed (pruned or factorised layers), which its original class cannot
build from a config. `load()` builds the original class, resizes the pruned tensors, replaces each
factorised layer by two smaller ones (`first`, `second`), and loads `model.safetensors` strictly.

    from load_bonsai_model import load
    model = load()                      # or load(folder, model=my_base_model) for a non-HF model
"""

import importlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

HF = json.loads(@HF@)
PLAN = json.loads(@PLAN@)


class Factorised(nn.Module):
    """A layer W replaced by second(first(x)), first: in -> rank without bias."""

    def __init__(self, first, second):
        super().__init__()
        self.first, self.second = first, second

    def forward(self, x):
        return self.second(self.first(x))


def build():
    """The original Hugging Face model class, built from the embedded config (random weights)."""
    if HF is None:
        raise ValueError("not a Hugging Face model: call load(folder, model=<your base model>)")
    config_cls = getattr(importlib.import_module(HF["config_class"][0]), HF["config_class"][1])
    model_cls = getattr(importlib.import_module(HF["class"][0]), HF["class"][1])
    return model_cls(config_cls.from_dict(HF["config"]))


def _set(model, name, new):
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def _factorised(old, state, name):
    w1, w2 = state[name + ".first.weight"], state[name + ".second.weight"]
    bias = (name + ".second.bias") in state
    if w1.dim() == 4:  # a 1x1 convolution: first keeps the stride and padding
        first = nn.Conv2d(w1.shape[1], w1.shape[0], 1, stride=old.stride, padding=old.padding, bias=False)
        second = nn.Conv2d(w2.shape[1], w2.shape[0], 1, bias=bias)
    else:
        first = nn.Linear(w1.shape[1], w1.shape[0], bias=False)
        second = nn.Linear(w2.shape[1], w2.shape[0], bias=bias)
    return Factorised(first, second)


def load(folder=None, model=None):
    folder = Path(folder) if folder is not None else Path(__file__).resolve().parent
    state = load_file(str(folder / "model.safetensors"))
    model = build() if model is None else model
    dtype = next(model.parameters()).dtype
    for step in PLAN:
        if "resize" in step:
            mod = model.get_submodule(step["resize"])
            for tensor in step["tensors"]:
                key = step["resize"] + "." + tensor
                old = getattr(mod, tensor)
                new = torch.empty(state[key].shape, dtype=old.dtype)
                if isinstance(old, nn.Parameter):
                    setattr(mod, tensor, nn.Parameter(new, requires_grad=old.requires_grad))
                else:
                    mod.register_buffer(tensor, new)
            for attr, value in step["attrs"].items():
                setattr(mod, attr, value)
        else:
            name = step["factorize"]
            _set(model, name, _factorised(model.get_submodule(name), state, name).to(dtype))
    model.load_state_dict(state, strict=True)
    return model.eval()
'''
