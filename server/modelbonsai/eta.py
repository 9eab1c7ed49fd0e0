"""How long work has left, from how long it took so far: said once a tenth of it is done (before
that an estimate is mostly noise). The CLI's run display and the language server's job progress
both use it, so they say the same."""

from __future__ import annotations

#: Below this fraction done, no estimate is given.
MIN_FRACTION = 0.1


def remaining_seconds(elapsed: float, fraction: float) -> float | None:
    """Seconds left if the rest goes as fast as what is done, or None when under `MIN_FRACTION`
    is done (or all of it)."""
    if not (MIN_FRACTION <= fraction < 1.0) or elapsed <= 0:
        return None
    return elapsed * (1.0 - fraction) / fraction


def remaining_text(elapsed: float, fraction: float) -> str | None:
    """ "about 3 min left", "about 40 s left", or None (see `remaining_seconds`)."""
    left = remaining_seconds(elapsed, fraction)
    if left is None:
        return None
    if left < 60:
        return f"about {max(5, round(left / 5) * 5)} s left"
    if left < 3600:
        return f"about {round(left / 60)} min left"
    return f"about {left / 3600:.1f} h left"
