"""Measure each layer's (or block's) sensitivity to each op setting, applying it to that unit alone.

Two fidelities:
- **proxy**: the unit's isolated output error. The base model runs once on a few calibration
  batches while hooks keep each scanned module's input and output; after the setting is applied to
  the unit alone, its modules run on those same inputs, and the value is the relative L2 error of
  their outputs, sqrt(sum |y' - y|^2 / sum |y|^2) over the unit's modules and batches. No
  evaluation, so it is fast; a block's value covers its layers each on the base's input.
- **full**: the task's headline metric on a small instance subset, with the setting applied to the
  unit alone; the value is the loss against the base on the same subset (base - model for a
  higher-is-better metric), in the metric's own unit.

Each (setting, unit) also records the unit's stored bytes under the setting (the artifact's own
forms), which a budgeted recipe (`budget.py`) trades against the sensitivity.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import UserError
from ..ops.registry import Cancelled, CompressedModel, OpContext, OpError, get_op
from ..ops.targets import move_batch
from .spec import SCANNABLE_PARAM, ScanSetting, ScanSpec, spec_from_json
from .units import ScanUnit, exact_pattern, scan_units

ProgressFn = Callable[[float, str], None]


class ScanError(UserError, ValueError):
    """A scan that cannot run as written (an op without per-layer targets, no task)."""


@dataclass
class ScanResult:
    spec: ScanSpec
    units: list[ScanUnit]
    base_bytes: list[int]  # per unit: its weights as the base stores them
    numel: list[int]  # per unit: elements of its weights
    proxy: list[list[float | None]] | None = None  # [setting][unit]
    full: list[list[float | None]] | None = None  # [setting][unit], loss in the metric's unit
    bytes: list[list[int | None]] = field(default_factory=list)  # [setting][unit]
    skipped: dict[str, str] = field(default_factory=dict)  # "setting:unit" -> why
    metric: dict[str, Any] | None = None  # full: {"name", "unit", "higherIsBetter", "base"}

    def sensitivity(self, s: int, u: int) -> float | None:
        """The value a budgeted recipe minimises: the full loss where measured, else the proxy."""
        if self.full is not None and self.full[s][u] is not None:
            return self.full[s][u]
        return None if self.proxy is None else self.proxy[s][u]

    def rank_correlation(self, s: int) -> float | None:
        """Spearman's rank correlation of proxy and full values of setting `s` (both measured)."""
        if self.proxy is None or self.full is None:
            return None
        pairs = [
            (p, f)
            for p, f in zip(self.proxy[s], self.full[s], strict=True)
            if p is not None and f is not None
        ]
        return spearman([p for p, _ in pairs], [f for _, f in pairs]) if len(pairs) >= 3 else None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ScanResult:
        spec = spec_from_json(d["spec"])
        return cls(
            spec=spec,
            units=[ScanUnit(u["name"], tuple(u["params"])) for u in d["units"]],
            base_bytes=list(d["baseBytes"]),
            numel=list(d["numel"]),
            proxy=d.get("proxy"),
            full=d.get("full"),
            bytes=list(d.get("bytes") or []),
            skipped=dict(d.get("skipped") or {}),
            metric=d.get("metric"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_json(),
            "units": [{"name": u.name, "params": list(u.params)} for u in self.units],
            "baseBytes": self.base_bytes,
            "numel": self.numel,
            "proxy": self.proxy,
            "full": self.full,
            "bytes": self.bytes,
            "skipped": self.skipped,
            "metric": self.metric,
            "rankCorrelation": [self.rank_correlation(s) for s in range(len(self.spec.settings))],
        }


def spearman(a: list[float], b: list[float]) -> float | None:
    ra, rb = _ranks(a), _ranks(b)
    n = len(ra)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    return None if va == 0 or vb == 0 else cov / math.sqrt(va * vb)


def _ranks(v: list[float]) -> list[float]:
    order = sorted(range(len(v)), key=lambda i: v[i])
    ranks = [0.0] * len(v)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1  # ties share their mean rank
        i = j + 1
    return ranks


def run_scan(
    base: CompressedModel,
    spec: ScanSpec,
    *,
    task: Any,
    device: torch.device,
    full_task: Any = None,
    progress: ProgressFn | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> ScanResult:
    """Scan `base` (left unchanged). `task` gives calibration batches (proxy) and what ops need;
    `full_task` evaluates the full fidelity (the task limited to `spec.max_instances`)."""
    say = progress or (lambda f, m: None)
    stop = cancelled or (lambda: False)
    if task is None:
        raise ScanError("a scan needs a task (its calibration batches): add a `task:` section")
    if spec.full and full_task is None:
        raise ScanError("a full scan needs the task to evaluate on")
    opdefs = []
    for s in spec.settings:
        opdef = get_op(s.op)
        if opdef is None:
            raise ScanError(f"scan setting {s.label}: unknown op '{s.op}'")
        if opdef.param(SCANNABLE_PARAM) is None:
            raise ScanError(
                f"scan setting {s.label}: {s.op} works on the whole model (it has no `include`), "
                "so it cannot be applied to one layer at a time"
            )
        opdefs.append(opdef)
    base.module.to(device).eval()
    try:
        units = scan_units(base.module, spec.include, spec.exclude, spec.granularity)
    except ValueError as e:
        raise ScanError(str(e)) from None
    result = ScanResult(
        spec=spec,
        units=units,
        base_bytes=[sum(tensor_bytes(base, p) for p in u.params) for u in units],
        numel=[sum(base.module.get_parameter(p).numel() for p in u.params) for u in units],
    )
    cache = _cache_io(base, units, task, spec, device) if spec.proxy else {}
    if spec.full:
        with torch.no_grad():
            base_eval = full_task.evaluate(base.module, device)
        head = next((m for m in base_eval.metrics if m.headline), base_eval.metrics[0])
        result.metric = {
            "name": head.name,
            "unit": head.unit,
            "higherIsBetter": head.higher_is_better,
            "base": head.value,
        }
    result.proxy = [[None] * len(units) for _ in spec.settings] if spec.proxy else None
    result.full = [[None] * len(units) for _ in spec.settings] if spec.full else None
    result.bytes = [[None] * len(units) for _ in spec.settings]
    total = len(spec.settings) * len(units)
    for si, (setting, opdef) in enumerate(zip(spec.settings, opdefs, strict=True)):
        for ui, unit in enumerate(units):
            if stop():
                raise Cancelled()
            say((si * len(units) + ui) / total, f"{setting.label} on {unit.name}")
            key = f"{si}:{ui}"
            cm, why = _apply(base, setting, opdef, unit, task, device, spec.seed, stop)
            if cm is None:
                result.skipped[key] = why
                continue
            result.bytes[si][ui] = sum(tensor_bytes(cm, p) for p in unit.params)
            if result.proxy is not None:
                err, why = _proxy_error(cm, unit, cache, device)
                result.proxy[si][ui] = err
                if err is None:
                    result.skipped[key] = why
            if result.full is not None and result.metric is not None:
                with torch.no_grad():
                    ev = full_task.evaluate(cm.module, device)
                value = next((m.value for m in ev.metrics if m.name == result.metric["name"]), None)
                if value is not None:
                    base_value = float(result.metric["base"])
                    loss = base_value - value if result.metric["higherIsBetter"] else value - base_value
                    result.full[si][ui] = float(loss)
    say(1.0, "scan done")
    return result


def _apply(
    base: CompressedModel,
    setting: ScanSetting,
    opdef: Any,
    unit: ScanUnit,
    task: Any,
    device: torch.device,
    seed: int,
    stop: Callable[[], bool],
) -> tuple[CompressedModel | None, str]:
    params = opdef.resolve({**setting.params, SCANNABLE_PARAM: [exact_pattern(p) for p in unit.params]})
    work = copy.deepcopy(base)
    ctx = OpContext(
        device=device, seed=seed, task=task if opdef.needs_task else None, parent=base, cancelled=stop
    )
    torch.manual_seed(seed)
    try:
        cm = opdef.fn(work, params, ctx)
    except OpError as e:
        return None, str(e)
    if ctx.skipped:
        layer, why = next(iter(ctx.skipped.items()))
        return None, f"{setting.op} skips {layer}: {why}"
    cm.module.eval()
    return cm, ""


def _cache_io(
    base: CompressedModel, units: list[ScanUnit], task: Any, spec: ScanSpec, device: torch.device
) -> dict[str, list[tuple[tuple[Any, ...], torch.Tensor]]]:
    """Each scanned module's inputs and outputs on the calibration batches (on the CPU)."""
    wanted = {m for u in units for m in u.modules}
    cache: dict[str, list[tuple[tuple[Any, ...], torch.Tensor]]] = {m: [] for m in wanted}
    hooks = []
    for name, mod in base.module.named_modules():
        if name in wanted:

            def hook(mod: Any, args: tuple[Any, ...], out: Any, name: str = name) -> None:
                if isinstance(out, torch.Tensor):
                    cache[name].append((tuple(_cpu(a) for a in args), out.detach().float().cpu()))

            hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            for batch in task.calibration_batches(spec.batches, spec.batch_size, spec.seed):
                task.forward(base.module, move_batch(batch, device))
    finally:
        for h in hooks:
            h.remove()
    return cache


def _cpu(a: Any) -> Any:
    return a.detach().cpu() if isinstance(a, torch.Tensor) else a


def _proxy_error(
    cm: CompressedModel,
    unit: ScanUnit,
    cache: dict[str, list[tuple[tuple[Any, ...], torch.Tensor]]],
    device: torch.device,
) -> tuple[float | None, str]:
    num = den = 0.0
    with torch.no_grad():
        for m in unit.modules:
            mod = cm.module.get_submodule(m)
            for args, y in cache.get(m, []):
                out = mod(*(a.to(device) if isinstance(a, torch.Tensor) else a for a in args))
                if not isinstance(out, torch.Tensor) or out.shape != y.shape:
                    got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                    return (
                        None,
                        f"{m}'s output changes shape ({list(y.shape)} -> {got}): only the full fidelity measures it",
                    )
                d = out.float().cpu() - y
                num += float((d * d).sum())
                den += float((y * y).sum())
    if den == 0.0:
        return None, "the unit's base outputs are all zero on the calibration batches"
    return math.sqrt(num / den), ""


def tensor_bytes(cm: CompressedModel, name: str) -> int:
    """Bytes the artifact stores for parameter `name` of `cm` (its smallest honest form)."""
    from ..artifacts import forms
    from ..ops.palettize import PaletteEncoding
    from ..ops.quantize import QuantEncoding

    path, _, leaf = name.rpartition(".")
    mod = cm.module.get_submodule(path) if path else cm.module
    w = getattr(mod, leaf, None)
    if callable(w) and not isinstance(w, torch.Tensor):  # a dynamic int8 module: weight() packs it
        return forms.encode_qint8(name, w()).nbytes
    t = cm.module.get_parameter(name).detach()
    enc = cm.encodings.get(name)
    stored = None
    if isinstance(enc, QuantEncoding):
        stored = forms.encode_quant(name, t, enc)
    elif isinstance(enc, PaletteEncoding):
        stored = forms.encode_palette(name, t, enc)
    return (stored if stored is not None else forms.encode_plain(name, t)).nbytes
