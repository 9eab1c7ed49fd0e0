"""The service (server/modelbonsai/service): one spec and one handler per job, the specs cross
the worker pipe as they are, and comparisons go through the store's result cache."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from pathlib import Path
from typing import Any

import pytest

from modelbonsai import errors, wire
from modelbonsai.compare import weights as W
from modelbonsai.compare.activations import ActivationOptions
from modelbonsai.compare.control import CompareError
from modelbonsai.lsp.compare_requests import activation_options
from modelbonsai.lsp.worker import Done, Failed, Page, Progress, Stopped, _ChildReporter, _outcome
from modelbonsai.service import (
    HANDLERS,
    CompareBehaviorJob,
    CompareWeightsJob,
    JobSpec,
    MeasureJob,
    QuietReporter,
    RunJob,
    RunPlanned,
    handle,
)
from modelbonsai.service import jobs as service_jobs
from support.workspace import EXPERIMENT_HEAD, write_workspace

EXPERIMENT = (
    EXPERIMENT_HEAD
    + """\
  - name: pruned
    ops:
      - prune.magnitude: {sparsity: 0.5}
  - name: int4
    ops:
      - quantize.weights: {bits: 4}
"""
)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy MLP with two variants, run through the service (as `bonsai run` and bonsai/run do)."""
    root = tmp_path_factory.mktemp("ws")
    exp = write_workspace(root, EXPERIMENT, "")

    class Plans(QuietReporter):
        def __init__(self) -> None:
            super().__init__()
            self.plans: list[RunPlanned] = []

        def planned(self, plan: RunPlanned) -> None:
            self.plans.append(plan)

    rep = Plans()
    result = handle(RunJob(file=str(exp), folder=str(root), device="cpu"), rep)
    assert result.made == ["toy", "pruned", "int4"] and not result.failed
    (plan,) = rep.plans
    assert plan.bars == ("toy", "pruned", "int4") and plan.unasked == () and plan.message == ""
    assert rep.messages[-1].startswith("3 models made")
    return root


def _specs() -> list[type[Any]]:
    return [
        c
        for _, c in inspect.getmembers(service_jobs, inspect.isclass)
        if issubclass(c, JobSpec) and c is not JobSpec
    ]


def test_every_spec_is_frozen_has_one_handler_and_crosses_the_pipe_as_it_is() -> None:
    specs = _specs()
    # every spec of jobs.py has its row, and every row is a service spec (a job added elsewhere
    # in the package counts too)
    assert set(specs) <= set(HANDLERS) and {RunJob, MeasureJob, CompareWeightsJob} <= set(specs)
    assert all(issubclass(c, JobSpec) and c.__module__.startswith("modelbonsai.service") for c in HANDLERS)
    specs = list(HANDLERS)
    for spec in specs:
        assert dataclasses.is_dataclass(spec) and spec.__dataclass_params__.frozen  # type: ignore[attr-defined]  # set by @dataclass
    job = CompareWeightsJob(folder="/w", base="a", models=("b", "c"), include=("*.weight",))
    assert pickle.loads(pickle.dumps(job)) == job
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.base = "x"  # type: ignore[misc]  # the point: a spec cannot change once built
    assert RunJob.queue_kind == "run" and MeasureJob.queue_kind == "run"
    assert CompareWeightsJob.queue_kind == "compare"


def test_a_spec_without_a_handler_is_a_plain_type_error() -> None:
    @dataclasses.dataclass(frozen=True)
    class Unknown(JobSpec[None]):
        pass

    with pytest.raises(TypeError, match="no handler for Unknown"):
        handle(Unknown())


def test_weights_twice_through_the_service_computes_once(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    compare = W.compare_weights

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["base_id"])
        return compare(*args, **kwargs)

    monkeypatch.setattr(W, "compare_weights", counted)
    job = CompareWeightsJob(folder=str(workspace), base="toy", models=("pruned", "int4"))
    first, again = QuietReporter(), QuietReporter()
    handle(job, first)
    handle(job, again)
    assert len(calls) == 2  # one per compared model, the first time only
    assert again.pages == first.pages and len(first.pages) == 2
    pruned = wire.decode_result(first.pages[0])
    assert pruned.kind == "weights"
    root = next(n for n in pruned.meta["tree"] if n["parent"] is None)
    # half of the 4x16 + 16x3 weights are zero, none of the 16 + 3 biases
    assert root["metrics"]["sparsity_other"] == pytest.approx(56 / 131)


def test_behaviour_pages_per_model_from_stored_outputs(workspace: Path) -> None:
    rep = QuietReporter()
    handle(CompareBehaviorJob(folder=str(workspace), base="toy", models=("int4",), bootstrap=50), rep)
    (page,) = rep.pages
    r = wire.decode_result(page)
    assert r.kind == "behavior" and r.meta["other"] != r.meta["base"]
    assert len(r.meta["ids"]) == 24  # the toy task's instances


class _Pipe:
    """What the worker's reporter sends on, kept."""

    def __init__(self) -> None:
        self.sent: list[object] = []

    def send(self, msg: object) -> None:
        self.sent.append(msg)


class _Event:
    def __init__(self, set_: bool = False) -> None:
        self._set = set_

    def is_set(self) -> bool:
        return self._set


def test_the_worker_answers_with_typed_messages(workspace: Path) -> None:
    pipe = _Pipe()
    rep = _ChildReporter(pipe, _Event())  # type: ignore[arg-type]  # a Connection's send is all it uses
    done = _outcome(CompareWeightsJob(folder=str(workspace), base="toy", models=("pruned",)), rep)
    assert done == Done(None)
    assert [type(m) for m in pipe.sent if not isinstance(m, Progress)] == [Page]
    missing = _outcome(MeasureJob(folder=str(workspace), models=("ghost",), device="cpu"), rep)
    assert isinstance(missing, Failed) and missing.user and missing.code == errors.NOT_FOUND
    assert "ghost" in missing.message and missing.traceback == ""
    stopped = _outcome(
        CompareWeightsJob(folder=str(workspace), base="toy", models=("int4",)),
        _ChildReporter(_Pipe(), _Event(True)),  # type: ignore[arg-type]  # as above
    )
    assert stopped in (Stopped(), Done(None))  # cancelled before it began (or served from the cache)


def test_activation_options_take_the_engines_defaults() -> None:
    assert activation_options({}, None) == ActivationOptions()
    # the server's instance limit, when it has one, is the default sample
    assert activation_options({}, 32) == ActivationOptions(instances=32)
    given = {"instances": 8, "batchSize": 4, "mode": "isolated", "isolatedScope": "all", "modules": ["0"]}
    assert activation_options(given, 32) == ActivationOptions(
        instances=8, batch_size=4, mode="isolated", isolated_scope="all", modules=["0"]
    )
    with pytest.raises(CompareError, match="activation mode"):
        activation_options({"mode": "sideways"}, None)
