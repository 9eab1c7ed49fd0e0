"""A job's progress carries a time estimate once a tenth of it is done (issue 16, part 4): in
its message, which the work-done progress and the extension's notification both show."""

from __future__ import annotations

import time

from modelbonsai.eta import remaining_text
from modelbonsai.lsp.jobs import Job


def _running(progress: float, elapsed: float, message: str | None = "ft: step 300/3000") -> Job:
    return Job(
        id="j1",
        kind="run",
        title="Run ft",
        device="cpu",
        work=lambda ctx: None,
        state="running",
        progress=progress,
        message=message,
        started=time.monotonic() - elapsed,
    )


def test_no_estimate_before_a_tenth_is_done() -> None:
    assert _running(0.05, 30.0).info()["message"] == "ft: step 300/3000"


def test_an_estimate_from_the_pace_so_far_once_a_tenth_is_done() -> None:
    # 30 s for a quarter: about 90 s for the other three quarters
    assert _running(0.25, 30.0).info()["message"] == "ft: step 300/3000 · about 2 min left"
    assert _running(0.5, 20.0, None).info()["message"] == "about 20 s left"
    assert "left" not in _running(1.0, 20.0).info().get("message", "")


def test_remaining_text() -> None:
    assert remaining_text(10.0, 0.09) is None
    assert remaining_text(10.0, 0.5) == "about 10 s left"
    assert remaining_text(60.0, 0.1) == "about 9 min left"
    assert remaining_text(3600.0, 0.25) == "about 3.0 h left"
