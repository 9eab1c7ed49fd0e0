"""Common shapes that used to fail a variant (issue 22 item 6), end to end through `bonsai`.

A digits-like CNN (1-channel stem conv, 3x3 convs, float images): 2:4 pruning and group
quantization skip the layers that do not fit them, with a warning in the run's output that
`bonsai show` still shows; casts to fp16/bf16 run on the task's float32 images (evaluation,
latency, behaviour and activation comparisons).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from modelbonsai.cli import main

ARCH = textwrap.dedent(
    """
    from torch import nn

    def build():
        return nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4),
        )
    """
)

EXPERIMENT = """\
base:
  name: cnn
  load: model.safetensors
  factory: arch.py:build
task:
  kind: image-classification
  data: data
seed: 0
variants:
  - name: nm
    ops:
      - prune.nm: {}
  - name: grp
    ops:
      - quantize.weights: {bits: 4, granularity: group, group_size: 32}
  - name: nm-strict
    ops:
      - prune.nm: {strict: true}
  - name: fp16
    ops:
      - cast: {dtype: fp16}
  - name: bf16
    ops:
      - cast: {dtype: bf16}
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    (root / "arch.py").write_text(ARCH)
    namespace: dict = {}
    exec(ARCH, namespace)
    torch.manual_seed(0)
    model: nn.Module = namespace["build"]()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / "model.safetensors"))
    (root / "data").mkdir()
    g = torch.Generator().manual_seed(1)
    save_file(
        {"images": torch.rand(24, 1, 8, 8, generator=g), "labels": torch.arange(24) % 4},
        str(root / "data" / "eval.safetensors"),
    )
    (root / "exp.bonsai.yaml").write_text(EXPERIMENT)
    return root


@pytest.fixture(scope="module")
def ran(workspace: Path) -> str:
    """The run's stderr (the whole file once: every test reads the same store)."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["run", str(workspace / "exp.bonsai.yaml"), "--device", "cpu"])
    text = err.getvalue()
    assert code == 1, text  # nm-strict fails, on purpose; every other variant is made
    return text


def _show(workspace: Path, name: str, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    capsys.readouterr()
    assert main(["show", name, "--workspace", str(workspace), *extra]) == 0
    return capsys.readouterr().out


def test_unfit_layers_are_skipped_with_a_warning_in_the_run_and_in_show(
    workspace: Path, ran: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        "warning: nm: prune.nm skipped 1 layer (left as it was): 0.weight (input size 1 is not divisible by m=4)"
        in ran
    ), ran
    # 3x3 convs have 9 and 72 columns, the first Linear 8: only the last one (32) is quantized
    assert (
        "warning: grp: quantize.weights skipped 3 layers" in ran
        and "group_size 32 does not divide the 9" in ran
    )
    assert "nm-strict failed: op prune.nm, parameter 'm', layer '0.weight'" in ran and "strict" in ran
    assert "nm failed" not in ran and "grp failed" not in ran
    shown = _show(workspace, "nm", capsys)
    assert "skipped_layers" in shown and "0.weight (input size 1 is not divisible by m=4)" in shown, shown
    as_json = json.loads(_show(workspace, "grp", capsys, "--json"))
    skipped = next(m for m in as_json["metrics"] if m["name"] == "skipped_layers")
    assert skipped["value"] == 3 and "3.weight" in skipped["detail"] and "7.weight" in skipped["detail"]
    assert not any(
        m["name"] == "skipped_layers"
        for m in json.loads(_show(workspace, "fp16", capsys, "--json"))["metrics"]
    )


@pytest.mark.parametrize("name", ["fp16", "bf16"])
def test_cast_models_of_float_inputs_evaluate_measure_and_compare(
    workspace: Path, ran: str, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert f"{name} failed" not in ran, ran
    metrics = {m["name"]: m for m in json.loads(_show(workspace, name, capsys, "--json"))["metrics"]}
    assert {"accuracy", "agreement", "latency", "stored_size"} <= set(metrics), sorted(metrics)
    assert metrics["agreement"]["value"] >= 90  # a cast barely moves a small CNN's predictions
    capsys.readouterr()
    assert main(["compare", "cnn", name, "--json", "--workspace", str(workspace)]) == 0
    out = json.loads(capsys.readouterr().out)["others"][name]
    assert out["weights"]["metrics"]["rel_l2"] < 0.01, out
    assert out["behavior"] is not None, out


def test_cast_model_reloaded_from_its_artifact_runs_float_images_in_every_activation_mode(
    workspace: Path, ran: str
) -> None:
    from modelbonsai.artifacts import load_artifact
    from modelbonsai.compare.activations import ActivationOptions, compare_activations
    from modelbonsai.load import load_base, load_skeleton
    from modelbonsai.store import LineageStore
    from modelbonsai.tasks.image import ImageClassificationTask

    spec = {"name": "cnn", "load": "model.safetensors", "factory": "arch.py:build"}
    with LineageStore.open(workspace) as store:
        folder = store.artifact_path(store.get_model("fp16"))
    cm = load_artifact(folder, lambda: load_skeleton(spec, workspace))
    assert next(cm.module.parameters()).dtype == torch.float16
    images = torch.rand(2, 1, 8, 8)  # float32, as every task feeds them
    assert cm.module(images).shape == (2, 4)
    base = load_base(spec, workspace)
    task = ImageClassificationTask({"data": "data"}, workspace)
    res = compare_activations(base, {"fp16": cm.module}, task, options=ActivationOptions(instances=8))["fp16"]
    problems = {r.name: r.message for r in res.modules if r.message}
    assert not problems, problems
    leaves = [r for r in res.modules if r.name]  # "" is the whole model: propagated only
    assert len(leaves) == 10 and all(r.status == "ok" and r.isolated is not None for r in leaves)
    assert all(r.propagated is not None and r.propagated["rel_l2"] < 0.01 for r in res.modules)


def test_the_language_servers_run_job_carries_the_warning(workspace: Path, ran: str) -> None:
    from modelbonsai.service import QuietReporter, RunJob, handle

    rep = QuietReporter()
    job = RunJob(
        file=str(workspace / "exp.bonsai.yaml"),
        folder=str(workspace),
        device="cpu",
        variants=("nm",),
        force=True,
    )
    out = handle(job, rep)
    assert out.made == ["nm"] and "0.weight (input size 1" in out.warnings["nm"]
    # the job's last message, what the editor shows of a finished job
    assert (
        rep.messages[-1].startswith("1 model made")
        and "warning: nm: prune.nm skipped 1 layer" in rep.messages[-1]
    )


def test_a_re_evaluation_keeps_what_the_op_skipped(
    workspace: Path, ran: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    code = main(
        ["run", str(workspace / "exp.bonsai.yaml"), "--only", "nm", "--max-instances", "8", "--device", "cpu"]
    )
    assert code == 0 and "2 re-evaluated" in capsys.readouterr().err  # nm and its base
    shown = _show(workspace, "nm", capsys)
    assert "skipped_layers" in shown and "0.weight (input size 1 is not divisible by m=4)" in shown, shown
