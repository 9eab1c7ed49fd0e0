"""A model measured in its deploy targets during a run: export, parity, size and latency.

For each target the model is exported (to a temporary folder: `bonsai export --format` writes
files to keep), loaded in the runtime, run on the evaluation instances beside the eager model
(parity: the largest absolute difference of their outputs, and the agreement of their top-1
choices), and timed on the task's example batch in the same rounds as the eager model
(`efficiency.Companion`): its latency, and the speed-up over eager from the same rounds.

What can go wrong is a metric, never a failed run: a target whose package is missing gets a
`<target>_latency` row with no value and the install hint as its detail; a model the exporter
cannot express gets that row with the op and layer named; outputs beyond the tolerance give the
model the `deploy_parity_flags` metric (how many targets, and by how much), which `bonsai show`,
the tree and the table show, and the run reports as a warning.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..metrics.efficiency import Companion, Latency, LatencyMetric, latency_metrics
from ..tasks.base import Metric
from .flat import Call, DeployError, record_call
from .layers import first_line
from .targets import DEFAULT_TOLERANCE, FLAG_METRIC, INSTALL_HINT, MIN_AGREEMENT, TARGETS, Target

log = logging.getLogger(__name__)

#: Parity is checked on at most this many evaluation instances (the first ones, in the task's
#: order): enough to catch a wrong kernel, bounded so a large evaluation set costs no more.
PARITY_INSTANCES = 256


@dataclass(frozen=True)
class DeploySpec:
    """What `deploy:` asks of one model: its targets and the parity tolerance."""

    targets: tuple[str, ...]
    tolerance: float = DEFAULT_TOLERANCE


@dataclass
class Parity:
    max_abs_diff: float
    scale: float  # max(1, largest |eager output|): the tolerance is relative to it
    agreement: float | None  # share of positions whose argmax agree (None: no score outputs)
    instances: int

    def relative(self) -> float:
        return self.max_abs_diff / self.scale


@dataclass
class _Prepared:
    target: Target
    program: Any = None
    feed: Any = None
    size: int | None = None
    parity: Parity | None = None
    missing: str | None = None  # why there is no figure (package, export failure)
    note: str = ""  # what the export did (e.g. weights as integer codes)


@dataclass
class _EvalCall:
    call: Call
    n: int  # real instances (the rest of the batch is padding)


@dataclass
class Deployment:
    """One model's deploy targets for one measurement: `prepare`, then its `companions` timed
    with the eager model (efficiency.speed_metrics), then `metrics`; `close` frees the runtimes
    and the temporary files (a `with` block does)."""

    model: nn.Module
    task: Any
    spec: DeploySpec
    encodings: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 8
    progress: Callable[[str], None] = lambda m: None
    _prepared: list[_Prepared] = field(default_factory=list)
    _latency: dict[str, Metric] = field(default_factory=dict)
    _dir: Path | None = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()
        self._prepared = [p for p in self._prepared if p.program is None] + [
            _Prepared(p.target, None, None, p.size, p.parity, p.missing, p.note)
            for p in self._prepared
            if p.program is not None
        ]
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    # -- exporting and parity -------------------------------------------------------------------
    def prepare(self) -> None:
        """Export to every target and check parity; a target that cannot be had is recorded as
        missing with its reason. The model is on the CPU meanwhile (where the runtimes run)."""
        self._dir = Path(tempfile.mkdtemp(prefix="bonsai-deploy-"))
        wanted = [TARGETS[t] for t in self.spec.targets if t in TARGETS]
        runnable = []
        for t in wanted:
            missing = t.missing()
            if missing:
                self._prepared.append(
                    _Prepared(t, missing=f"{', '.join(missing)} not installed: {INSTALL_HINT}")
                )
            else:
                runnable.append(t)
        if not runnable:
            return
        model = self.model
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        model.to("cpu")
        was_training = model.training
        model.eval()
        try:
            with _no_cache(model):
                try:
                    example, evals = self._record()
                except DeployError as e:
                    for t in runnable:
                        self._prepared.append(_Prepared(t, missing=str(e)))
                    return
                for t in runnable:
                    self.progress(f"exporting to {t.name}")
                    self._prepared.append(self._one(t, example, evals))
        finally:
            model.train(was_training)
            model.to(device)

    def _record(self) -> tuple[Call, list[_EvalCall]]:
        task, model = self.task, self.model
        batch = task.to_device(task.example_batch(self.batch_size), torch.device("cpu"))
        example, _ = record_call(model, lambda m: task.forward(m, batch))
        evals: list[_EvalCall] = []
        seen = 0
        for b in task.eval_batches(self.batch_size):
            if seen >= PARITY_INSTANCES:
                break
            on_cpu = task.to_device(b, torch.device("cpu"))

            def run(m: nn.Module, b: Any = on_cpu) -> Any:
                return task.forward(m, b)

            call, _ = record_call(model, run)
            if call.in_spec != example.in_spec:
                raise DeployError("the task calls the model differently for evaluation than for timing")
            evals.append(_EvalCall(call, len(b.ids)))
            seen += len(b.ids)
        return example, evals

    def _dynamic(self, example: Call, evals: list[_EvalCall]) -> dict[int, dict[int, tuple[str, int]]]:
        """Dimensions past the batch one that differ between the evaluation batches (text padded
        to each batch's longest): input index -> {dim: (name, largest size)}."""
        out: dict[int, dict[int, tuple[str, int]]] = {}
        for i, x in enumerate(example.inputs):
            for d in range(1, x.dim()):
                sizes = {int(x.shape[d])} | {int(e.call.inputs[i].shape[d]) for e in evals}
                if len(sizes) > 1:
                    out.setdefault(i, {})[d] = (f"dim{d}", max(sizes))
        # one name per distinct size set would be finer; one per dimension index is what tasks
        # make (every token input padded alike)
        return out

    def _one(self, t: Target, example: Call, evals: list[_EvalCall]) -> _Prepared:
        assert self._dir is not None
        path = self._dir / f"model{t.suffix}"
        dynamic = self._dynamic(example, evals)
        note = ""
        try:
            if t.name == "onnxruntime":
                from .onnx import OnnxRuntimeProgram, export_onnx

                info = export_onnx(
                    self.model,
                    example,
                    path,
                    encodings=self.encodings,
                    dynamic={i: {d: n for d, (n, _) in dims.items()} for i, dims in dynamic.items()},
                )
                if info.qdq:
                    note = f"{len(info.qdq)} weight tensors as integer codes + DequantizeLinear"
                    if info.folded:
                        note += f" ({len(info.folded)} with a BatchNorm folded into their scales)"
                if info.kept_float:
                    name, why = next(iter(info.kept_float.items()))
                    note += f"{'; ' if note else ''}{len(info.kept_float)} quantized tensors kept float ({name}: {why})"
                program: Any = OnnxRuntimeProgram(path)
            else:
                from .executorch import ExecuTorchProgram, export_executorch

                with _eager_attention(self.model):
                    export_executorch(self.model, example, path, dynamic=dynamic)
                program = ExecuTorchProgram(path)
            parity = _parity(program, example, evals)
        except DeployError as e:
            return _Prepared(t, missing=str(e))
        except Exception as e:  # a runtime's own failure: the run goes on, the reason is kept
            log.debug("%s failed", t.name, exc_info=True)
            return _Prepared(t, missing=f"{t.name}: {type(e).__name__}: {first_line(e)}")
        return _Prepared(t, program, program.prepare(example.inputs), path.stat().st_size, parity, None, note)

    # -- timing -----------------------------------------------------------------------------------
    def companions(self) -> list[Companion]:
        """Each runtime's call on the example batch, timed in the eager model's rounds."""
        out = []
        for p in self._prepared:
            if p.program is None:
                continue

            def call(p: _Prepared = p) -> None:
                p.program.run_prepared(p.feed)

            def done(lat: Latency, eager: Latency, p: _Prepared = p) -> list[Metric]:
                return self._timed(p.target, lat, eager)

            out.append(Companion(call, self.batch_size, done))
        return out

    def measure_alone(self, protocol: Any = None) -> list[Metric]:
        """The runtimes' latencies without the eager model beside them (it runs on an accelerator:
        no shared rounds, no fair ratio), on the CPU with the same protocol, round by round in turn."""
        from ..metrics.efficiency import ThreadCpuTimer, measure_latencies, one_thread

        runs = self.companions()
        if not runs:
            return []
        with one_thread():
            lats = measure_latencies(
                [c.call for c in runs],
                batch_sizes=[c.batch_size for c in runs],
                device=torch.device("cpu"),
                protocol=protocol,
                timer=ThreadCpuTimer(),
            )
        out: list[Metric] = []
        live = [p for p in self._prepared if p.program is not None]
        for p, lat in zip(live, lats, strict=True):
            out += self._timed(p.target, lat, None)
        return out

    def _timed(self, t: Target, lat: Latency, eager: Latency | None) -> list[Metric]:
        m = latency_metrics(lat)[0]
        assert isinstance(m, LatencyMetric)
        m.name, m.headline = t.metric("latency"), False
        m.detail = f"{t.name} on the CPU, 1 thread; " + m.detail
        if m.measurement is not None:
            m.measurement = {**m.measurement, "detail": m.detail}
        self._latency[t.name] = m
        if eager is None:
            return [m]
        speedup = eager.value_s / lat.value_s if lat.value_s > 0 else math.inf
        return [
            m,
            Metric(
                t.metric("speedup"),
                speedup,
                "x",
                True,
                detail=f"eager {eager.value_s * 1000:.3g} ms / {t.name} {lat.value_s * 1000:.3g} ms, same rounds",
            ),
        ]

    # -- the metrics -------------------------------------------------------------------------------
    def metrics(self) -> list[Metric]:
        """Size, parity, missing figures and the flag (latencies come from `companions`)."""
        out: list[Metric] = []
        flags: list[str] = []
        for p in self._prepared:
            t = p.target
            if p.missing is not None:
                out.append(Metric(t.metric("latency"), math.nan, "ms", False, detail=f"missing: {p.missing}"))
                continue
            assert p.size is not None and p.parity is not None
            out.append(
                Metric(
                    t.metric("size"),
                    float(p.size),
                    "B",
                    False,
                    detail=p.note or f"bytes of the {t.suffix} file",
                )
            )
            par = p.parity
            tol = self.spec.tolerance
            out.append(
                Metric(
                    t.metric("max_abs_diff"),
                    par.max_abs_diff,
                    "",
                    False,
                    detail=f"on {par.instances} evaluation instances; {par.relative():.3g} of max(1, |eager|) "
                    f"(tolerance {tol:g})",
                )
            )
            if par.agreement is not None:
                out.append(
                    Metric(
                        t.metric("agreement"),
                        100.0 * par.agreement,
                        "%",
                        True,
                        detail=f"top-1 of the runtime's outputs = the eager model's, {par.instances} instances",
                    )
                )
            bad = []
            if par.relative() > tol:
                bad.append(
                    f"max abs difference {par.max_abs_diff:.3g} ({par.relative():.3g} relative) > {tol:g}"
                )
            if par.agreement is not None and par.agreement < MIN_AGREEMENT:
                bad.append(f"top-1 agreement {100 * par.agreement:.1f}% < {100 * MIN_AGREEMENT:g}%")
            if bad:
                flags.append(f"{t.name}: {', '.join(bad)}")
        if flags:
            out.append(
                Metric(
                    FLAG_METRIC,
                    float(len(flags)),
                    "",
                    False,
                    detail="outputs differ from the evaluated model: " + "; ".join(flags),
                )
            )
        return out

    def exported(self, target: str) -> tuple[Path, Parity] | None:
        """Where `prepare` wrote `target`'s file (until `close`) and its parity; None when it
        could not (`missing` says why)."""
        p = next((p for p in self._prepared if p.target.name == target), None)
        if p is None or p.program is None or p.parity is None or self._dir is None:
            return None
        return self._dir / f"model{p.target.suffix}", p.parity

    def missing(self, target: str) -> str | None:
        p = next((p for p in self._prepared if p.target.name == target), None)
        return None if p is None else p.missing

    def warning(self) -> str | None:
        """The parity flag's message, for the run's warnings (None when every target agrees)."""
        flag = next((m for m in self.metrics() if m.name == FLAG_METRIC), None)
        return None if flag is None else flag.detail


def _pad(x: torch.Tensor, n: int) -> torch.Tensor:
    """`x` with its batch dimension filled to `n` rows by repeating its last row."""
    if x.dim() == 0 or x.shape[0] >= n:
        return x
    return torch.cat([x, x[-1:].expand(n - x.shape[0], *x.shape[1:])])


def _parity(program: Any, example: Call, evals: list[_EvalCall]) -> Parity:
    n_batch = int(example.inputs[0].shape[0]) if example.inputs and example.inputs[0].dim() else 0
    worst, scale = 0.0, 1.0
    agree = total = 0
    count = 0
    for e in evals:
        inputs = [_pad(x, n_batch) if x.dim() and x.shape[0] == e.n else x for x in e.call.inputs]
        got = program.run(inputs)
        want = e.call.outputs
        if len(got) != len(want):
            raise DeployError(f"the runtime returned {len(got)} outputs, the model {len(want)}")
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            g = g[: e.n] if g.dim() and w.dim() and w.shape[0] == e.n else g
            if tuple(g.shape) != tuple(w.shape):
                raise DeployError(
                    f"output {i}: the runtime gave shape {tuple(g.shape)}, the model {tuple(w.shape)}"
                )
            if not w.is_floating_point():
                if not torch.equal(g.to(w.dtype), w):
                    worst = math.inf
                continue
            g32, w32 = g.to(torch.float32), w.to(torch.float32)
            worst = max(worst, float((g32 - w32).abs().max()) if w.numel() else 0.0)
            scale = max(scale, float(w32.abs().max()) if w.numel() else 0.0)
            if i == 0 and w.dim() >= 2 and w.shape[-1] > 1:
                agree += int((g32.argmax(-1) == w32.argmax(-1)).sum())
                total += int(w32.argmax(-1).numel())
        count += e.n
    return Parity(worst, scale, agree / total if total else None, count)


@contextlib.contextmanager
def _no_cache(model: nn.Module) -> Any:
    """Hugging Face decoders return their key/value cache (an object no runtime returns) unless
    told not to; the logits are the same either way."""
    config = getattr(model, "config", None)
    before = getattr(config, "use_cache", None)
    if config is not None and before:
        config.use_cache = False
    try:
        yield
    finally:
        if config is not None and before:
            config.use_cache = before


def session_spec(spec: Any) -> DeploySpec:
    """The session's spec from the experiment file's (`experiment.model.DeploySpec`: its tolerance
    None when the file gives none)."""
    tol = getattr(spec, "tolerance", None)
    return DeploySpec(tuple(spec.targets), DEFAULT_TOLERANCE if tol is None else float(tol))


@contextlib.contextmanager
def _eager_attention(model: nn.Module) -> Any:
    """Hugging Face attention as plain matmuls while lowering to ExecuTorch: its SDPA path leaves
    a transposed tensor that ExecuTorch's edge passes then fail to view (GPT-2, executorch 1.5.1);
    the two compute the same attention."""
    config = getattr(model, "config", None)
    before = getattr(config, "_attn_implementation", None)
    if config is None or before in (None, "eager"):
        yield
        return
    config._attn_implementation = "eager"
    try:
        yield
    finally:
        config._attn_implementation = before
