"""The samples: experiment files are valid, and each sample runs end to end at reduced size.

The end-to-end runs go through the real path a user takes: the sample's prepare.py (small
model, small data, in a temporary folder), `bonsai run small.bonsai.yaml`, `bonsai ls --json`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from modelbonsai.experiment.parse import load_experiment

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
FILES = sorted(SAMPLES.glob("*/*.bonsai.yaml"))


def test_every_sample_has_its_files() -> None:
    for name in ("digits", "minilm", "charlm"):
        folder = SAMPLES / name
        for f in (f"{name}.bonsai.yaml", "small.bonsai.yaml", "prepare.py", "README.md"):
            assert (folder / f).is_file(), f"samples/{name}/{f} is missing"


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_experiment_file_is_valid(path: Path) -> None:
    result = load_experiment(path)
    # model/ and data/ are made by prepare.py and git-ignored: on a fresh clone they are missing
    problems = [p for p in result.problems if p.severity == "error" and p.code != "missing-path"]
    assert not problems, "\n".join(str(p) for p in problems)
    # with only missing-path problems the parser still gives its best-effort experiment
    experiment = result.experiment or result.partial
    assert experiment is not None and len(experiment.variants) >= 3


def run_small(name: str, out: Path) -> dict[str, dict[str, Any]]:
    env = dict(
        os.environ, BONSAI_SAMPLE_SMALL="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1"
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(SAMPLES / "demo.py"),
            "--small",
            "--only",
            name,
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    ls = subprocess.run(
        [sys.executable, "-m", "modelbonsai", "ls", "--json", "--workspace", str(out / name)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ls.returncode == 0, ls.stderr
    models = {m["name"]: {x["name"]: x["value"] for x in m["metrics"]} for m in json.loads(ls.stdout)}
    for metrics in models.values():
        for key in ("parameters", "stored_size", "latency", "peak_memory"):
            assert key in metrics
    return models


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, Any]]]:
    """One small digits run for every test that reads it (a run takes minutes on 2 cores)."""
    out = tmp_path_factory.mktemp("digits-run")
    return out / "digits", run_small("digits", out)


@pytest.mark.slow
def test_digits_small(digits_run: tuple[Path, dict[str, dict[str, Any]]]) -> None:
    _, models = digits_run
    assert set(models) == {"digits-cnn", "layer-0.5", "layer-0.9", "layer-0.9-bn", "int4"}
    base = models["digits-cnn"]
    assert base["accuracy"] > 50 and base["agreement"] == 100.0
    assert models["layer-0.9"]["nonzero_parameters"] < 0.2 * base["parameters"]
    assert models["int4"]["stored_size"] < 0.3 * base["stored_size"]
    assert any(k.startswith("class_accuracy/") for k in base)
    # deploy: the sample's CNN in ONNX Runtime and ExecuTorch gives the eager model's outputs, and
    # the int4 model's .onnx holds its weights as packed 4-bit codes
    for t in ("onnxruntime", "executorch"):
        assert base[f"{t}_max_abs_diff"] <= 1e-4 and base[f"{t}_agreement"] == 100.0
        assert base[f"{t}_latency"] > 0 and base[f"{t}_speedup"] > 0
    assert models["int4"]["onnxruntime_max_abs_diff"] <= 1e-4
    assert models["int4"]["onnxruntime_size"] < 0.4 * base["onnxruntime_size"]


@pytest.mark.slow
def test_minilm_small_reproduces_the_layernorm_failure(tmp_path: Path) -> None:
    models = run_small("minilm", tmp_path)
    base = models["all-MiniLM-L6-v2"]
    assert base["cosine_agreement"] == pytest.approx(1.0)
    # case study (a) at small size: pruning LayerNorm per layer collapses agreement; global
    # pruning and restoring the norms keep it
    assert models["layer-all-0.1"]["cosine_agreement"] < 0.8
    assert models["global-all-0.1"]["cosine_agreement"] > 0.98
    restored = models["layer-all-0.1-restore-ln"]["cosine_agreement"]
    assert restored > 0.98


@pytest.mark.slow
def test_charlm_small(tmp_path: Path) -> None:
    models = run_small("charlm", tmp_path)
    base = models["charlm"]
    assert base["token_agreement"] == 100.0 and base["generation_match"] == 100.0
    assert 1.0 < base["perplexity"] < 97  # better than uniform over the character vocabulary
    # deploy: the sample's GPT-2 in ONNX Runtime and ExecuTorch gives the eager model's logits
    for t in ("onnxruntime", "executorch"):
        assert base[f"{t}_max_abs_diff"] <= 1e-3 and base[f"{t}_agreement"] >= 99.0
    assert models["rtn-tensor-3"]["token_agreement"] < 100.0
    # issue 3: calibrated (GPTQ) quantization beats round-to-nearest at 3 bits on the sample, at
    # the same granularity: closer next-token agreement and perplexity to the base
    calibrated, rtn = models["calibrated-group-3"], models["rtn-group-3"]
    assert calibrated["token_agreement"] > rtn["token_agreement"]
    assert abs(calibrated["perplexity"] - base["perplexity"]) < abs(rtn["perplexity"] - base["perplexity"])


@pytest.mark.slow
def test_readme_numbers_from_a_digits_run(digits_run: tuple[Path, dict[str, dict[str, Any]]]) -> None:
    """scripts/sample_numbers.py on a real run: what a section quotes is what `bonsai ls` stores
    and what the behaviour comparison (the Behaviors panel's transition table) counts, and the
    recorded answers render the same text again without the store."""
    from modelbonsai.compare.behavior import compare_behavior
    from modelbonsai.runner import load_evaluation
    from modelbonsai.store import LineageStore
    from support.scripts import load_script

    sn = load_script("sample_numbers")
    workspace, models = digits_run

    @sn.section("test-digits-small", sample="digits-small")
    def quoted(r: Any) -> str:
        rows = [f"{m}: {sn.pct(r.metric(m, 'accuracy'))}, class 8 {sn.pct(r.metric(m, 'class_accuracy/8'))}"
                for m in ("digits-cnn", "layer-0.9-bn", "int4")]  # fmt: skip
        rows += [f"int4: {sn._off_diagonal(r.transitions('digits-cnn', 'int4'), 3)}"]
        return "\n".join(rows) + "\n"

    try:
        text = "<!-- numbers:test-digits-small -->\n<!-- /numbers:test-digits-small -->\n"
        live = sn.Results.from_store("digits-small", workspace)
        rendered = sn.render(text, live)
        store = LineageStore.open(workspace)
        base_ev = load_evaluation(store, store.get_model("digits-cnn"))
        other_ev = load_evaluation(store, store.get_model("int4"))
        table = compare_behavior(base_ev, {"int4": other_ev})["int4"].transitions
        moved = [(t["base"], t["other"], t["count"]) for t in table if t["base"] != t["other"]]
        expected = [
            f"{m}: {sn.pct(models[m]['accuracy'])}, class 8 {sn.pct(models[m]['class_accuracy/8'])}"
            for m in ("digits-cnn", "layer-0.9-bn", "int4")
        ] + ["int4: " + (", ".join(f"{a} → {b} ({n})" for a, b, n in moved[:3]) or "none")]
        assert (
            rendered
            == "<!-- numbers:test-digits-small -->\n"
            + "\n".join(expected)
            + "\n<!-- /numbers:test-digits-small -->\n"
        )
        # the recorded answers give the same text without the store
        facts = json.loads(json.dumps(live.facts))
        assert sn.render(text, sn.Results.from_facts("digits-small", facts)) == rendered
    finally:
        del sn.SECTIONS["test-digits-small"]
