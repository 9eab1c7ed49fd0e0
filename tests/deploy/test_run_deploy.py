"""`deploy:` through a run and the CLI: the targets' metrics stored with each model (a variant's
own `deploy:` replacing the file's), a parity flag stored and reported, and `bonsai export
--format onnx` writing a file ONNX Runtime runs like the stored model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from modelbonsai.deploy.targets import FLAG_METRIC
from modelbonsai.experiment import load_experiment
from modelbonsai.runner import run_experiment
from modelbonsai.store import LineageStore
from support.workspace import experiment_head, write_workspace

pytest.importorskip("onnxruntime")

EXPERIMENT = (
    experiment_head().replace("seed: 3\n", "seed: 3\ndeploy: [onnxruntime]\n")
    + """\
  - name: int8
    ops:
      - quantize.weights: {bits: 8, granularity: channel}
  - name: pruned
    ops:
      - prune.magnitude: {sparsity: 0.5}
    deploy: []
"""
)


def test_run_stores_runtime_metrics_and_export_writes_a_runnable_file(tmp_path: Path, capsys) -> None:
    from modelbonsai.cli import main

    # wide enough that weights, not the graph, make most of the file
    exp_file = write_workspace(tmp_path / "ws", EXPERIMENT, "", hidden=(64, 64))
    parsed = load_experiment(exp_file)
    assert parsed.ok, parsed.problems
    with LineageStore.open(exp_file.parent) as store:
        result = run_experiment(parsed.experiment, store, device="cpu")
        assert result.ok, result.failed
        metrics = {
            name: {m.name: m for m in store.metrics(store.get_model(name).id)}
            for name in ("toy", "int8", "pruned")
        }
    for name in ("toy", "int8"):
        m = metrics[name]
        assert m["onnxruntime_max_abs_diff"].value <= 1e-5, m["onnxruntime_max_abs_diff"].detail
        assert m["onnxruntime_agreement"].value == 100.0
        assert m["onnxruntime_latency"].value > 0 and m["onnxruntime_size"].value > 0
        assert FLAG_METRIC not in m
    # the int8 model's weights are integer codes in its ONNX file: smaller than the base's
    assert metrics["int8"]["onnxruntime_size"].value < metrics["toy"]["onnxruntime_size"].value
    assert "DequantizeLinear" in metrics["int8"]["onnxruntime_size"].detail
    assert not any(k.startswith("onnxruntime_") for k in metrics["pruned"])  # `deploy: []`

    out = tmp_path / "onnx"
    assert main(["export", "int8", str(out), "--format", "onnx", "--workspace", str(exp_file.parent)]) == 0
    err = capsys.readouterr().err
    assert "max abs difference" in err
    import onnxruntime as ort

    from modelbonsai.runner import load_evaluation

    with LineageStore.open(exp_file.parent) as store:
        ev = load_evaluation(store, store.get_model("int8"))
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    # the toy task's evaluation data (seeded: as the run had it), in the exported batch of 8
    ns: dict[str, object] = {}
    exec(compile((exp_file.parent / "tasks.py").read_text(), "tasks.py", "exec"), ns)
    x, _ = ns["_data"](len(ev.ids), 0)  # type: ignore[operator]
    name = sess.get_inputs()[0].name
    full = len(x) // 8 * 8
    logits = np.concatenate([sess.run(None, {name: x[i : i + 8].numpy()})[0] for i in range(0, full, 8)])
    got = torch.from_numpy(logits).softmax(-1)  # the task stores class probabilities
    diff = float((got - ev.outputs[:full]).abs().max())
    print(f"exported int8 ONNX vs the stored outputs: max abs difference {diff:.3g}")
    assert diff <= 1e-6
    # ExecuTorch: model.pte, run by executorch.runtime like the stored model
    pytest.importorskip("executorch")
    from executorch.runtime import Runtime

    pte = tmp_path / "pte"
    assert (
        main(["export", "toy", str(pte), "--format", "executorch", "--workspace", str(exp_file.parent)]) == 0
    )
    assert "executorch runs it: max abs difference" in capsys.readouterr().err
    with LineageStore.open(exp_file.parent) as store:
        base_ev = load_evaluation(store, store.get_model("toy"))
    method = Runtime.get().load_program(str(pte / "model.pte")).load_method("forward")
    probs = torch.cat([method.execute([x[i : i + 8]])[0].clone() for i in range(0, full, 8)]).softmax(-1)
    assert float((probs - base_ev.outputs[:full]).abs().max()) <= 1e-6
    # a second export into the same folder is refused without --force
    assert main(["export", "int8", str(out), "--format", "onnx", "--workspace", str(exp_file.parent)]) != 0
    assert "--force" in capsys.readouterr().err


def test_parity_flag_is_stored_and_reported(tmp_path: Path, monkeypatch, capsys) -> None:
    from modelbonsai.deploy import onnx as dep_onnx

    real = dep_onnx.OnnxRuntimeProgram.run
    monkeypatch.setattr(
        dep_onnx.OnnxRuntimeProgram, "run", lambda self, xs: [o * 1.5 for o in real(self, xs)]
    )
    exp_file = write_workspace(tmp_path / "ws", EXPERIMENT, "")
    events = []
    with LineageStore.open(exp_file.parent) as store:
        result = run_experiment(
            load_experiment(exp_file).experiment, store, device="cpu", only=["int8"], events=events.append
        )
        flag = {m.name: m for m in store.metrics(store.get_model("int8").id)}[FLAG_METRIC]
    assert flag.value == 1 and "onnxruntime" in flag.detail
    assert any(e.kind == "warning" and "onnxruntime" in e.message for e in events)
    assert any("onnxruntime" in w for w in result.warnings.values())
    assert not math.isnan(flag.value)
    from modelbonsai.cli import main

    capsys.readouterr()
    assert main(["show", "int8", "--workspace", str(exp_file.parent)]) == 0
    shown = capsys.readouterr().out
    assert FLAG_METRIC in shown and "outputs differ from the evaluated model: onnxruntime" in shown


def test_adding_deploy_to_a_stored_model_measures_it_in_the_next_run(tmp_path: Path) -> None:
    from modelbonsai.runner import make_plan, step_reason

    plain = EXPERIMENT.replace("deploy: [onnxruntime]\n", "")
    exp_file = write_workspace(tmp_path / "ws", plain, "")
    with LineageStore.open(exp_file.parent) as store:
        assert run_experiment(load_experiment(exp_file).experiment, store, device="cpu", only=["int8"]).ok
        exp_file.write_text(EXPERIMENT)
        exp = load_experiment(exp_file).experiment
        plan = make_plan(exp, store, only=["int8"])
        again = {s.name: step_reason(s) for s in plan.reevaluations()}
        assert again == {
            "toy": "not yet measured in onnxruntime (deploy)",
            "int8": "not yet measured in onnxruntime (deploy)",
        }
        assert run_experiment(exp, store, device="cpu", only=["int8"]).ok
        assert "onnxruntime_latency" in {m.name for m in store.metrics(store.get_model("int8").id)}
        assert make_plan(exp, store, only=["int8"]).reevaluations() == []  # measured: up to date
