"""What a job's handler reports through, whichever face runs it.

The language server's worker sends each call over its pipe as a message (lsp/worker.py); the CLI
prints progress and draws its run bars (cli); tests collect. A handler never learns which.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..runner import RunEvent
    from .jobs import RunPlanned


class Reporter(Protocol):
    def progress(self, fraction: float | None, message: str | None = None) -> None: ...

    def cancelled(self) -> bool: ...

    def check_cancelled(self) -> None:
        """Raise ops.registry.Cancelled once the job is cancelled."""

    def lineage_changed(self) -> None:
        """A model was stored (or its metrics changed): the lineage views refresh."""

    def page(self, data: bytes) -> None:
        """One result page (a wire envelope) of a comparison, tiles or instances job."""

    def planned(self, plan: RunPlanned) -> None:
        """What a run is about to do (before it starts)."""

    def run_event(self, event: RunEvent) -> None:
        """Each step of a run as the runner reports it (the CLI's per-variant bars)."""


class QuietReporter:
    """A reporter that keeps what it is given and is never cancelled: the base of the CLI's
    reporter and of tests' (override what you want to see)."""

    def __init__(self) -> None:
        self.pages: list[bytes] = []
        self.messages: list[str] = []

    def progress(self, fraction: float | None, message: str | None = None) -> None:
        if message:
            self.messages.append(message)

    def cancelled(self) -> bool:
        return False

    def check_cancelled(self) -> None:
        if self.cancelled():
            from ..ops.registry import Cancelled

            raise Cancelled()

    def lineage_changed(self) -> None:
        pass

    def page(self, data: bytes) -> None:
        self.pages.append(data)

    def planned(self, plan: RunPlanned) -> None:
        pass

    def run_event(self, event: RunEvent) -> None:
        pass
