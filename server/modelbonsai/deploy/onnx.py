"""ONNX export (torch.onnx's dynamo exporter) and the ONNX Runtime session that runs it.

torch 2.13 has two exporters: the TorchScript one (`dynamo=False`) is deprecated and warns on
every call; the dynamo one (torch.export, then onnxscript) is the supported path and works offline,
so it is the one used. Opset 21: the first with blocked DequantizeLinear and 4-bit integer types.

Quantized weights (a `quant` encoding of at most 8 bits, whose dequantized codes are exactly the
model's weights) are written as integer codes and DequantizeLinear(codes, scale, zero point) in
the graph instead of float initializers: 8 down to 5 bits as uint8, 4 bits and fewer as packed
uint4, per tensor, per output channel (`axis`) or per group of a 2-D weight (`block_size`). The
dequantization is (code - zero) * scale in float32, the formula Bonsai's own encoding uses, so the
runtime's weights are bit-identical to the evaluated model's and the file is the smaller one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .flat import Call, DeployError, FlatModule

OPSET = 21


@dataclass
class OnnxExport:
    path: Path
    qdq: list[str] = field(default_factory=list)  # parameters written as integer codes + DequantizeLinear
    kept_float: dict[str, str] = field(default_factory=dict)  # quantized parameters left float, and why
    folded: list[str] = field(default_factory=list)  # of `qdq`: a BatchNorm folded into their scales


def export_onnx(
    model: nn.Module,
    call: Call,
    path: Path,
    *,
    encodings: dict[str, Any] | None = None,
    dynamic: dict[int, dict[int, str]] | None = None,
) -> OnnxExport:
    """Write `model` (called as `call` recorded) to `path` as ONNX. `dynamic`: input index ->
    {dim: name} of the dimensions that vary between calls. Raises DeployError naming the op and
    the layer the exporter cannot express."""
    import onnx

    from .layers import failing_layer

    flat = FlatModule(model, call).eval()
    inputs = tuple(call.inputs)
    shapes = _dynamic_shapes(inputs, dynamic)
    try:
        with _quiet():
            program = torch.onnx.export(
                flat,
                inputs,
                dynamo=True,
                external_data=False,
                opset_version=OPSET,
                dynamic_shapes=shapes,
                verbose=False,
            )
    except Exception as e:
        raise DeployError(failing_layer("ONNX", model, call, e, _export_one)) from e
    if program is None:  # only the TorchScript exporter returns None
        raise DeployError("the ONNX exporter returned no program")
    proto = program.model_proto
    info = OnnxExport(path)
    if encodings:
        _write_qdq(proto, model, encodings, info)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(path))
    return info


def _dynamic_shapes(
    inputs: tuple[torch.Tensor, ...], dynamic: dict[int, dict[int, str]] | None
) -> tuple[Any, ...] | None:
    if not dynamic:
        return None
    dims: dict[str, Any] = {}
    out: list[Any] = []
    for i, x in enumerate(inputs):
        spec = dynamic.get(i)
        if not spec:
            out.append(None)
            continue
        out.append(
            {d: dims.setdefault(n, torch.export.Dim(n, min=1)) for d, n in spec.items() if d < x.dim()}
        )
    # FlatModule.forward(*tensors): one argument, the tuple of tensors, so one spec (a tuple)
    return (tuple(out),)


def _quiet() -> Any:
    """The exporter reports its steps with print and logging ("[torch.onnx] Obtain model graph...");
    Bonsai's output (and the language server's stdout) is no place for them."""
    import contextlib
    import io
    import logging
    import warnings

    @contextlib.contextmanager
    def cm() -> Any:
        loggers = [
            logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "torch._dynamo")
        ]
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                yield
        finally:
            for lg, lv in zip(loggers, levels, strict=True):
                lg.setLevel(lv)

    return cm()


# -- weights as integer codes -------------------------------------------------------------------------
def _write_qdq(proto: Any, model: nn.Module, encodings: dict[str, Any], info: OnnxExport) -> None:
    from onnx import helper, numpy_helper

    graph = proto.graph
    by_name = {t.name: t for t in graph.initializer}
    params = dict(model.named_parameters())
    nodes = []
    for name, enc in encodings.items():
        if getattr(enc, "kind", None) != "quant":
            continue
        why = _qdq_refusal(enc, params.get(name))
        init = by_name.get(f"model.{name}")
        if init is None:
            why = why or "the exporter folded it into another tensor"
        elif tuple(init.dims) != tuple(enc.shape):
            why = why or f"exported with shape {tuple(init.dims)}, not {tuple(enc.shape)}"
        if why is not None or init is None:
            info.kept_float[name] = why or ""
            continue
        weight = params[name].detach().to("cpu", torch.float32)
        codes = enc.encode(weight)
        if not torch.equal(enc.dequantize(codes), weight):
            info.kept_float[name] = "its weights are not on its quantization grid"
            continue
        tensors, attrs = _qdq_tensors(enc, codes)
        exported = numpy_helper.to_array(init)
        if not np.array_equal(exported, weight.numpy()):
            # the exporter's optimizer folds a BatchNorm into the Conv before it, under the
            # weight's own name: each output channel scaled by its factor k. Codes times
            # (scale * k) are those values again (to float rounding), so they stay codes.
            folded = _folded_scales(exported, weight.numpy(), enc, tensors, attrs)
            if folded is None:
                info.kept_float[name] = "the exporter folded another op into it, not as a per-channel factor"
                continue
            tensors, attrs = folded
            info.folded.append(name)
        base = f"model.{name}"
        qname, sname, zname = f"{base}.codes", f"{base}.scale", f"{base}.zero_point"
        graph.initializer.remove(init)
        graph.initializer.extend(
            [
                _int_tensor(qname, tensors["codes"], enc.bits),
                numpy_helper.from_array(tensors["scale"], sname),
                _int_tensor(zname, tensors["zero"], enc.bits),
            ]
        )
        nodes.append(
            helper.make_node("DequantizeLinear", [qname, sname, zname], [base], name=f"{base}.dq", **attrs)
        )
        info.qdq.append(name)
    # initializers are no graph inputs: the DequantizeLinear nodes go first, before their users
    for n in reversed(nodes):
        graph.node.insert(0, n)


def _qdq_refusal(enc: Any, weight: torch.Tensor | None) -> str | None:
    if weight is None:
        return "not a parameter of the model"
    if enc.bits > 8:
        return f"{enc.bits} bits do not fit 8-bit codes"
    if weight.dtype != torch.float32:
        return f"a {weight.dtype} weight (DequantizeLinear gives float32 here)"
    if enc.granularity == "group" and len(enc.shape) != 2:
        return "groups of a weight with more than 2 dimensions have no DequantizeLinear block layout"
    return None


def _qdq_tensors(enc: Any, codes: torch.Tensor) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    scales = enc.scales.to(torch.float32)
    zeros = enc.zero_points().round().to(torch.int32)
    q = codes.to(torch.int32).numpy()
    if enc.granularity == "tensor" or len(enc.shape) < 2:
        return {"codes": q, "scale": scales.reshape(()).numpy(), "zero": zeros.reshape(()).numpy()}, {}
    if enc.granularity == "channel":
        return (
            {
                "codes": q,
                "scale": scales[:, 0].contiguous().numpy(),
                "zero": zeros[:, 0].contiguous().numpy(),
            },
            {"axis": enc.axis},
        )
    # groups of `group_size` consecutive columns of a 2-D weight: blocks along the other axis
    s, z = (scales, zeros) if enc.axis == 0 else (scales.t(), zeros.t())
    return (
        {"codes": q, "scale": s.contiguous().numpy(), "zero": z.contiguous().numpy()},
        {"axis": 1 - enc.axis, "block_size": int(enc.group_size)},
    )


def _folded_scales(
    exported: np.ndarray, weight: np.ndarray, enc: Any, tensors: dict[str, np.ndarray], attrs: dict[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """Per-output-channel scales for a weight the exporter scaled channel by channel (`exported` =
    `weight` * k[c] along axis 0), or None when it is not such a scaling. Per-tensor scales
    become per-channel ones; groups (blocked scales) are left float."""
    if enc.granularity == "group" or exported.shape != weight.shape or weight.ndim < 2 or enc.axis != 0:
        return None
    w = weight.reshape(weight.shape[0], -1).astype(np.float64)
    e = exported.reshape(exported.shape[0], -1).astype(np.float64)
    norm = (w * w).sum(1)
    if (norm == 0).any():
        return None
    k = (w * e).sum(1) / norm
    if not np.all(np.isfinite(k)) or (k <= 0).any():
        return None  # a negative or zero factor would need a negative or zero scale
    if not np.allclose(w * k[:, None], e, rtol=1e-5, atol=1e-7 * max(1.0, float(np.abs(e).max()))):
        return None
    rows = weight.shape[0]
    scale = np.broadcast_to(np.asarray(tensors["scale"], np.float64).reshape(-1), (rows,)) * k
    zero = np.broadcast_to(np.asarray(tensors["zero"]).reshape(-1), (rows,))
    return (
        {"codes": tensors["codes"], "scale": scale.astype(np.float32), "zero": np.ascontiguousarray(zero)},
        {"axis": 0},
    )


def _int_tensor(name: str, values: np.ndarray, bits: int) -> Any:
    from onnx import TensorProto, helper

    if bits <= 4:  # packed two to a byte, the first element in the low nibble (ONNX's order)
        flat = values.reshape(-1).astype(np.uint8)
        if flat.size % 2:
            flat = np.concatenate([flat, np.zeros(1, np.uint8)])
        packed = (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8)
        return helper.make_tensor(name, TensorProto.UINT4, list(values.shape), packed.tobytes(), raw=True)
    return helper.make_tensor(
        name, TensorProto.UINT8, list(values.shape), values.astype(np.uint8).tobytes(), raw=True
    )


# -- running ------------------------------------------------------------------------------------------
class OnnxRuntimeProgram:
    """An exported file in an ONNX Runtime session on the CPU, on the calling thread only (one
    intra-op thread, sequential: the latency protocol's thread clock sees all of its work)."""

    def __init__(self, path: Path):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3  # errors only: its warnings are not the user's
        # Its QDQ fusions would turn DequantizeLinear -> MatMul into integer kernels that also
        # quantize the activations at run time (a GPT-2's logits moved by 0.27): not the model
        # Bonsai evaluated. Off, the weights are dequantized exactly and the kernels are float.
        so.add_session_config_entry("session.disable_quant_qdq", "1")
        try:
            self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise DeployError(f"ONNX Runtime cannot load the export: {_first_line(e)}") from e
        self.names = [i.name for i in self.session.get_inputs()]

    def prepare(self, inputs: list[torch.Tensor]) -> dict[str, np.ndarray]:
        if len(inputs) != len(self.names):
            raise DeployError(f"the ONNX graph takes {len(self.names)} inputs, the model {len(inputs)}")
        return {n: x.detach().cpu().contiguous().numpy() for n, x in zip(self.names, inputs, strict=True)}

    def run_prepared(self, feed: dict[str, np.ndarray]) -> list[Any]:
        return list(self.session.run(None, feed))

    def run(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [torch.from_numpy(np.asarray(o)) for o in self.run_prepared(self.prepare(inputs))]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _export_one(module: nn.Module, args: tuple[Any, ...]) -> object:
    with _quiet():
        return torch.onnx.export(module.eval(), args, dynamo=True, external_data=False, opset_version=OPSET)
