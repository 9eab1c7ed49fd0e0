"""Benchmark: Bonsai's compression methods against their peers, same model, same calibration data.

Run: `.venv/bin/python tests/bench/bench_methods.py [--only palettize prune] [--quick]`. Not a
timed test; a few minutes on 2 cores. Needs the samples prepared (`make demo`, or each sample's
`prepare.py`: the charlm model is trained by `samples/charlm/prepare.py`, about three minutes).

One table of rows (a section adds its rows; every row is a figure against a target):

- **palettize vs coremltools' post-training palettizer** (`coremltools.optimize.torch`
  `PostTrainingPalettizer`, the pip package `coremltools`, in the `bench` extra) at 2, 4 and 6
  bits, one LUT per tensor, on MiniLM (sentence embeddings) and charlm (a character GPT-2). Both
  sides palettize the same layers: every `nn.Linear` (charlm's transformers `Conv1D` layers are
  turned into the equal `nn.Linear` first, which coremltools needs; the tied `lm_head` and the
  embeddings are left alone on both sides). Figures: the weight SQNR over those layers
  (10·log10 Σw² / Σ(w - q(w))²), target Bonsai >= the peer - 0.1 dB; the task metric (charlm:
  perplexity, target <= the peer's x 1.01; MiniLM: mean cosine agreement of the sentence
  embeddings with the base model's, target >= the peer's - 0.002).
- **Wanda and SparseGPT vs magnitude** at 50% unstructured (magnitude per layer, so every method
  prunes each layer to 50%) and 2:4 (`prune.nm`) on charlm's perplexity: the published ordering
  (SparseGPT ≈ Wanda, both better than magnitude). Targets: each <= magnitude's perplexity, and
  SparseGPT <= Wanda x 1.10 (≈).

Rows are dicts {name, value, target, ok}: another section appends its own with `row(...)`; the
AWQ and W8A8 sections live in bench_methods_quant.py (its docstring says what they compare). The last line of stdout is one JSON object `{"bench": "methods", "figures": [...],
"ok": bool}`; the exit status is 1 when a figure misses its target or a peer is missing.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
SEED = 0
#: Bonsai's weight SQNR may be this much below the peer's
SQNR_SLACK_DB = 0.1
#: charlm perplexity may be this factor above the peer's
PPL_SLACK = 1.01
#: MiniLM cosine agreement may be this much below the peer's
COS_SLACK = 0.002
#: "SparseGPT ≈ Wanda": SparseGPT's perplexity at most this factor above Wanda's
SGPT_VS_WANDA = 1.10
PALETTE_BITS = (2, 4, 6)
CALIBRATION = {"batches": 16, "batch_size": 8}


# -- rows -----------------------------------------------------------------------------------------
def row(name: str, value: float | None, target: str, ok: bool, **extra: Any) -> dict[str, Any]:
    """One figure of the table: its value, the target it is held to (in words), whether it met it."""
    out = {
        "name": name,
        "value": None if value is None else round(float(value), 4),
        "target": target,
        "ok": bool(ok),
    }
    out.update(extra)
    return out


def at_least(name: str, value: float, bound: float, what: str) -> dict[str, Any]:
    return row(name, value, f">= {bound:.4f} ({what})", value >= bound)


def at_most(name: str, value: float, bound: float, what: str) -> dict[str, Any]:
    return row(name, value, f"<= {bound:.4f} ({what})", value <= bound)


# -- samples ---------------------------------------------------------------------------------------
class Sample:
    """A prepared sample: its base model, its task, and the base model's evaluation."""

    def __init__(self, name: str, max_instances: int | None = None) -> None:
        from modelbonsai.experiment.parse import load_experiment
        from modelbonsai.load import load_base
        from modelbonsai.tasks import make_task

        path = SAMPLES / name / f"{name}.bonsai.yaml"
        parsed = load_experiment(path)
        if parsed.experiment is None:
            raise SystemExit(f"{path}: {[p.message for p in parsed.problems]}")
        self.exp = parsed.experiment
        self.name = name
        try:
            self.base = load_base(self.exp.base, self.exp.root)
        except Exception as e:
            raise SystemExit(f"sample {name} is not prepared ({e}); run samples/{name}/prepare.py") from None
        task = make_task(self.exp, max_instances=max_instances)
        assert task is not None
        self.task = task
        self.device = torch.device("cpu")
        self.reference = None if name == "charlm" else task.evaluate(self.base, self.device, None)

    def metric(self, model: nn.Module) -> float:
        """charlm: perplexity on the evaluation windows (as the task computes it, without its
        greedy generations, which would take most of the time); MiniLM: cosine agreement."""
        if self.name == "charlm":
            return perplexity(self.task, model)
        ev = self.task.evaluate(model, self.device, self.reference)
        return float(next(m.value for m in ev.metrics if m.name == "cosine_agreement"))

    def run_op(self, name: str, model: nn.Module, params: dict[str, Any]) -> nn.Module:
        from modelbonsai.ops.registry import CompressedModel, OpContext, get_op

        op = get_op(name)
        assert op is not None, name
        ctx = OpContext(device=self.device, seed=SEED, task=self.task)  # type: ignore[arg-type]
        cm = op.fn(CompressedModel(model), op.resolve(params), ctx)
        return cm.module


@torch.no_grad()
def perplexity(task: Any, model: nn.Module) -> float:
    """exp of the mean next-token NLL over the task's evaluation windows (the task's formula)."""
    model.eval()
    parts = []
    for batch in task.eval_batches(16):
        logp = task.forward(model, batch).float().log_softmax(-1)
        parts.append(logp.gather(-1, batch.targets[..., None])[..., 0])
    return math.exp(float(-torch.cat(parts).double().mean()))


def linear_copy(model: nn.Module) -> nn.Module:
    """A copy with every transformers Conv1D turned into the equal nn.Linear (weight transposed)."""
    from transformers.pytorch_utils import Conv1D

    model = copy.deepcopy(model)
    for name, mod in list(model.named_modules()):
        if isinstance(mod, Conv1D):
            n_in, n_out = mod.weight.shape
            lin = nn.Linear(n_in, n_out)
            with torch.no_grad():
                lin.weight.copy_(mod.weight.t())
                lin.bias.copy_(mod.bias)
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent), leaf, lin)
    return model.eval()


def palettized_layers(model: nn.Module) -> list[str]:
    """The Linear layers both sides palettize: every nn.Linear but a tied lm_head."""
    out = []
    emb = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear) and id(mod.weight) not in emb:
            out.append(name)
    return out


def weight_sqnr(base: nn.Module, other: nn.Module, layers: list[str]) -> float:
    num = den = 0.0
    for name in layers:
        w = base.get_submodule(name).weight.detach().double()
        q = other.get_submodule(name).weight.detach().double()
        num += float(w.pow(2).sum())
        den += float((w - q).pow(2).sum())
    return 10 * math.log10(num / den) if den > 0 else float("inf")


def coreml_palettize(model: nn.Module, layers: list[str], bits: int) -> nn.Module:
    from coremltools.optimize.torch.palettization import PostTrainingPalettizer, PostTrainingPalettizerConfig

    cfg = {"n_bits": bits, "granularity": "per_tensor"}
    config = PostTrainingPalettizerConfig.from_dict({"module_name_configs": {name: cfg for name in layers}})
    return PostTrainingPalettizer(copy.deepcopy(model), config).compress().eval()


# -- sections --------------------------------------------------------------------------------------
def palettize_rows(samples: dict[str, Sample], quick: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    try:
        import coremltools  # noqa: F401
    except Exception as e:
        return [row("palettize: coremltools", None, "the peer imports", False, error=str(e))]
    for name in ("charlm", "minilm"):
        s = samples[name]
        base = linear_copy(s.base)
        layers = palettized_layers(base)
        for bits in PALETTE_BITS[:1] if quick else PALETTE_BITS:
            t0 = time.perf_counter()
            ours = s.run_op("palettize", copy.deepcopy(base), {"n_bits": bits, "granularity": "tensor"})
            t_ours = time.perf_counter() - t0
            t0 = time.perf_counter()
            try:
                peer = coreml_palettize(base, layers, bits)
            except Exception as e:
                rows.append(
                    row(
                        f"palettize {name} {bits}-bit: coremltools",
                        None,
                        "the peer runs",
                        False,
                        error=str(e),
                    )
                )
                continue
            t_peer = time.perf_counter() - t0
            sq_ours, sq_peer = weight_sqnr(base, ours, layers), weight_sqnr(base, peer, layers)
            rows.append(
                at_least(
                    f"palettize {name} {bits}-bit weight SQNR dB",
                    sq_ours,
                    sq_peer - SQNR_SLACK_DB,
                    f"coremltools {sq_peer:.2f} - {SQNR_SLACK_DB}",
                )
            )
            rows[-1].update(seconds=round(t_ours, 1), peer_seconds=round(t_peer, 1))
            m_ours, m_peer = s.metric(ours), s.metric(peer)
            if name == "charlm":
                rows.append(at_most(f"palettize charlm {bits}-bit perplexity", m_ours, m_peer * PPL_SLACK,
                                    f"coremltools {m_peer:.4f} x {PPL_SLACK}"))  # fmt: skip
            else:
                rows.append(at_least(f"palettize minilm {bits}-bit cosine agreement", m_ours, m_peer - COS_SLACK,
                                     f"coremltools {m_peer:.4f} - {COS_SLACK}"))  # fmt: skip
            print(f"  palettize {name} {bits}-bit: SQNR {sq_ours:.2f} / {sq_peer:.2f} dB, "
                  f"metric {m_ours:.4f} / {m_peer:.4f} (Bonsai / coremltools), {t_ours:.1f}s / {t_peer:.1f}s",
                  file=sys.stderr, flush=True)  # fmt: skip
    return rows


def prune_rows(samples: dict[str, Sample], quick: bool) -> list[dict[str, Any]]:
    s = samples["charlm"]
    rows: list[dict[str, Any]] = []
    patterns: list[tuple[str, dict[str, Any], tuple[str, dict[str, Any]]]] = [
        ("50%", {"sparsity": 0.5}, ("prune.magnitude", {"sparsity": 0.5, "scope": "layer"})),
        ("2:4", {"n": 2, "m": 4}, ("prune.nm", {"n": 2, "m": 4})),
    ]
    for label, pattern, (mag_op, mag_params) in patterns[:1] if quick else patterns:
        ppl: dict[str, float] = {}
        for method, op, params in (
            ("magnitude", mag_op, mag_params),
            ("wanda", "prune.wanda", {**pattern, **CALIBRATION}),
            ("sparsegpt", "prune.sparsegpt", {**pattern, **CALIBRATION}),
        ):
            t0 = time.perf_counter()
            model = s.run_op(op, copy.deepcopy(s.base), params)
            ppl[method] = s.metric(model)
            print(f"  {label} {method}: perplexity {ppl[method]:.4f} ({time.perf_counter() - t0:.1f}s)",
                  file=sys.stderr, flush=True)  # fmt: skip
        base_ppl = s.metric(s.base)
        rows.append(
            row(
                f"prune charlm {label} magnitude perplexity",
                ppl["magnitude"],
                f"reported (base {base_ppl:.4f})",
                True,
            )
        )
        for method in ("wanda", "sparsegpt"):
            rows.append(
                at_most(
                    f"prune charlm {label} {method} perplexity", ppl[method], ppl["magnitude"], "magnitude's"
                )
            )
        rows.append(at_most(f"prune charlm {label} sparsegpt / wanda perplexity", ppl["sparsegpt"] / ppl["wanda"],
                            SGPT_VS_WANDA, "SparseGPT ≈ Wanda"))  # fmt: skip
    return rows


#: section name -> (samples it needs, row maker); another section adds itself here
SECTIONS: dict[str, tuple[tuple[str, ...], Callable[[dict[str, Sample], bool], list[dict[str, Any]]]]] = {
    "palettize": (("charlm", "minilm"), palettize_rows),
    "prune": (("charlm",), prune_rows),
    "awq": (("charlm",), lambda s, q: _quant().awq_rows(s, q, row, at_most)),
    "w8a8": (("charlm", "minilm"), lambda s, q: _quant().w8a8_rows(s, q, row, at_most, at_least)),
}


def _quant() -> Any:
    """bench_methods_quant.py beside this file: the AWQ and W8A8 sections."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_methods_quant

    return bench_methods_quant


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", choices=sorted(SECTIONS), help="run these sections only")
    ap.add_argument("--quick", action="store_true", help="one setting per section (a smoke run)")
    # one thread by default: on a shared 2-core machine a second OpenMP thread that is not
    # scheduled makes every small forward wait for it (charlm: 1.4 s a batch instead of 0.03 s)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    chosen = args.only or list(SECTIONS)
    needed = sorted({n for sec in chosen for n in SECTIONS[sec][0]})
    start = time.perf_counter()
    samples = {n: Sample(n) for n in needed}
    figures: list[dict[str, Any]] = []
    for sec in chosen:
        figures += SECTIONS[sec][1](samples, args.quick)
    width = max(len(f["name"]) for f in figures)
    print(f"{'figure':<{width}}  {'value':>10}  ok  target")
    for f in figures:
        value = "-" if f["value"] is None else f"{f['value']:.4f}"
        print(f"{f['name']:<{width}}  {value:>10}  {'yes' if f['ok'] else 'NO ':<3} {f['target']}")
    ok = all(f["ok"] for f in figures)
    print(
        json.dumps(
            {
                "bench": "methods",
                "seconds": round(time.perf_counter() - start, 1),
                "figures": figures,
                "ok": ok,
            }
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
