"""`bonsai export MODEL DIR --format onnx|executorch`: a stored model as a file a runtime loads.

The exporters trace the model on a real input, so the model's experiment file (recorded with it)
gives the task whose example batch that is; the file written is checked in its runtime against
the model on the task's evaluation instances before it is moved into place, and the parity is
returned for the user to read.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from .targets import DEFAULT_TOLERANCE, INSTALL_HINT, TARGETS, Target

#: `--format` -> deploy target
FORMATS: dict[str, str] = {t.format: t.name for t in TARGETS.values()}


@dataclass
class Exported:
    path: Path
    target: Target
    max_abs_diff: float
    relative: float
    agreement: float | None
    instances: int
    note: str

    def summary(self) -> str:
        agree = "" if self.agreement is None else f", top-1 agreement {100 * self.agreement:.1f}%"
        flag = "" if self.relative <= DEFAULT_TOLERANCE else f" (beyond the tolerance {DEFAULT_TOLERANCE:g}!)"
        return (
            f"{self.target.name} runs it: max abs difference {self.max_abs_diff:.3g} from the stored model on "
            f"{self.instances} evaluation instances{agree}{flag}"
        )


def target_file(out_dir: Path, format: str) -> Path:
    return out_dir / f"model{TARGETS[FORMATS[format]].suffix}"


def export_conflict(out_dir: Path, format: str) -> str | None:
    """Why writing `format` into `out_dir` needs --force (its file is there already), else None."""
    f = target_file(out_dir, format)
    return f"{f} exists" if f.exists() else None


def export_for_runtime(
    store: Any, rec: Any, cm: Any, out_dir: Path, format: str, *, force: bool = False
) -> Exported:
    """Export the stored model `rec` (rebuilt as `cm`) to `out_dir/model.onnx` or `model.pte`."""
    from ..experiment import load_experiment
    from ..store import experiment_path
    from ..tasks import make_task
    from .session import Deployment, DeploySpec

    if format not in FORMATS:
        raise UserError(f"unknown runtime format '{format}' (use {', '.join(FORMATS)})")
    target = TARGETS[FORMATS[format]]
    missing = target.missing()
    if missing:
        raise UserError(f"exporting to {format} needs {', '.join(missing)}: {INSTALL_HINT}")
    if not force and export_conflict(out_dir, format):
        raise UserError(f"{export_conflict(out_dir, format)}; add --force to replace it")
    exp_file = root_experiment(store, rec)
    if exp_file is None:
        raise UserError(
            f"model '{rec.name}' has no experiment file recorded: an {format} export traces the model on "
            "its task's example input, so export a model made by `bonsai run FILE`"
        )
    path = experiment_path(exp_file, store.workspace)
    parsed = load_experiment(path)
    exp = parsed.experiment
    if exp is None or exp.task is None:
        why = "it has no `task:`" if exp is not None else "; ".join(str(p) for p in parsed.errors[:2])
        raise UserError(f"cannot build the example input from {path}: {why}")
    task = make_task(exp)
    spec = exp.deploy_for(rec.variant) if rec.variant else exp.deploy
    tolerance = spec.tolerance if spec is not None and spec.tolerance is not None else DEFAULT_TOLERANCE
    with Deployment(cm.module, task, DeploySpec((target.name,), tolerance), encodings=cm.encodings) as d:
        d.prepare()
        done = d.exported(target.name)
        if done is None:
            raise UserError(d.missing(target.name) or f"{target.name}: nothing was exported")
        written, parity = done
        out_dir.mkdir(parents=True, exist_ok=True)
        final = target_file(out_dir, format)
        tmp = out_dir / f".{final.name}.partial"
        shutil.copyfile(written, tmp)
        os.replace(tmp, final)  # a reader never sees half a file
        note = next((m.detail for m in d.metrics() if m.name == target.metric("size")), "")
    return Exported(
        final, target, parity.max_abs_diff, parity.relative(), parity.agreement, parity.instances, note
    )


def root_experiment(store: Any, rec: Any) -> str | None:
    """The experiment file recorded with the model, or with the nearest ancestor that has one."""
    cur, seen = rec, set()
    while cur is not None and cur.id not in seen:
        seen.add(cur.id)
        if cur.experiment_file:
            return str(cur.experiment_file)
        cur = store.get_model(cur.parent_id) if cur.parent_id else None
    return None
