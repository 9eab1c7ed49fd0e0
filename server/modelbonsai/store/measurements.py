"""Each model's latency measurements, and which of them the stored metric shows.

A latency measured on a busy machine can be many times the quiet figure, and a run re-evaluates
models whenever the task settings change, so the newest measurement is often not the best one.
Every measurement is therefore kept (`measurements` table: value, spread, rounds, calls, device,
batch, method, when, load average, wall time), and the model's metric row is the most trustworthy
one of its history:

- only measurements comparable with the newest are candidates: same device, batch size and
  timing method (a new protocol supersedes the old one instead of competing with it);
- among those, the ones that are not noisy; of them the lowest estimate (other processes only
  ever add time, so the lowest trustworthy figure is the closest to the undisturbed one), the
  narrower spread breaking ties;
- when every candidate is noisy, the one with the narrowest relative spread, still marked noisy.

These functions take a connection inside a transaction the store opened (`LineageStore._tx`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

_COLUMNS = "id, value, spread, noisy, rounds, calls, device, batch_size, method, measured, load, wall, detail"


@dataclass(frozen=True)
class Measurement:
    """One stored measurement of a model's metric (milliseconds for latency)."""

    id: int
    value: float
    spread: float
    noisy: bool
    rounds: int
    calls: int
    device: str
    batch_size: int
    method: str
    measured: float
    load: float | None
    wall: float | None
    detail: str

    @property
    def protocol(self) -> tuple[str, int, str]:
        """What must match for two measurements to be compared."""
        return (self.device, self.batch_size, self.method)

    @property
    def relative_spread(self) -> float:
        return self.spread / self.value if self.value > 0 else float("inf")


def _field(m: Any, key: str) -> Any:
    return m.get(key) if isinstance(m, dict) else getattr(m, key, None)


def record_measurements(c: sqlite3.Connection, model_id: str, metrics: list[Any]) -> None:
    """Add the measurements `metrics` carry (a `measurement` dict: efficiency.latency_metrics) to
    the model's history, then set each measured metric's row to the best of its history. Called
    after the metric rows were written, so a worse new figure written there is replaced again."""
    for m in metrics:
        meas = _field(m, "measurement")
        if not isinstance(meas, dict):
            continue
        c.execute(
            "INSERT INTO measurements (model_id, name, value, spread, noisy, rounds, calls, device, batch_size, "
            "method, measured, load, wall, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                model_id,
                str(_field(m, "name")),
                float(meas["value"]),
                float(meas["spread"]),
                int(bool(meas["noisy"])),
                int(meas["rounds"]),
                int(meas.get("calls") or 0),
                str(meas["device"]),
                int(meas["batch_size"]),
                str(meas["method"]),
                float(meas["measured_at"]),
                meas.get("load"),
                meas.get("wall"),
                str(meas.get("detail") or ""),
            ),
        )
    for (name,) in c.execute(
        "SELECT DISTINCT name FROM measurements WHERE model_id = ?", (model_id,)
    ).fetchall():
        _show_best(c, model_id, name)


def history(c: sqlite3.Connection, model_id: str, name: str = "latency") -> list[Measurement]:
    """Every measurement of a model's metric, newest first."""
    rows = c.execute(
        f"SELECT {_COLUMNS} FROM measurements WHERE model_id = ? AND name = ? "
        "ORDER BY measured DESC, id DESC",
        (model_id, name),
    ).fetchall()
    return [
        Measurement(
            id=r[0],
            value=float(r[1]),
            spread=float(r[2]),
            noisy=bool(r[3]),
            rounds=int(r[4]),
            calls=int(r[5]),
            device=r[6],
            batch_size=int(r[7]),
            method=r[8],
            measured=float(r[9]),
            load=None if r[10] is None else float(r[10]),
            wall=None if r[11] is None else float(r[11]),
            detail=r[12] or "",
        )
        for r in rows
    ]


def best(measurements: list[Measurement]) -> Measurement | None:
    """The most trustworthy of a history given newest first (see the module docstring)."""
    if not measurements:
        return None
    protocol = measurements[0].protocol
    candidates = [m for m in measurements if m.protocol == protocol]
    good = [m for m in candidates if not m.noisy]
    if good:
        return min(good, key=lambda m: (m.value, m.spread))
    # all noisy: the narrowest relative spread (the newest first among equals: min keeps the first)
    return min(candidates, key=lambda m: m.relative_spread)


def _show_best(c: sqlite3.Connection, model_id: str, name: str) -> None:
    all_of = history(c, model_id, name)
    chosen = best(all_of)
    if chosen is None:
        return
    comparable = sum(1 for m in all_of if m.protocol == chosen.protocol)
    detail = chosen.detail
    if comparable > 1:
        newest = all_of[0]
        detail += f"; the most trustworthy of {comparable} measurements"
        if newest.id != chosen.id:
            detail += f" (the newest read {newest.value:.3g} ms{', noisy' if newest.noisy else ''})"
    # updated in place where the row exists: a replaced row would move to the end of the
    # model's metrics, which are listed in the order they were stored
    updated = c.execute(
        "UPDATE metrics SET value = ?, unit = 'ms', higher_is_better = 0, detail = ?, spread = ?, noisy = ? "
        "WHERE model_id = ? AND name = ?",
        (chosen.value, detail, chosen.spread, int(chosen.noisy), model_id, name),
    ).rowcount
    if not updated:  # an evaluation without a latency: the history still has one
        c.execute(
            "INSERT INTO metrics (model_id, name, value, unit, higher_is_better, headline, detail, spread, noisy) "
            "VALUES (?, ?, ?, 'ms', 0, 1, ?, ?, ?)",
            (model_id, name, chosen.value, detail, chosen.spread, int(chosen.noisy)),
        )
    if name == "latency" and chosen.value > 0:
        # throughput is the latency seen per instance: it follows the figure shown
        c.execute(
            "UPDATE metrics SET value = ?, detail = ? WHERE model_id = ? AND name = 'throughput'",
            (
                chosen.batch_size / (chosen.value / 1000.0),
                f"at batch {chosen.batch_size}, from the latency",
                model_id,
            ),
        )


def delete_history(c: sqlite3.Connection, model_id: str) -> None:
    c.execute("DELETE FROM measurements WHERE model_id = ?", (model_id,))
