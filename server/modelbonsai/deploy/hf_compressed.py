"""Quantized weights as compressed-tensors `pack-quantized` tensors: a Hugging Face folder that
transformers loads with no custom code and that keeps the weights Bonsai stored, not floats.

What Bonsai stores (``ops/quantize.py``, ``artifacts/forms.py``) maps onto compressed-tensors
0.20.1 without re-rounding anything:

- Bonsai's codes are unsigned, ``value = (code - zero) * scale`` in float32, with ``zero =
  2**(bits-1)`` on a symmetric grid. compressed-tensors stores signed integers ``q`` and signed
  zero points ``zp`` with ``value = (q - zp) * scale``; subtracting ``2**(bits-1)`` from both the
  code and the zero point gives the same difference, so every weight comes back bit for bit.
- Granularity: Bonsai's `tensor` / `channel` / `group` (groups of consecutive input columns of a
  Linear weight) are the `tensor` / `channel` / `group` strategies (scale shapes [1], [out, 1],
  [out, in / group_size]).
- Dynamic int8 layers (`quantize.dynamic`) keep their int8 weights as 8-bit symmetric tensors
  (per tensor or per channel); the activations then run in floating point (compressed-tensors has
  no equivalent of torch's dynamic activation quantization), so the export computes what
  `float_copy` computes.

Scales are written in float32: compressed-tensors dequantizes in the scale's dtype, and float32
reproduces Bonsai's float32 formula exactly (a float16 scale would round each product to 11 bits).

What it cannot express is refused with the op and the layer named (:class:`NotExpressible`):
compressed-tensors compresses only `nn.Linear` and `nn.Embedding` weights, and transformers 5.25
cannot load a compressed Embedding (its weight initialisation reads `.weight` before the packed
parts are unpacked), so GPT-2's `Conv1D` layers, embeddings, convolutions, quantized biases and
norms, tied weights and look-up tables (`palettize`) have no compressed form that transformers
loads.

Sparsity: compressed-tensors 0.20.1 dropped its sparse compressors (`sparse-bitmask` is a legacy
config name with no compressor, and `update_config` writes an empty `sparsity_config`), so pruned
zeros are written as dense values. Sparse tensors are counted in the notes so the export says so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

#: the compressed-tensors release this writes for (the format of its `pack-quantized` tensors)
COMPRESSED_TENSORS_VERSION = "0.20.1"
INSTALL_HINT = f"pip install 'compressed-tensors=={COMPRESSED_TENSORS_VERSION}' (or modelbonsai[deploy])"

#: which ops make which kind of stored tensor (to name the op in a refusal)
QUANT_OPS = ("quantize.weights", "quantize.calibrated", "quantize.awq")
PALETTE_OPS = ("palettize",)
DYNAMIC_OPS = ("quantize.dynamic",)


class NotExpressible(ValueError):
    """A tensor or layer that a Hugging Face folder cannot state (names the op and the layer)."""

    def __init__(self, op: str, layer: str, why: str):
        super().__init__(f"{op} on '{layer}': {why}")
        self.op, self.layer, self.why = op, layer, why


@dataclass
class Compressed:
    """The state dict to save (quantized Linear weights replaced by their packed parts), the
    `quantization_config` for config.json (None: nothing quantized) and notes for the export."""

    state: dict[str, torch.Tensor]
    quantization_config: dict[str, Any] | None
    layers: dict[str, str] = field(default_factory=dict)  # layer -> its scheme, e.g. "int4 group 32"
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Scheme:
    bits: int
    symmetric: bool
    strategy: str
    group_size: int | None

    def weights(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "num_bits": self.bits,
            "type": "int",
            "symmetric": self.symmetric,
            "strategy": self.strategy,
            "dynamic": False,
        }
        if self.group_size is not None:
            out["group_size"] = self.group_size
        return out

    def describe(self) -> str:
        text = f"int{self.bits} {self.strategy}" + (f" {self.group_size}" if self.group_size else "")
        return text + ("" if self.symmetric else " asymmetric")


def op_named(kinds: Sequence[str], ops: Sequence[str]) -> str:
    """The op of the model's lineage (`ops`, base first) that made a tensor of this kind: the
    latest one of `kinds` in it, else all of `kinds` (the lineage was not given)."""
    for op in reversed(ops):
        if op in kinds:
            return op
    return " / ".join(kinds)


def compress_state(
    module: nn.Module,
    state: dict[str, torch.Tensor],
    encodings: dict[str, Any],
    dynamic: dict[str, torch.Tensor],
    ops: Sequence[str] = (),
) -> Compressed:
    """Replace every quantized Linear weight of `state` by its compressed-tensors parts.

    `module` is the float model `state` belongs to (its layer types decide what can be
    compressed), `encodings` the CompressedModel's (name -> QuantEncoding or another encoding),
    `dynamic` the torch-quantized int8 weights of dynamic layers (name of the weight -> qint8
    tensor). Raises NotExpressible for the first tensor compressed-tensors cannot hold, and
    ImportError (with an install hint) when compressed-tensors is missing.
    """
    from ..ops.quantize import QuantEncoding

    state = dict(state)
    plans: list[tuple[str, _Scheme, torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
    for name in sorted(encodings):
        enc = encodings[name]
        if not isinstance(enc, QuantEncoding):
            kind = getattr(enc, "kind", type(enc).__name__)
            op = op_named(PALETTE_OPS if kind == "palette" else (kind,), ops)
            raise NotExpressible(
                op,
                name,
                f"a '{kind}' tensor (values from a look-up table) has no compressed-tensors integer form",
            )
        layer = _linear_owner(module, name, op_named(QUANT_OPS, ops))
        if enc.axis != 0:
            raise NotExpressible(
                op_named(QUANT_OPS, ops), name, "its scales run along the input axis, not the output one"
            )
        if name not in state:
            raise NotExpressible(op_named(QUANT_OPS, ops), name, "the weight is not in the model's state")
        weight = state[name]
        codes = enc.encode(weight.detach().to("cpu"))
        # The float weight must lie on its grid (a later op may have moved it): else the packed
        # codes would not be what the model evaluated.
        if not torch.equal(enc.dequantize(codes, weight.dtype), weight.detach().to("cpu")):
            raise NotExpressible(
                op_named(QUANT_OPS, ops),
                name,
                "its values are no longer on their quantization grid (changed by a later op)",
            )
        half = 1 << (enc.bits - 1)
        q = (codes.to(torch.int16) - half).to(torch.int8)
        scales = enc.scales.detach().to("cpu", torch.float32)
        zp = None if enc.zeros is None else (enc.zeros.detach().to("cpu", torch.int16) - half).to(torch.int8)
        strategy = {"tensor": "tensor", "channel": "channel", "group": "group"}[enc.granularity]
        if strategy == "tensor":
            scales, zp = scales.reshape(1), None if zp is None else zp.reshape(1)
        scheme = _Scheme(enc.bits, enc.symmetric, strategy, enc.group_size if strategy == "group" else None)
        plans.append((layer, scheme, q, scales, zp))

    for wname in sorted(dynamic):
        qw = dynamic[wname]
        op = op_named(DYNAMIC_OPS, ops)
        layer = _linear_owner(module, wname, op)
        per_channel = qw.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
        zps = qw.q_per_channel_zero_points() if per_channel else torch.tensor([qw.q_zero_point()])
        if bool((zps != 0).any()):
            raise NotExpressible(op, wname, "its int8 grid has non-zero zero points")
        if per_channel and int(qw.q_per_channel_axis()) != 0:
            raise NotExpressible(op, wname, "its scales run along the input axis, not the output one")
        scales64 = (
            qw.q_per_channel_scales() if per_channel else torch.tensor([qw.q_scale()], dtype=torch.float64)
        )
        scales = scales64.to(torch.float32)
        scheme = _Scheme(8, True, "channel" if per_channel else "tensor", None)
        plans.append(
            (
                layer,
                scheme,
                qw.int_repr().contiguous(),
                scales.reshape(-1, 1) if per_channel else scales,
                None,
            )
        )

    if not plans:
        return Compressed(state, None, notes=_sparsity_notes(state))
    try:
        from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32
        from compressed_tensors.quantization import QuantizationConfig
    except ImportError as e:
        raise ImportError(
            f"writing compressed-tensors weights needs compressed-tensors: {INSTALL_HINT}"
        ) from e

    groups: dict[_Scheme, list[str]] = {}
    layers: dict[str, str] = {}
    for layer, scheme, q, scales, zp in plans:
        shape = tuple(state[f"{layer}.weight"].shape)
        del state[f"{layer}.weight"]
        state[f"{layer}.weight_packed"] = pack_to_int32(q.reshape(shape), scheme.bits)
        state[f"{layer}.weight_scale"] = scales.contiguous()
        state[f"{layer}.weight_shape"] = torch.tensor(list(shape))
        if zp is not None:
            # channel / group zero points are packed along the output axis, a tensor's one is not
            # (compressed-tensors' PACK_ZP_STRATS)
            state[f"{layer}.weight_zero_point"] = (
                zp.reshape(1) if scheme.strategy == "tensor" else pack_to_int32(zp, scheme.bits, packed_dim=0)
            ).contiguous()
        groups.setdefault(scheme, []).append(layer)
        layers[layer] = scheme.describe()

    prefix = str(getattr(module, "base_model_prefix", "") or "")
    config: dict[str, Any] = {
        "quant_method": "compressed-tensors",
        "format": "pack-quantized",
        "quantization_status": "compressed",
        "version": COMPRESSED_TENSORS_VERSION,
        "config_groups": {
            f"group_{i}": {
                "targets": [_target(layer, prefix) for layer in names],
                "weights": scheme.weights(),
            }
            for i, (scheme, names) in enumerate(sorted(groups.items(), key=lambda kv: kv[1][0]))
        },
        "ignore": [],
        "sparsity_config": {},
    }
    if _needs_dequantize_route(groups, module):
        # transformers 5.25's compressed route builds the zero points of an asymmetric channel or
        # group scheme unpacked while compressed-tensors writes them packed (and decompresses on
        # the first forward in the scale's dtype); its `dequantize` route reads the tensors as
        # written and casts to the model's dtype at load. Same weights, one more load step.
        config["dequantize"] = True
    # Validated by compressed-tensors itself: a config it would not read is a bug here, not a
    # surprise for the user at load time.
    QuantizationConfig.model_validate({k: v for k, v in config.items() if k != "dequantize"})
    return Compressed(state, config, layers, _sparsity_notes(state))


def _needs_dequantize_route(groups: dict[_Scheme, list[str]], module: nn.Module) -> bool:
    dtypes = {p.dtype for p in module.parameters() if p.is_floating_point()}
    asymmetric_packed = any(not s.symmetric and s.strategy in ("channel", "group") for s in groups)
    return asymmetric_packed or dtypes != {torch.float32}


def _target(layer: str, prefix: str) -> str:
    """A compressed-tensors target matching this layer with or without the base model's prefix:
    the folder may be loaded with another auto class than it was saved with (a
    BertForSequenceClassification folder as AutoModel drops the `bert.` prefix; the reverse adds
    it), and an exact name would then quantize nothing while the packed tensors went unread."""
    if prefix and layer.startswith(prefix + "."):
        layer = layer[len(prefix) + 1 :]
    return "re:(^|.*\\.)" + re.escape(layer) + "$"


def _linear_owner(module: nn.Module, name: str, op: str) -> str:
    """The layer whose weight `name` is, when compressed-tensors can hold it (an nn.Linear weight,
    not shared with another tensor); NotExpressible otherwise."""
    layer, _, leaf = name.rpartition(".")
    try:
        owner = module.get_submodule(layer) if layer else module
    except AttributeError:
        raise NotExpressible(op, name, "no such layer in the model") from None
    if leaf != "weight":
        raise NotExpressible(
            op, name, "compressed-tensors stores only layer weights quantized, not biases or norms"
        )
    if type(owner).__name__ == "Conv1D":
        raise NotExpressible(
            op,
            layer,
            "transformers' Conv1D (GPT-2's layers) is not an nn.Linear, and compressed-tensors "
            "compresses only nn.Linear weights",
        )
    if not isinstance(owner, nn.Linear):
        raise NotExpressible(
            op,
            layer,
            f"its layer is of type {type(owner).__name__}, not nn.Linear, and compressed-tensors "
            "compresses only nn.Linear weights",
        )
    weight = owner.weight
    for other, p in module.named_parameters(remove_duplicate=False):
        if other != name and p is weight:
            raise NotExpressible(op, name, f"the weight is tied to '{other}', which would stay unquantized")
    return layer


def _sparsity_notes(state: dict[str, torch.Tensor]) -> list[str]:
    sparse = []
    for name, t in state.items():
        if name.endswith(".weight") and t.is_floating_point() and t.dim() == 2 and t.numel() >= 64:
            zeros = int((t == 0).sum())
            if zeros * 4 >= t.numel():  # a quarter or more: pruned, not chance
                sparse.append(f"{name} ({100 * zeros / t.numel():.0f}% zeros)")
    if not sparse:
        return []
    return [
        f"{len(sparse)} sparse weights are written dense (compressed-tensors {COMPRESSED_TENSORS_VERSION} "
        "has no sparse format that transformers loads): "
        + ", ".join(sparse[:4])
        + (" ..." if len(sparse) > 4 else "")
    ]
