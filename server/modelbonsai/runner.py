"""Plan (what is stale) and execute an experiment's variants into the lineage store.

Naming: the model a variant ends with carries the variant's name (``prune-50``). A variant with
several ops records each intermediate model too, named ``<variant>/<k>`` for the model after its
first k ops (``prune-50-int8/1`` after op 1 of 2). `step` in the store is the 0-based op index.

Up to date: every model has a fingerprint, hash(parent fingerprint, op name, resolved params,
seed [, task when the op uses it]); the base's fingerprint covers the experiment file, the load
spec and the weight files' sizes and times. A model whose fingerprint is already stored (and not
broken) is skipped unless forced; a forced model replaces the stored one (its children follow).

Re-evaluated: a model's weights do not depend on how it is evaluated, but its metrics and stored
outputs do. Each stored model also records an evaluation fingerprint (the task and how many
instances); a stored model whose evaluation fingerprint differs from the run's (or is unknown) is
re-evaluated in place: same id, same artifact, children stay attached; its metrics, outputs and
evaluation fingerprint are replaced. The base goes first (its outputs are the reference).
The instance limit is decided once, by `make_plan(max_instances=)` (`evaluation_limit`); the
Runner evaluates with the plan's `max_instances`, and the language server judges staleness with
the same `evaluation_fingerprint` for the limit its own runs use.

Failure: a step that fails stores nothing; its variant is reported failed with the message and
every variant below it is skipped; other branches go on. The run record lists the failures.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .device import resolve_device
from .errors import BonsaiError, UserError
from .fingerprints import (  # noqa: F401  (re-exported: the runner is where callers found them)
    BASE,
    _evaluation_fingerprint,
    _hash,
    base_plan_fingerprint,
    base_spec_dict,
    evaluated_fingerprint,
    evaluation_change,
    evaluation_counts,
    evaluation_fingerprint,
    evaluation_limit,
    experiment_label,
    same_evaluation,
    split_evaluation_fingerprint,
    step_fingerprint,
    task_key,
)
from .load import LoadError, load_base, load_skeleton
from .ops.registry import Cancelled, CompressedModel, OpContext, OpError, get_op
from .store import LineageStore, ModelRecord

log = logging.getLogger(__name__)

OUTPUTS_FILE = "outputs.safetensors"
# The metric that stores the layers an op skipped (`OpContext.skipped`): its value is how many,
# its detail which and why, so `bonsai show`, the Model Map and the lineage all carry the warning.
SKIPPED_METRIC = "skipped_layers"

ProgressFn = Callable[[float, str], None]
_CLAIM_POLL_S = 0.25  # how often a run waiting for another's model looks again


# -- events -------------------------------------------------------------------------------------


@dataclass
class RunEvent:
    """What the runner reports as it goes (the CLI draws a bar per variant from these).

    kind: "plan" | "start" | "progress" | "stored" | "re-evaluated" | "up-to-date" | "failed" | "skipped"
    | "warning" (a stored model whose op skipped layers: `message` says which) | "done"
    """

    kind: str
    variant: str = ""
    model: str = ""
    fraction: float = 0.0
    message: str = ""
    record: ModelRecord | None = None


EventFn = Callable[[RunEvent], None]


# -- the plan -----------------------------------------------------------------------------------


@dataclass
class PlannedStep:
    """One model to have in the store: the base (op None) or one op of one variant."""

    name: str
    variant: str  # "" for the base
    step: int
    op: str | None
    params: dict[str, Any]
    parent: str | None  # planned name of the parent step (None for the base)
    fingerprint: str
    seed: int
    existing: ModelRecord | None = None
    selected: bool = True  # asked for (not merely needed as an ancestor)
    force: bool = False
    replaces: str | None = None  # stored model this one supersedes (forced, or broken)
    # Planned name of the model the variant starts from (its `from`). Ops that read "the parent"
    # (restore) mean this one, not the previous step of the same variant: `[prune, restore]`
    # must copy back the unpruned tensors.
    origin: str | None = None
    # What the run evaluates with (evaluation_fingerprint); the Runner sets it from its settings.
    eval_fingerprint: str = ""
    # Planned name of an earlier step with the same fingerprint: this step is that model (made or
    # found once per run), and its name resolves to it in the store.
    same_as: str | None = None
    # Deploy targets (`deploy:`) the stored model has no figures for (added to the file after it
    # was made): it is re-evaluated, which measures them.
    deploy_missing: tuple[str, ...] = ()

    @property
    def up_to_date(self) -> bool:
        """The model is stored (its weights need no making); see `reevaluate` for its metrics."""
        return self.existing is not None and not self.force

    @property
    def reevaluate(self) -> bool:
        """Stored, but its metrics and outputs are of other evaluation settings (or unknown ones)."""
        return (
            self.up_to_date
            and self.existing is not None
            and (
                not same_evaluation(self.existing.eval_fingerprint, self.eval_fingerprint)
                or bool(self.deploy_missing)
            )
        )

    @property
    def is_final(self) -> bool:
        return "/" not in self.name


@dataclass
class Plan:
    experiment: Any
    steps: list[PlannedStep]  # the base first, then parents before children
    # How many instances the run evaluates (None: all). Set by make_plan only: the Runner
    # builds its task with it, so what the plan judged up to date is what the run evaluates.
    max_instances: int | None = None

    def stale(self) -> list[PlannedStep]:
        """The models to make (a step sharing an earlier step's fingerprint is made by that one)."""
        return [s for s in self.steps if not s.up_to_date and s.same_as is None]

    def reevaluations(self) -> list[PlannedStep]:
        """The stored models to re-evaluate (the base first: steps are in plan order)."""
        return [s for s in self.steps if s.reevaluate and s.same_as is None]

    def set_evaluation(self, max_instances: int | None) -> None:
        """Evaluate with at most `max_instances` instances (None: all): every step's evaluation
        fingerprint follows, so re-evaluations are judged against this limit."""
        self.max_instances = max_instances
        fp = _evaluation_fingerprint(self.experiment, max_instances)
        for s in self.steps:
            s.eval_fingerprint = fp

    def step(self, name: str) -> PlannedStep:
        return next(s for s in self.steps if s.name == name)

    def variants(self) -> list[str]:
        return list(dict.fromkeys(s.variant for s in self.steps if s.variant))


def step_reason(st: PlannedStep) -> str:
    """Why a run makes or re-evaluates `st` (one that is not up to date, or is `reevaluate`)."""
    if st.reevaluate:
        assert st.existing is not None
        if st.deploy_missing and same_evaluation(st.existing.eval_fingerprint, st.eval_fingerprint):
            return f"not yet measured in {', '.join(st.deploy_missing)} (deploy)"
        return evaluation_change(st.existing.eval_fingerprint, st.eval_fingerprint)
    if st.force:
        return "forced"
    if st.replaces is not None:
        return "its stored model is broken"
    return "not stored with this recipe"


def unasked(plan: Plan) -> list[PlannedStep]:
    """The models a run makes or re-evaluates although the user did not name them (the base and
    ancestors of the variants asked for; a run of the whole file asks for all): a run says so
    before it starts (`describe_plan`)."""
    work = {id(s) for s in (*plan.stale(), *plan.reevaluations())}
    return [s for s in plan.steps if id(s) in work and not s.selected]


def describe_plan(plan: Plan) -> list[str]:
    """The plan in words, one line per model to make or re-evaluate and why, "not asked for" on
    those the user did not name (`unasked`)."""
    extra = {id(s) for s in unasked(plan)}
    work = {id(s) for s in (*plan.stale(), *plan.reevaluations())}
    lines = []
    for s in plan.steps:
        if id(s) in work:
            verb = "re-evaluate" if s.reevaluate else "make"
            note = ", not asked for" if id(s) in extra else ""
            lines.append(f"{verb} {s.name} ({step_reason(s)}{note})")
    return lines


class PlanError(UserError, ValueError):
    """A user-facing problem making the plan (unknown op, unknown --only name, bad parameter)."""


def step_name(variant: str, index: int, n_ops: int) -> str:
    return variant if index == n_ops - 1 else f"{variant}/{index + 1}"


def make_plan(
    exp: Any,
    store: LineageStore,
    *,
    only: list[str] | None = None,
    force: bool = False,
    max_instances: int | None = None,
) -> Plan:
    """Every model the experiment describes, each with its fingerprint and stored twin if any.

    `only` restricts the run to those variants (and whatever of their ancestors is missing);
    `force` re-makes the selected variants even when up to date (not their ancestors).
    `max_instances`: evaluate on at most this many instances instead of the task's own limit.
    This is the one place a run's evaluation limit is set (`Plan.max_instances`).
    """
    import_user_ops(exp)
    base_fp = base_plan_fingerprint(exp, store.workspace)
    base_step = PlannedStep(
        name=exp.base.name,
        variant="",
        step=0,
        op=None,
        params={},
        parent=None,
        fingerprint=base_fp,
        seed=int(exp.seed),
    )
    steps: list[PlannedStep] = [base_step]
    last_of: dict[str, PlannedStep] = {BASE: base_step, exp.base.name: base_step}
    task = task_key(exp)
    for v in exp.variants:
        parent = last_of.get(v.parent)
        if parent is None:
            raise PlanError(f"variant '{v.name}': parent '{v.parent}' is not defined before it")
        if not v.ops:
            raise PlanError(f"variant '{v.name}' has no ops")
        seed = int(v.seed if getattr(v, "seed", None) is not None else exp.seed)
        origin = parent
        for i, call in enumerate(v.ops):
            opdef = get_op(call.name)
            if opdef is None:
                raise PlanError(f"variant '{v.name}': unknown op '{call.name}'")
            try:
                params = opdef.resolve(dict(call.params))
            except OpError as e:
                raise PlanError(f"variant '{v.name}': {e}") from e
            st = PlannedStep(
                name=step_name(v.name, i, len(v.ops)),
                variant=v.name,
                step=i,
                op=call.name,
                params=params,
                parent=parent.name,
                seed=seed,
                origin=origin.name,
                fingerprint=step_fingerprint(
                    parent.fingerprint, opdef, params, seed, task, origin.fingerprint
                ),
            )
            steps.append(st)
            parent = st
        last_of[v.name] = parent
    names = [v.name for v in exp.variants]
    if only:
        unknown = [n for n in only if n not in names]
        if unknown:
            raise PlanError(f"--only: no variant named {', '.join(unknown)} (variants: {', '.join(names)})")
    first: dict[str, PlannedStep] = {}
    for st in steps:
        # One fingerprint, one model: a later step of the same fingerprint is that model, made
        # (or found) once.
        twin = first.setdefault(st.fingerprint, st)
        if twin is not st:
            st.same_as = twin.name
        st.existing = store.find_by_fingerprint(st.fingerprint)
        if st.existing is None:
            # A broken model with this fingerprint is made again and replaced (children follow).
            broken = store.find_by_fingerprint(st.fingerprint, include_broken=True)
            st.replaces = broken.id if broken is not None else None
        st.selected = not only or st.variant in only
        st.deploy_missing = _deploy_missing(exp, st, store)
    for st in steps:
        st.force = force and st.selected and bool(st.variant)
        if st.force and st.existing is not None:
            st.replaces = st.existing.id
    if only:
        # Keep the selected variants and the ancestors they need; drop other branches.
        by_name = {s.name: s for s in steps}
        needed: set[str] = set()
        for st in steps:
            if st.selected and st.variant:
                cur: PlannedStep | None = st
                while cur is not None and cur.name not in needed:
                    needed.add(cur.name)
                    cur = by_name.get(cur.parent) if cur.parent else None
        steps = [s for s in steps if s.name in needed or s is base_step]
    plan = Plan(exp, steps)
    plan.set_evaluation(evaluation_limit(exp, max_instances))
    return plan


def _deploy_missing(exp: Any, st: PlannedStep, store: LineageStore) -> tuple[str, ...]:
    """The deploy targets of a stored final step's model that it has no figure for (a target
    that could not be measured has its latency row, with the reason: that counts as measured)."""
    if st.existing is None or not st.is_final or not hasattr(exp, "deploy_for"):
        return ()
    spec = exp.deploy_for(st.variant)
    if spec is None:
        return ()
    have = {m.name for m in store.metrics(st.existing.id)}
    return tuple(t for t in spec.targets if f"{t}_latency" not in have)


def import_user_ops(exp: Any) -> None:
    """Import the experiment's `ops_from` files: importing registers their ops.

    Each run imports the files afresh, replacing user ops of the same names registered before
    (a long-lived language server must pick up the user's edits). Built-in ops are never replaced.
    """
    import importlib.util
    import sys

    from .experiment.opcalls import user_op_names
    from .ops import registry

    for raw in getattr(exp, "ops_from", None) or []:
        path = Path(raw).resolve()
        names = user_op_names(path)
        if isinstance(names, str):
            raise PlanError(f"ops_from: {names}")
        for name in names:
            old = registry._OPS.get(name)
            if old is not None and not old.fn.__module__.startswith("modelbonsai."):
                del registry._OPS[name]
        digest = hashlib.sha1(f"{path}:{path.stat().st_mtime_ns}".encode()).hexdigest()[:12]
        mod_name = f"bonsai_user_ops_{digest}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise PlanError(f"ops_from: cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # the user's code: report it, never crash
            sys.modules.pop(mod_name, None)
            raise PlanError(f"ops_from: importing {path.name} raised {type(e).__name__}: {e}") from e


# -- executing ----------------------------------------------------------------------------------


@dataclass
class RunResult:
    run_id: str
    status: str  # done | failed | cancelled
    models: dict[str, ModelRecord] = field(default_factory=dict)  # planned name -> record
    made: list[str] = field(default_factory=list)
    reevaluated: list[str] = field(default_factory=list)  # stored models evaluated again (ids kept)
    up_to_date: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # variant (or base name) -> message
    skipped: dict[str, str] = field(default_factory=dict)  # variant -> why
    # planned step name -> what its op left undone (layers it skipped), for the user to read
    warnings: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "done"


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__, "modelbonsai": __version__}
    from importlib.metadata import PackageNotFoundError, version

    # Read from package metadata: importing transformers just for its version costs seconds.
    for dist in ("transformers", "safetensors", "accelerate"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


class Runner:
    """Executes a plan. Progress goes to `progress(fraction, message)` (overall) and `events`.

    It evaluates with the plan's instance limit (`make_plan(max_instances=)`).
    """

    def __init__(
        self,
        store: LineageStore,
        *,
        device: str = "auto",
        progress: ProgressFn | None = None,
        events: EventFn | None = None,
        cancelled: Callable[[], bool] | None = None,
        allow_pickle: bool = False,
    ):
        self.store = store
        self.device_name = device
        self._progress = progress or (lambda f, m: None)
        self._events = events or (lambda e: None)
        self._cancelled = cancelled or (lambda: False)
        self.allow_pickle = allow_pickle
        self._memo: dict[str, CompressedModel] = {}  # fingerprint -> model (base + latest)
        self._base_fp = ""
        self._base_eval: Any = None
        self._task: Any = None
        self._limit: int | None = None  # the plan's evaluation limit, for the task

    # The heavy lifting of one run; the CLI and the language server both call this.
    def run(self, plan: Plan) -> RunResult:
        exp = plan.experiment
        device = resolve_device(self.device_name)
        self._base_eval, self._task = None, None  # a Runner may be reused for another plan
        self._limit = plan.max_instances
        label = experiment_label(exp.path, self.store.workspace)
        run = self.store.start_run(label, plan.variants())
        result = RunResult(run_id=run.id, status="done")
        n_re = len(plan.reevaluations())
        self._emit(
            RunEvent(
                "plan",
                message=f"{len(plan.stale())} of {len(plan.steps)} models to make"
                + (f", {n_re} to re-evaluate" if n_re else ""),
            )
        )
        todo = [s for s in plan.steps if (not s.up_to_date or s.reevaluate) and s.same_as is None]
        done_count = 0
        # The run's fraction is proportional to work (a 3000-step fine-tune is not one step of
        # two): each step's share of the run, and within it the share of its op (`_work`).
        shares = self._work(plan, todo)
        start_of: dict[str, float] = {}
        acc = 0.0
        for s in todo:
            start_of[s.name] = acc
            acc += shares[s.name][0]

        def share(st: PlannedStep, f: float = 1.0) -> float:
            return min(1.0, start_of.get(st.name, 0.0) + f * shares.get(st.name, (0.0, 0.0))[0])

        # Models the user did not name but this run makes or re-evaluates: said before it
        # starts, and in each of their progress messages.
        extra = unasked(plan)
        extra_ids = {id(s) for s in extra}
        if extra:
            self._progress(
                0.0,
                "first "
                + "; ".join(
                    f"{'re-evaluates' if s.reevaluate else 'makes'} {s.name} (not asked for: {step_reason(s)})"
                    for s in extra
                ),
            )
        bad: dict[str, str] = {}  # planned step name -> why it is unavailable
        try:
            for st in plan.steps:
                self._check_cancelled()
                who = st.variant or st.name
                if st.same_as is not None:
                    # Made (or found) by an earlier step of this run with the same fingerprint.
                    twin = result.models.get(st.same_as)
                    if twin is None:
                        bad[st.name] = bad.get(st.same_as, f"{st.same_as} failed")
                        if st.is_final and who not in result.failed:
                            result.skipped[who] = f"not run: {bad[st.name]}"
                            self._emit(RunEvent("skipped", who, st.name, 0.0, result.skipped[who]))
                    else:
                        self._up_to_date(st, twin, result, label)
                    continue
                if st.up_to_date and not st.reevaluate:
                    assert st.existing is not None
                    self._up_to_date(st, st.existing, result, label)
                    continue
                if st.parent in bad:
                    bad[st.name] = bad[st.parent]
                    if st.is_final and who not in result.failed:  # a failed step of its own says more
                        result.skipped[who] = f"not run: {bad[st.parent]}"
                        self._emit(RunEvent("skipped", who, st.name, 0.0, result.skipped[who]))
                    done_count += 1
                    self._progress(share(st), f"{st.name} skipped")
                    continue
                shown = f"{st.name} (not asked for)" if id(st) in extra_ids else st.name

                def on_progress(f: float, m: str, st: PlannedStep = st, shown: str = shown) -> None:
                    f = min(max(f, 0.0), 1.0)
                    frac = (st.step + f) / max(1, self._n_ops(plan, st))
                    self._emit(RunEvent("progress", st.variant or st.name, st.name, frac, m))
                    self._progress(share(st, _within_step(f, shares[st.name][1])), f"{shown}: {m}")

                self._emit(
                    RunEvent("start", who, st.name, 0.0, "re-evaluating" if st.reevaluate else "loading")
                )
                if st.reevaluate:
                    assert st.existing is not None
                    # Whatever happens, the model itself is there: children can be made from it.
                    result.models[st.name] = st.existing
                try:
                    if st.reevaluate:
                        rec = self._reevaluate(plan, st, result, device, on_progress)
                    else:
                        made_elsewhere = self._claim(st, run.id, on_progress)
                        if made_elsewhere is not None:
                            self._up_to_date(st, made_elsewhere, result, label, "made by another run")
                            done_count += 1
                            self._progress(share(st), f"{st.name} made by another run")
                            continue
                        try:
                            rec = self._make(plan, st, result, device, label, on_progress)
                        finally:
                            # the commit released it when the model was stored; else let others try
                            self.store.release_claim(st.fingerprint, run.id)
                        if rec.name != st.name:
                            # another process stored it first (without a claim): it answers to ours
                            self._up_to_date(st, rec, result, label, "made by another run")
                            done_count += 1
                            self._progress(share(st), f"{st.name} made by another run")
                            continue
                except Cancelled:
                    raise
                except Exception as e:  # one failing branch must not stop the others
                    message = _user_message(e)
                    log.debug("step %s failed\n%s", st.name, traceback.format_exc())
                    if not st.reevaluate:
                        bad[st.name] = f"{st.name} failed"
                    else:
                        # A failed re-evaluation keeps the model and its old metrics.
                        message = f"re-evaluating {st.name}: {message}"
                        if st.op is None:
                            # The base's outputs are every other model's reference: without
                            # them, no agreement metric below it would be right.
                            bad[st.name] = f"re-evaluating {st.name} failed"
                    result.failed[who] = message
                    self._emit(RunEvent("failed", who, st.name, 0.0, message))
                else:
                    result.models[st.name] = rec
                    if st.reevaluate:
                        result.reevaluated.append(st.name)
                        self._emit(RunEvent("re-evaluated", who, st.name, 1.0, "re-evaluated", rec))
                    else:
                        result.made.append(st.name)
                        self._emit(RunEvent("stored", who, st.name, 1.0, "stored", rec))
                done_count += 1
                self._progress(share(st), f"{st.name} finished")
        except Cancelled:
            result.status = "cancelled"
            self.store.finish_run(run.id, "cancelled", "cancelled by the user", result.failed)
            self._emit(RunEvent("done", message="cancelled"))
            return result
        except KeyboardInterrupt:
            # Ctrl-C in a terminal: record it, then let the caller stop.
            self.store.finish_run(run.id, "cancelled", "interrupted (Ctrl-C)", result.failed)
            raise
        finally:
            self._memo.clear()
            self.store.release_claims(run.id)
        if result.failed:
            result.status = "failed"
            msg = f"{len(result.failed)} failed: " + "; ".join(f"{k}: {v}" for k, v in result.failed.items())
            self.store.finish_run(run.id, "failed", msg, result.failed)
        else:
            self.store.finish_run(run.id, "done", summary(result))
        self._emit(RunEvent("done", message=result.status))
        return result

    # -- one model per fingerprint ----------------------------------------------------------------
    def _up_to_date(
        self, st: PlannedStep, rec: ModelRecord, result: RunResult, label: str, why: str = ""
    ) -> None:
        """`st` is the stored model `rec` (found by fingerprint): its name resolves to it."""
        result.models[st.name] = rec
        self.store.add_name(rec.id, st.name, label, st.variant or None, st.step)
        if st.is_final:
            result.up_to_date.append(st.name)
            same = f"same model as {rec.name}" if rec.name != st.name else ""
            message = "up to date" + (f" ({', '.join(x for x in (same, why) if x)})" if same or why else "")
            self._emit(RunEvent("up-to-date", st.variant or st.name, st.name, 1.0, message, rec))

    def _claim(self, st: PlannedStep, run_id: str, progress: ProgressFn) -> ModelRecord | None:
        """Claim the step's fingerprint before making it: None when it is ours to make, or the
        model another run made meanwhile. Waits while another live run holds the claim."""
        waited = 0.0
        while True:
            got = self.store.claim(st.fingerprint, run_id, reuse=not st.force and st.replaces is None)
            if got.model_id is not None:
                return self.store.get_model(got.model_id)
            if got.ours:
                return None
            if waited == 0.0:
                log.info("%s: waiting for %s, which is making the same model", st.name, got.holder)
            progress(0.0, f"waiting for {got.holder}, which is making this model")
            self._check_cancelled()
            time.sleep(_CLAIM_POLL_S)
            waited += _CLAIM_POLL_S

    # -- how much work ----------------------------------------------------------------------------
    def _work(self, plan: Plan, todo: list[PlannedStep]) -> dict[str, tuple[float, float]]:
        """Step name -> (its share of the run's work, the share of its op within the step), in
        instances run through a model: evaluating is the instances evaluated plus the latency
        runs; an op that loops over data (`steps` or `epochs`, or `batches`, of `batch_size`)
        runs that many, a training step counting three (forward and backward) and a teacher
        one more; an op on weights alone costs a quarter of an evaluation."""
        if not todo:
            return {}
        task = None
        if getattr(plan.experiment, "task", None) is not None:
            try:
                task = self._get_task(plan.experiment)
            except Exception:  # the step that needs the task reports it
                task = None
        n_eval = plan.max_instances
        total = getattr(task, "total_instances", None)
        if isinstance(total, int):
            n_eval = min(n_eval, total) if n_eval is not None else total
        # without a task a model is only counted and sized
        evaluation = float((n_eval or 256) + _LATENCY_WORK) if task is not None else float(_LATENCY_WORK)
        raw: dict[str, tuple[float, float]] = {}
        for st in todo:
            op = 0.0 if st.reevaluate or st.op is None else _op_work(st.params, task, n_eval, evaluation)
            raw[st.name] = (op + evaluation, op / (op + evaluation))
        whole = sum(w for w, _ in raw.values()) or 1.0
        return {name: (w / whole, op_share) for name, (w, op_share) in raw.items()}

    # -- one step ---------------------------------------------------------------------------------
    def _reevaluate(
        self, plan: Plan, st: PlannedStep, result: RunResult, device: torch.device, progress: ProgressFn
    ) -> ModelRecord:
        """Evaluate a stored model again and swap its metrics, outputs and evaluation fingerprint."""
        from .artifacts import stored_size

        exp = plan.experiment
        rec = st.existing
        assert rec is not None
        torch.manual_seed(st.seed)
        progress(0.0, "loading the stored model")
        cm = self._load(plan, rec, base_spec_dict(exp), exp.root)
        reference = None if st.op is None else self._reference(exp, result, device)
        evaluation, measured = self._measure(
            exp, cm, device, reference, progress, self._deploy(exp, st, result)
        )
        size = stored_size(self.store.artifact_path(rec))
        base_bytes = size if st.op is None else self._base_stored_bytes(result, exp)
        metrics = self._with_size(exp, cm, device, measured, size, base_bytes)
        # what its op skipped is a fact of the model, not of its evaluation: it stays
        metrics += [m for m in self.store.metrics(rec.id) if m.name == SKIPPED_METRIC]
        self._check_cancelled()
        progress(0.95, "storing")

        def write(path: Path) -> None:
            save_outputs(evaluation, path)

        new = self.store.replace_evaluation(
            rec.id,
            self._evaluated(st, evaluation),
            metrics,
            file_name=OUTPUTS_FILE,
            file_writer=write if evaluation is not None else None,
        )
        if st.op is None:
            self._base_eval = evaluation  # the new reference for every model after it
        return new

    def _make(
        self,
        plan: Plan,
        st: PlannedStep,
        result: RunResult,
        device: torch.device,
        label: str,
        progress: ProgressFn,
    ) -> ModelRecord:
        exp = plan.experiment
        spec = base_spec_dict(exp)
        record = ModelRecord(
            name=st.name,
            op=st.op,
            params=st.params,
            seed=st.seed,
            versions=library_versions(),
            experiment_file=label,
            variant=st.variant or None,
            step=st.step,
            fingerprint=st.fingerprint,
            eval_fingerprint=st.eval_fingerprint,
        )
        torch.manual_seed(st.seed)
        skipped: dict[str, str] = {}
        if st.op is None:
            progress(0.0, "loading the base model")
            module = load_base(spec, exp.root, allow_pickle=self.allow_pickle)
            cm = CompressedModel(module=module)
            record.base_spec = spec
            reference = None
        else:
            parent_rec = result.models[st.parent or ""]
            record.parent_id = parent_rec.id
            parent = self._load(plan, parent_rec, spec, exp.root)
            opdef = get_op(st.op)
            if opdef is None:
                raise PlanError(f"unknown op '{st.op}'")
            task = self._get_task(exp) if opdef.needs_task else None
            if opdef.needs_task and task is None:
                raise OpError(st.op, "needs a task: add a `task:` section to the experiment file")
            work = copy.deepcopy(parent)
            work.module.to(device)
            # The op's own progress fills the first 60% of this step; evaluating and storing the rest.
            origin = parent
            if st.origin and st.origin != st.parent:
                origin = self._load(plan, result.models[st.origin], spec, exp.root)
            ctx = OpContext(
                device=device,
                seed=st.seed,
                task=task,
                parent=origin,
                progress=lambda f, m: progress(0.6 * min(max(f, 0.0), 1.0), m),
                cancelled=self._cancelled,
            )
            progress(0.0, f"applying {st.op}")
            cm = opdef.fn(work, dict(st.params), ctx)
            if not isinstance(cm, CompressedModel):
                raise OpError(st.op, f"returned {type(cm).__name__}, not a CompressedModel")
            skipped = dict(ctx.skipped)
            reference = self._reference(exp, result, device)
        evaluation, measured = self._measure(
            exp, cm, device, reference, progress, self._deploy(exp, st, result)
        )
        record.eval_fingerprint = self._evaluated(st, evaluation)
        if st.op is None:
            self._base_eval = evaluation
        base_bytes = None if st.op is None else self._base_stored_bytes(result, exp)

        def write(folder: Path) -> None:
            from .artifacts import save_artifact

            save_artifact(cm, folder)
            if evaluation is not None:
                save_outputs(evaluation, folder / OUTPUTS_FILE)

        def all_metrics(folder: Path) -> list[Any]:
            from .artifacts import stored_size

            # Stored size = bytes of the artifact files as written (outputs are not the model).
            size = stored_size(folder)
            return [
                *self._with_size(exp, cm, device, measured, size, size if st.op is None else base_bytes),
                *skipped_metrics(st.op, skipped),
            ]

        self._check_cancelled()
        progress(0.95, "storing")
        rec = self.store.add_model(record, write, metrics=all_metrics, replaces=st.replaces)
        self._remember(st.fingerprint, cm, is_base=st.op is None)
        if skipped and st.op is not None:
            warning = skipped_warning(st.op, skipped)
            result.warnings[st.name] = warning
            self._emit(RunEvent("warning", st.variant or st.name, st.name, 1.0, warning, rec))
        return rec

    def _n_ops(self, plan: Plan, st: PlannedStep) -> int:
        if not st.variant:
            return 1
        return sum(1 for s in plan.steps if s.variant == st.variant) or 1

    def _load(self, plan: Plan, rec: ModelRecord, spec: dict[str, Any], root: Path) -> CompressedModel:
        if rec.fingerprint in self._memo:
            return self._memo[rec.fingerprint]
        if rec.status != "ok":
            raise LoadError(f"model '{rec.name}' is broken: {rec.status_reason}")
        if rec.parent_id is None:
            cm = CompressedModel(module=load_base(spec, root, allow_pickle=self.allow_pickle))
        else:
            from .artifacts import load_artifact

            cm = load_artifact(self.store.artifact_path(rec), lambda: load_skeleton(spec, root))
        cm.module.eval()
        self._remember(rec.fingerprint, cm, is_base=rec.parent_id is None)
        return cm

    def _remember(self, fp: str, cm: CompressedModel, *, is_base: bool) -> None:
        # Keep the base (every branch starts there) and the latest model (its children usually
        # come next); anything else is reloaded from its artifact, to bound memory.
        if is_base:
            self._base_fp = fp
        self._memo = {k: v for k, v in self._memo.items() if k == self._base_fp}
        self._memo[fp] = cm

    # -- evaluation -------------------------------------------------------------------------------
    def _evaluated(self, st: PlannedStep, evaluation: Any) -> str:
        """The evaluation fingerprint to store: the counts really evaluated (`evaluated_fingerprint`),
        so a limit above the task's size stores what "every instance" does."""
        if evaluation is None:
            return st.eval_fingerprint
        return evaluated_fingerprint(
            st.eval_fingerprint, len(evaluation.ids), getattr(self._task, "total_instances", None)
        )

    def _get_task(self, exp: Any) -> Any:
        if getattr(exp, "task", None) is None:
            return None
        if self._task is None:
            from .tasks import make_task

            self._task = make_task(exp, max_instances=self._limit)
        return self._task

    def _reference(self, exp: Any, result: RunResult, device: torch.device) -> Any:
        """The base model's evaluation (for agreement metrics), from memory or its outputs file."""
        if self._base_eval is not None or getattr(exp, "task", None) is None:
            return self._base_eval
        base = result.models.get(exp.base.name)  # the base is always the plan's first step
        if base is not None:
            self._base_eval = load_evaluation(self.store, base)
        return self._base_eval

    def _evaluate(
        self, exp: Any, cm: CompressedModel, device: torch.device, reference: Any, progress: ProgressFn
    ) -> tuple[Any, list[Any]]:
        task = self._get_task(exp)
        if task is None:
            return None, []
        progress(0.6, "evaluating")
        cm.module.to(device)
        with torch.no_grad():
            evaluation = task.evaluate(cm.module, device, reference)
        return evaluation, list(evaluation.metrics)

    def _deploy(
        self, exp: Any, st: PlannedStep, result: RunResult
    ) -> tuple[Any, Callable[[str], None]] | None:
        """The deploy targets of a step's model (deploy/session.py), and where a parity flag goes:
        the model a variant names (or the base) goes to the targets `deploy:` lists, and a flag
        becomes one of the run's warnings."""
        spec = exp.deploy_for(st.variant) if st.is_final and hasattr(exp, "deploy_for") else None
        if spec is None:
            return None

        def warn(message: str) -> None:
            result.warnings[st.name] = message
            self._emit(RunEvent("warning", st.variant or st.name, st.name, 1.0, message))

        return spec, warn

    def _measure(
        self,
        exp: Any,
        cm: CompressedModel,
        device: torch.device,
        reference: Any,
        progress: ProgressFn,
        deploy: tuple[Any, Callable[[str], None]] | None = None,
    ) -> tuple[Any, list[Any]]:
        """Evaluate `cm` and measure it (task metrics, then efficiency without the stored size,
        and the deploy targets' metrics, timed with the eager model); the evaluation (None
        without a task) and those metrics. Leaves the model on the CPU."""
        self._check_cancelled()
        cm.module.eval()
        started = time.perf_counter()
        evaluation, task_metrics = self._evaluate(exp, cm, device, reference, progress)
        evaluation_s = time.perf_counter() - started  # measuring may take a tenth of this
        task = self._get_task(exp)
        if deploy is None or task is None:
            progress(0.8, "measuring")
            eff = self._efficiency(
                exp, cm, device, stored_bytes=None, base_bytes=None, speed=True, evaluation_s=evaluation_s
            )
            cm.module.to("cpu")
            return evaluation, [*task_metrics, *eff]
        from .deploy.session import Deployment, session_spec

        spec, warn = deploy
        with Deployment(
            cm.module,
            task,
            session_spec(spec),
            encodings=cm.encodings,
            progress=lambda m: progress(0.8, m),
        ) as session:
            session.prepare()
            self._check_cancelled()
            progress(0.9, "measuring")
            # the runtimes run on the CPU: timed in the eager model's rounds when it runs there
            # too (a fair ratio), on their own beside a model on an accelerator
            on_cpu = device.type == "cpu"
            eff = self._efficiency(
                exp,
                cm,
                device,
                stored_bytes=None,
                base_bytes=None,
                speed=True,
                evaluation_s=evaluation_s,
                companions=session.companions() if on_cpu else [],
            )
            if not on_cpu:
                from .metrics import run_protocol

                eff += session.measure_alone(run_protocol(evaluation_s))
        flag = session.warning()
        if flag:
            warn(flag)
        cm.module.to("cpu")
        return evaluation, [*task_metrics, *eff, *session.metrics()]

    def _with_size(
        self,
        exp: Any,
        cm: CompressedModel,
        device: torch.device,
        measured: list[Any],
        size: int,
        base_bytes: int | None,
    ) -> list[Any]:
        """`measured`, then what only the stored size gives (no name twice)."""
        sized = self._efficiency(exp, cm, device, stored_bytes=size, base_bytes=base_bytes, speed=False)
        have = {m.name for m in measured}
        return [*measured, *(m for m in sized if m.name not in have)]

    def _efficiency(
        self,
        exp: Any,
        cm: CompressedModel,
        device: torch.device,
        *,
        stored_bytes: int | None,
        base_bytes: int | None,
        speed: bool,
        evaluation_s: float | None = None,
        companions: list[Any] | None = None,
    ) -> list[Any]:
        from .metrics import EfficiencyOptions, efficiency_metrics, run_protocol

        task = self._get_task(exp)
        # Latency and memory need the task's example batch; without a task only counts and sizes.
        options = EfficiencyOptions(
            measure_speed=speed and task is not None,
            protocol=run_protocol(evaluation_s),
            companions=list(companions or []),
        )
        if options.measure_speed:
            cm.module.to(device)
        return list(
            efficiency_metrics(
                cm.module,
                task,
                device,
                stored_bytes=stored_bytes,
                base_stored_bytes=base_bytes,
                options=options,
            )
        )

    def _base_stored_bytes(self, result: RunResult, exp: Any) -> int | None:
        base = result.models.get(exp.base.name)
        if base is None:
            return None
        size = next((m.value for m in self.store.metrics(base.id) if m.name == "stored_size"), None)
        return None if size is None else int(size)

    # -- plumbing ---------------------------------------------------------------------------------
    def _emit(self, e: RunEvent) -> None:
        try:
            self._events(e)
        except Exception:  # a display problem must not fail a run
            log.debug("event callback failed", exc_info=True)

    def _check_cancelled(self) -> None:
        if self._cancelled():
            raise Cancelled()


# What measuring latency and memory costs, in evaluated instances (warm-up and repeats of a batch).
_LATENCY_WORK = 256


def _op_work(params: dict[str, Any], task: Any, n_eval: int | None, evaluation: float) -> float:
    """Instances an op runs through a model (`Runner._work`), from its parameters' usual names."""
    import math

    batch = params.get("batch_size")
    if isinstance(batch, int) and batch > 0:
        epochs, steps, batches = params.get("epochs"), params.get("steps"), params.get("batches")
        if isinstance(epochs, (int, float)) and epochs > 0:
            size = getattr(task, "training_size", None)
            size = size() if callable(size) else size
            steps = math.ceil(
                epochs * (size if isinstance(size, int) and size > 0 else (n_eval or 256)) / batch
            )
        if isinstance(steps, int) and steps > 0:
            return float(steps * batch * (4 if params.get("distill") else 3))
        if isinstance(batches, int) and batches > 0:
            return float(batches * batch)
    return 0.25 * evaluation


def _within_step(f: float, op_share: float) -> float:
    """A step's own fraction (`_make`: its op fills 0-0.6, evaluating and storing the rest) as a
    fraction of the step's work, where the op is `op_share` of it."""
    if f <= 0.6:
        return f / 0.6 * op_share
    return op_share + (f - 0.6) / 0.4 * (1.0 - op_share)


def summary(result: RunResult) -> str:
    """ "3 models made, 18 re-evaluated, 0 up to date" (the CLI's last line, the run record)."""
    made = len(result.made)
    text = f"{made} model{'s' if made != 1 else ''} made"
    if result.reevaluated:
        text += f", {len(result.reevaluated)} re-evaluated"
    return text + f", {len(result.up_to_date)} up to date"


def skipped_warning(op: str, skipped: dict[str, str]) -> str:
    """ "prune.nm skipped 1 layer (left as it was): conv1.weight (input size 1 ...)"."""
    n = len(skipped)
    return f"{op} skipped {n} layer{'s' if n != 1 else ''} (left as it was): " + "; ".join(
        f"{layer} ({why})" for layer, why in skipped.items()
    )


def skipped_metrics(op: str | None, skipped: dict[str, str]) -> list[Any]:
    """The `SKIPPED_METRIC` row of a model whose op skipped layers (none when it skipped none)."""
    if not skipped or op is None:
        return []
    from .tasks.base import Metric

    return [
        Metric(
            SKIPPED_METRIC,
            float(len(skipped)),
            "",
            higher_is_better=False,
            detail=skipped_warning(op, skipped),
        )
    ]


def _user_message(e: BaseException) -> str:
    if isinstance(e, BonsaiError) and e.user:  # the user's to fix: its message says what
        return str(e)
    name = type(e).__name__
    if isinstance(e, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(e, RuntimeError) and "can't allocate memory" in str(e)  # the CPU allocator's words
    ):
        first = str(e).strip().splitlines()[0] if str(e).strip() else name
        return f"out of memory on the device ({first}): try a smaller batch_size or max_instances"
    return f"{name}: {e}"


# -- per-instance outputs -----------------------------------------------------------------------


def save_outputs(evaluation: Any, path: Path) -> None:
    """Per-instance outputs beside the artifact: tensors + ids in the safetensors metadata."""
    import json

    from safetensors.torch import save_file

    tensors = {"outputs": evaluation.outputs.detach().to("cpu").contiguous()}
    for key in ("predictions", "targets"):
        value = getattr(evaluation, key, None)
        if isinstance(value, torch.Tensor):
            tensors[key] = value.detach().to("cpu").contiguous()
    meta = {"ids": json.dumps(list(evaluation.ids))}
    extras = getattr(evaluation, "extras", None)
    if extras:
        try:
            meta["extras"] = json.dumps(extras)
        except (TypeError, ValueError):
            log.debug("evaluation extras are not JSON; not stored")
    save_file(tensors, str(path), metadata=meta)


def load_evaluation(store: LineageStore, model: ModelRecord) -> Any:
    """Rebuild a stored model's Evaluation (metrics + outputs), or None if it has no outputs."""
    import json

    from safetensors import safe_open

    from .tasks.base import Evaluation, Metric

    path = store.artifact_path(model) / OUTPUTS_FILE
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    metrics = [
        Metric(m.name, m.value, m.unit, m.higher_is_better, m.headline) for m in store.metrics(model.id)
    ]
    return Evaluation(
        metrics=metrics,
        ids=json.loads(meta.get("ids", "[]")),
        outputs=tensors["outputs"],
        predictions=tensors.get("predictions"),
        targets=tensors.get("targets"),
        extras=json.loads(meta["extras"]) if "extras" in meta else {},
    )


def run_experiment(
    exp: Any,
    store: LineageStore,
    *,
    only: list[str] | None = None,
    force: bool = False,
    device: str = "auto",
    progress: ProgressFn | None = None,
    events: EventFn | None = None,
    cancelled: Callable[[], bool] | None = None,
    max_instances: int | None = None,
) -> RunResult:
    """Plan and run in one call (`max_instances`: as for make_plan)."""
    plan = make_plan(exp, store, only=only, force=force, max_instances=max_instances)
    return Runner(store, device=device, progress=progress, events=events, cancelled=cancelled).run(plan)
