"""The one error hierarchy (errors.py): codes by class, a store problem in the worker reaches the
client as the user's error (its code, no traceback), the CLI prints a user error as one line."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from modelbonsai import errors
from modelbonsai.artifacts.export import ExportError, ExportExistsError
from modelbonsai.artifacts.manifest import ArtifactError
from modelbonsai.cli import UserError, main
from modelbonsai.cli import is_user_error as _is_user_error
from modelbonsai.compare.control import CompareError
from modelbonsai.device import DeviceError
from modelbonsai.load import LoadError
from modelbonsai.lsp import protocol as P
from modelbonsai.lsp.compare_requests import OptionError
from modelbonsai.lsp.server import RequestError, request_error
from modelbonsai.lsp.worker import JobError, Worker
from modelbonsai.measure import MeasureError
from modelbonsai.ops.registry import OpError
from modelbonsai.runner import PlanError, _user_message
from modelbonsai.service import MeasureJob, WorkError
from modelbonsai.store import LineageStore, ModelNotFound, StoreError
from modelbonsai.tasks import TaskError


def test_codes_are_declared_once() -> None:
    # protocol.py re-exports errors.py's codes (the very objects), it does not declare its own
    for name in ("INTERNAL_ERROR", "NOT_FOUND", "USER_ERROR", "JOB_FAILED", "EXPORT_EXISTS"):
        assert getattr(P, name) is getattr(errors, name), name
    assert (P.NOT_FOUND, P.USER_ERROR, P.JOB_FAILED, P.EXPORT_EXISTS) == (-32002, -32003, -32004, -32005)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (StoreError("store"), P.USER_ERROR),
        (ModelNotFound("no model 'x'"), P.NOT_FOUND),
        (ArtifactError(Path("a"), "corrupt"), P.USER_ERROR),
        (ExportError(Path("a"), "bad format"), P.USER_ERROR),
        (OpError("prune", "bad"), P.USER_ERROR),
        (LoadError("load"), P.USER_ERROR),
        (PlanError("plan"), P.USER_ERROR),
        (TaskError("task"), P.USER_ERROR),
        (DeviceError("device"), P.USER_ERROR),
        (WorkError("work"), P.USER_ERROR),
        (OptionError("option"), P.USER_ERROR),
        (MeasureError("measure"), P.USER_ERROR),
        (UserError("cli"), P.USER_ERROR),
        (CompareError("no tensor"), P.JOB_FAILED),
    ],
)
def test_user_errors_carry_their_code(error: errors.BonsaiError, code: int) -> None:
    assert isinstance(error, errors.BonsaiError) and error.user and error.code == code
    assert errors.is_user_error(error) and _is_user_error(error)
    assert _user_message(error) == str(error)  # the runner records the message, not the class
    mapped = request_error(error, "bonsai/x")
    assert isinstance(mapped, RequestError) and mapped.code == code and mapped.message == str(error)


def test_only_one_task_error_and_export_exists_by_class() -> None:
    import modelbonsai.lsp.worker as worker

    assert not hasattr(worker, "TaskError")
    exists = ExportExistsError(Path("out"), ["model.safetensors"], [])
    assert request_error(exists, P.MODEL_EXPORT).code == P.EXPORT_EXISTS and _is_user_error(exists)


def test_not_found_maps_by_class_not_by_text() -> None:
    # A message that starts like a missing model but is another store problem: USER_ERROR.
    assert request_error(StoreError("no model id 1 is being written"), "m").code == P.USER_ERROR
    assert request_error(ModelNotFound("'ab' is not in this store"), "m").code == P.NOT_FOUND


def test_an_internal_error_is_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="modelbonsai.lsp"):
        mapped = request_error(KeyError("x"), "bonsai/x")
    assert mapped.code == P.INTERNAL_ERROR and "KeyError" in mapped.message
    assert any(r.exc_info for r in caplog.records)


class _Ctx:
    """What Worker.run reads of a job context."""

    job = SimpleNamespace(device="cpu")

    def cancelled(self) -> bool:
        return False

    def progress(self, fraction: float | None, message: str | None = None) -> None:
        pass


def test_store_problems_in_the_worker_reach_the_client_as_user_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    LineageStore.open(tmp_path).close()
    worker = Worker("cpu")
    ctx: Any = _Ctx()
    try:
        with caplog.at_level(logging.WARNING):
            with pytest.raises(JobError) as missing:  # the model is not in the store: NOT_FOUND
                worker.run(MeasureJob(folder=str(tmp_path), models=("ghost",), device="cpu"), ctx)
            with pytest.raises(JobError) as broken:  # no such workspace folder: the user's to fix
                worker.run(MeasureJob(folder=str(tmp_path / "nope"), models=("x",), device="cpu"), ctx)
    finally:
        worker.close()
    assert missing.value.code == P.NOT_FOUND and "ghost" in str(missing.value)
    assert broken.value.code == P.USER_ERROR and "does not exist" in str(broken.value)
    for e in (missing.value, broken.value):
        mapped = request_error(e, P.MODEL_MEASURE)
        assert mapped.code == e.code and mapped.message == str(e) and "Traceback" not in mapped.message
    assert not [r for r in caplog.records if "job failed in worker" in r.getMessage()], "no traceback logged"


def test_the_cli_prints_a_user_error_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BONSAI_DEBUG", raising=False)
    LineageStore.open(tmp_path).close()
    assert main(["show", "ghost"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("bonsai: no model 'ghost'") and "Traceback" not in err and "internal error" not in err
    )
