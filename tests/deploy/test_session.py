"""A model measured in its deploy targets: real exports, real runtimes (ONNX Runtime, ExecuTorch)
on the CPU, parity with the eager model on the evaluation instances, and what goes wrong recorded
as metrics (a layer a runtime cannot express, a missing package, parity beyond the tolerance)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from modelbonsai.deploy.session import Deployment, DeploySpec
from modelbonsai.deploy.targets import FLAG_METRIC, INSTALL_HINT, TARGETS
from modelbonsai.metrics.efficiency import EfficiencyOptions, LatencyMetric, efficiency_metrics
from modelbonsai.ops.registry import CompressedModel, OpContext, get_op

from .conftest import cnn, gpt2

pytest.importorskip("onnxruntime")


def _op(cm: CompressedModel, name: str, **params: object) -> CompressedModel:
    op = get_op(name)
    assert op is not None
    return op.fn(cm, op.resolve(dict(params)), OpContext(device=torch.device("cpu"), seed=0))


def _measure(model: torch.nn.Module, task, spec: DeploySpec, encodings=None) -> dict[str, object]:
    with Deployment(model, task, spec, encodings=encodings or {}) as d:
        d.prepare()
        eff = efficiency_metrics(
            model, task, torch.device("cpu"), options=EfficiencyOptions(companions=d.companions())
        )
    return {m.name: m for m in [*eff, *d.metrics()]}


def test_cnn_in_both_runtimes_matches_eager(image_task) -> None:
    pytest.importorskip("executorch")
    m = _measure(cnn(), image_task, DeploySpec(("onnxruntime", "executorch")))
    for t in ("onnxruntime", "executorch"):
        diff = m[f"{t}_max_abs_diff"].value
        print(f"{t}: max abs difference {diff:.3g} over 21 instances")
        assert diff <= 1e-5  # float32 kernels summing in another order: ~1e-7 here
        assert m[f"{t}_agreement"].value == 100.0
        assert m[f"{t}_size"].value > 1000
        lat = m[f"{t}_latency"]
        assert isinstance(lat, LatencyMetric) and lat.value > 0 and lat.measurement is not None
        # timed in the same rounds as the eager model: the speed-up is their ratio
        assert m[f"{t}_speedup"].value == pytest.approx(m["latency"].value / lat.value, rel=1e-9)
    assert FLAG_METRIC not in m


def test_int8_and_int4_weights_are_integer_codes_in_the_onnx_graph(image_task, tmp_path: Path) -> None:
    import onnx

    from modelbonsai.deploy.flat import record_call
    from modelbonsai.deploy.onnx import OnnxRuntimeProgram, export_onnx

    base = CompressedModel(cnn())
    batch = image_task.example_batch(8)
    call, _ = record_call(base.module, lambda mod: image_task.forward(mod, batch))
    float_size = export_onnx(base.module, call, tmp_path / "f.onnx").path.stat().st_size
    for bits, gran in ((8, "channel"), (8, "tensor"), (4, "channel")):
        cm = _op(CompressedModel(cnn()), "quantize.weights", bits=bits, granularity=gran)
        call, _ = record_call(cm.module, lambda mod: image_task.forward(mod, batch))
        info = export_onnx(cm.module, call, tmp_path / f"q{bits}{gran}.onnx", encodings=cm.encodings)
        # the first conv's weight is exported with the BatchNorm after it folded in: its codes
        # stay, with the BatchNorm's per-channel factor in their scales
        assert not info.kept_float and sorted(info.qdq) == sorted(cm.encodings)
        assert info.folded == ["0.weight"]
        g = onnx.load(str(info.path)).graph
        dq = [n for n in g.node if n.op_type == "DequantizeLinear"]
        assert len(dq) == len(info.qdq)
        codes = {i.name: i.data_type for i in g.initializer if i.name.endswith(".codes")}
        want = onnx.TensorProto.UINT8 if bits == 8 else onnx.TensorProto.UINT4
        assert set(codes.values()) == {want}
        size = info.path.stat().st_size
        print(f"int{bits} {gran}: {size} B vs float {float_size} B")
        # each quantized weight takes bits/8 bytes instead of 4 (the graph itself is most of a
        # model this small, so the saving is checked, not the ratio); a tensor's scales, zero
        # points (per channel: 5 bytes a row), node and names cost a few hundred bytes
        n = sum(cm.encodings[k].scales.new_zeros(cm.encodings[k].shape).numel() for k in info.qdq)
        assert float_size - size >= n * (4 - bits / 8) - 400 * len(info.qdq)
        got = OnnxRuntimeProgram(info.path).run(call.inputs)[0]
        # the runtime dequantizes to the very weights the model holds
        assert float((got - call.outputs[0]).abs().max()) <= 1e-5


def test_grouped_4bit_linear_is_a_blocked_dequantize(tmp_path: Path) -> None:
    from modelbonsai.deploy.flat import record_call
    from modelbonsai.deploy.onnx import OnnxRuntimeProgram, export_onnx

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.GELU(), torch.nn.Linear(32, 8)).eval()
    cm = _op(CompressedModel(model), "quantize.weights", bits=4, granularity="group", group_size=16)
    x = torch.randn(8, 64)
    call, _ = record_call(cm.module, lambda mod: mod(x))
    info = export_onnx(cm.module, call, tmp_path / "g.onnx", encodings=cm.encodings)
    assert sorted(info.qdq) == ["0.weight", "2.weight"]
    got = OnnxRuntimeProgram(info.path).run([x])[0]
    assert float((got - call.outputs[0]).abs().max()) <= 1e-5


def test_gpt2_character_model_in_both_runtimes(lm_task) -> None:
    pytest.importorskip("executorch")
    m = _measure(gpt2(), lm_task, DeploySpec(("onnxruntime", "executorch")))
    for t in ("onnxruntime", "executorch"):
        diff = m[f"{t}_max_abs_diff"].value
        print(f"gpt2 {t}: max abs difference {diff:.3g}")
        assert diff <= 1e-4, m[f"{t}_max_abs_diff"].detail
        assert m[f"{t}_agreement"].value >= 99.0
    assert FLAG_METRIC not in m


def test_a_layer_the_runtime_cannot_express_is_named_and_the_metric_missing(image_task) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(256, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
    ).eval()
    cm = _op(CompressedModel(model), "quantize.dynamic")
    m = _measure(cm.module, image_task, DeploySpec(("onnxruntime",)))
    lat = m["onnxruntime_latency"]
    assert math.isnan(lat.value)
    print(lat.detail)
    assert "layer '1'" in lat.detail and "missing" in lat.detail
    assert "quantized" in lat.detail  # the op: quantized.linear_dynamic
    assert m["latency"].value > 0  # the eager figures are there all the same


def test_a_missing_runtime_package_gives_an_install_hint(image_task, monkeypatch) -> None:
    monkeypatch.setattr(type(TARGETS["executorch"]), "missing", lambda self: ["executorch"])
    m = _measure(cnn(), image_task, DeploySpec(("executorch",)))
    lat = m["executorch_latency"]
    assert math.isnan(lat.value) and INSTALL_HINT in lat.detail
    assert "executorch_size" not in m


def test_parity_beyond_the_tolerance_flags_the_model(image_task, monkeypatch) -> None:
    from modelbonsai.deploy import onnx as dep_onnx

    real = dep_onnx.OnnxRuntimeProgram.run

    def off(self, inputs):  # a runtime whose kernels are wrong by 0.05
        return [o + 0.05 for o in real(self, inputs)]

    monkeypatch.setattr(dep_onnx.OnnxRuntimeProgram, "run", off)
    m = _measure(cnn(), image_task, DeploySpec(("onnxruntime",), tolerance=1e-3))
    assert m["onnxruntime_max_abs_diff"].value == pytest.approx(0.05, rel=1e-3)
    flag = m[FLAG_METRIC]
    assert flag.value == 1 and "onnxruntime: max abs difference 0.05" in flag.detail


def test_bert_encoder_with_batches_of_other_lengths_in_both_runtimes(embedding_task) -> None:
    """MiniLM's kind: the sequence dimension varies between batches, so it is exported dynamic
    (ExecuTorch with the longest length as its bound); parity is checked on every batch."""
    pytest.importorskip("executorch")
    from .conftest import bert

    m = _measure(bert(), embedding_task, DeploySpec(("onnxruntime", "executorch")))
    for t in ("onnxruntime", "executorch"):
        assert f"{t}_max_abs_diff" in m, m[f"{t}_latency"].detail
        diff = m[f"{t}_max_abs_diff"].value
        print(f"bert {t}: max abs difference {diff:.3g} on 19 instances of lengths 12, 7 and 16")
        assert diff <= 1e-4
    assert FLAG_METRIC not in m


def test_gpt2_conv1d_weights_as_codes_per_channel_and_group(tmp_path: Path) -> None:
    """transformers' Conv1D holds its weight [in, out] (channel axis 1): its codes dequantize
    along axis 1, its groups block along axis 0."""
    from modelbonsai.deploy.flat import record_call
    from modelbonsai.deploy.onnx import OnnxRuntimeProgram, export_onnx

    ids = torch.randint(0, 20, (4, 16), generator=torch.Generator().manual_seed(0))
    for params in (
        {"bits": 8, "granularity": "channel"},
        {"bits": 4, "granularity": "group", "group_size": 16},
    ):
        cm = _op(CompressedModel(gpt2()), "quantize.weights", **params)
        cm.module.config.use_cache = False
        call, _ = record_call(cm.module, lambda mod: mod(ids))
        info = export_onnx(cm.module, call, tmp_path / "g.onnx", encodings=cm.encodings)
        assert sorted(info.qdq) == sorted(cm.encodings) and not info.kept_float, info.kept_float
        got = OnnxRuntimeProgram(info.path).run(call.inputs)[0]
        diff = float((got - call.outputs[0]).abs().max())
        print(f"gpt2 {params}: {len(info.qdq)} tensors as codes, max abs difference {diff:.3g}")
        # ONNX Runtime's QDQ fusions are off (they would quantize the activations: ~1e-3 here)
        assert diff <= 1e-5


def test_runtimes_timed_on_their_own_beside_a_model_on_an_accelerator(image_task) -> None:
    """With the eager model on a GPU there are no shared CPU rounds: the runtimes are timed
    alone (the same protocol, on the CPU) and no speed-up is claimed."""
    with Deployment(cnn(), image_task, DeploySpec(("onnxruntime",))) as d:
        d.prepare()
        alone = {m.name: m for m in d.measure_alone()}
    assert set(alone) == {"onnxruntime_latency"} and alone["onnxruntime_latency"].value > 0
    assert "thread CPU time" in alone["onnxruntime_latency"].detail
