"""Progress and cancellation for comparison entry points (the same callbacks ops receive)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import JobFailedError
from ..ops.registry import Cancelled

ProgressFn = Callable[[float, str], None]
CancelledFn = Callable[[], bool]

__all__ = ["Cancelled", "CancelledFn", "CompareError", "Control", "ProgressFn", "check_keywords"]


class CompareError(JobFailedError, ValueError):
    """A user-facing problem with a comparison (names the model, module or option at fault)."""


def _no_progress(fraction: float, message: str) -> None:
    return None


def _never() -> bool:
    return False


@dataclass
class Control:
    """Bundles the two callbacks; `step` reports and then raises Cancelled if asked to stop."""

    progress: ProgressFn = _no_progress
    cancelled: CancelledFn = _never

    def check(self) -> None:
        if self.cancelled():
            raise Cancelled()

    def step(self, fraction: float, message: str) -> None:
        self.progress(min(max(fraction, 0.0), 1.0), message)
        self.check()

    def sub(self, lo: float, hi: float) -> Control:
        """A Control whose fractions 0..1 map onto lo..hi of this one (for nested steps)."""
        return Control(lambda f, m: self.progress(lo + (hi - lo) * f, m), self.cancelled)


def check_keywords(given: Mapping[str, Any], allowed: type, what: str) -> None:
    """Raise TypeError for keywords of `given` that the TypedDict `allowed` does not declare, as a
    plain signature would: `**kwargs: Unpack[...]` takes any name at run time, and a misspelt
    option must not fall back to its default."""
    unknown = given.keys() - allowed.__annotations__.keys()
    if unknown:
        raise TypeError(f"unexpected {what}: {', '.join(sorted(unknown))}")
