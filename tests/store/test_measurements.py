"""A model's latency history: every measurement kept, the stored metric the most trustworthy."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelbonsai.metrics import latency_metrics
from modelbonsai.metrics.efficiency import LatencyProtocol, summarize
from modelbonsai.store import LineageStore, MetricRecord
from modelbonsai.store.measurements import history

from .helpers import record, store_at_version, writer


def measured(
    ms: float,
    spread_ms: float = 0.0,
    *,
    rounds: int = 4,
    device: str = "cpu",
    batch: int = 8,
    method: str = "thread CPU time, 1 thread",
    at: float = 0.0,
) -> list[object]:
    """The latency and throughput metrics of a measurement whose round medians are `ms` and
    `ms + spread_ms`, half each (noisy when the spread is over a quarter of the value)."""
    lo, hi = ms / 1000, (ms + spread_ms) / 1000
    medians = [lo, hi] * (rounds // 2)
    lat = summarize(
        [[m] for m in medians],
        protocol=LatencyProtocol(),
        batch_size=batch,
        device=device,
        method=method,
        warmup=1,
    )
    lat.measured_at = at
    return latency_metrics(lat)


def latency(store: LineageStore, model_id: str) -> MetricRecord:
    return next(m for m in store.metrics(model_id) if m.name == "latency")


def test_a_measurement_is_stored_with_its_spread_and_history(store: LineageStore) -> None:
    base = store.add_model(
        record("base"), writer(), metrics=[MetricRecord("accuracy", 0.9), *measured(3.0, 0.3)]
    )
    lat = latency(store, base.id)
    assert lat.value == pytest.approx(3.0) and lat.spread == pytest.approx(0.3) and not lat.noisy
    assert next(m.spread for m in store.metrics(base.id) if m.name == "accuracy") is None
    with store._tx() as c:
        (h,) = history(c, base.id)
    assert (h.rounds, h.device, h.batch_size, h.method) == (4, "cpu", 8, "thread CPU time, 1 thread")


def test_a_re_evaluation_does_not_replace_a_good_latency_with_a_worse_noisy_one(store: LineageStore) -> None:
    base = store.add_model(record("base"), writer(), metrics=measured(3.16, 0.1, at=1.0))
    # measured again on a loaded machine: 534 ms, its rounds far apart
    store.replace_evaluation(
        base.id,
        "task:all",
        [MetricRecord("accuracy", 0.9), *measured(534.0, 400.0, at=2.0)],
        file_name="outputs.bin",
        file_writer=None,
    )
    lat = latency(store, base.id)
    assert lat.value == pytest.approx(3.16) and not lat.noisy
    assert (
        "the most trustworthy of 2 measurements" in lat.detail and "newest read 534 ms, noisy" in lat.detail
    )
    throughput = next(m for m in store.metrics(base.id) if m.name == "throughput")
    assert throughput.value == pytest.approx(8 / 0.00316)  # follows the figure shown
    # one latency row, where the evaluation put it (not moved to the end)
    assert [m.name for m in store.metrics(base.id)] == ["accuracy", "latency", "throughput"]
    with store._tx() as c:
        assert len(history(c, base.id)) == 2  # both kept


def test_a_worse_figure_that_is_not_noisy_does_not_replace_a_lower_one(store: LineageStore) -> None:
    m = store.add_model(record("m"), writer(), metrics=measured(10.0, 0.5, at=1.0))
    store.put_metrics(m.id, measured(12.0, 0.5, at=2.0))  # steady but slower: interference adds time
    assert latency(store, m.id).value == pytest.approx(10.0)
    store.put_metrics(m.id, measured(9.0, 0.2, at=3.0))  # a better trustworthy one is shown
    assert latency(store, m.id).value == pytest.approx(9.0)


def test_a_trustworthy_measurement_replaces_a_noisy_one_even_when_higher(store: LineageStore) -> None:
    m = store.add_model(record("m"), writer(), metrics=measured(5.0, 5.0, at=1.0))
    assert latency(store, m.id).noisy
    store.put_metrics(m.id, measured(6.0, 0.3, at=2.0))
    lat = latency(store, m.id)
    assert lat.value == pytest.approx(6.0) and not lat.noisy


def test_when_all_are_noisy_the_narrowest_relative_spread_is_shown_and_marked(store: LineageStore) -> None:
    m = store.add_model(record("m"), writer(), metrics=measured(5.0, 5.0, at=1.0))
    store.put_metrics(m.id, measured(8.0, 3.0, at=2.0))
    store.put_metrics(m.id, measured(4.0, 6.0, at=3.0))
    lat = latency(store, m.id)
    assert lat.value == pytest.approx(8.0) and lat.noisy and lat.spread == pytest.approx(3.0)


def test_another_protocol_supersedes_the_history(store: LineageStore) -> None:
    m = store.add_model(record("m"), writer(), metrics=measured(3.0, 0.1, at=1.0))
    store.put_metrics(m.id, measured(40.0, 1.0, batch=32, at=2.0))  # a batch of 32 is another figure
    assert latency(store, m.id).value == pytest.approx(40.0)
    store.put_metrics(m.id, measured(1.0, 0.01, device="cuda", method="cuda events", at=3.0))
    assert latency(store, m.id).value == pytest.approx(1.0)


def test_an_evaluation_without_a_latency_keeps_the_best_of_the_history(store: LineageStore) -> None:
    m = store.add_model(record("m"), writer(), metrics=measured(3.0, 0.1, at=1.0))
    store.replace_evaluation(
        m.id, "x:all", [MetricRecord("accuracy", 0.5)], file_name="o.bin", file_writer=None
    )
    assert latency(store, m.id).value == pytest.approx(3.0)


def test_deleting_a_model_deletes_its_history(store: LineageStore) -> None:
    m = store.add_model(record("m"), writer(), metrics=measured(3.0, 0.1))
    store.delete_model(m.id)
    with store._tx() as c:
        assert history(c, m.id) == []


def test_a_store_of_schema_5_gains_spread_and_history(tmp_path: Path) -> None:
    c = store_at_version(tmp_path, 5)
    c.execute(
        "INSERT INTO metrics (model_id, name, value, unit, higher_is_better, headline, detail) "
        "VALUES ('a', 'latency', 534.0, 'ms', 0, 1, 'median of 10 runs')"
    )
    c.commit()
    c.close()
    with LineageStore.open(tmp_path) as store:
        (old,) = store.metrics("a")
        assert old.value == 534.0 and old.spread is None and not old.noisy
