"""`bonsai measure`: models re-measured with their base in turn; the history keeps the best."""

from __future__ import annotations

import json
from pathlib import Path

from .test_cli import bonsai
from .workspace import make_workspace


def test_measure_models_with_their_base_and_keep_the_history(tmp_path: Path) -> None:
    make_workspace(tmp_path)
    r = bonsai("run", "exp.bonsai.yaml", "--only", "prune-50", "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    shown = {
        m["name"]: m for m in json.loads(bonsai("show", "prune-50", "--json", cwd=tmp_path).stdout)["metrics"]
    }
    lat = shown["latency"]
    assert lat["unit"] == "ms" and lat["spread"] is not None and "round medians" in lat["detail"]
    assert "latency_iqr" not in shown  # the spread lives on the latency itself now

    r = bonsai("measure", "prune-50", "--json", "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    # the base is measured with it, first, and the ratio is against that same-time base figure
    assert [row["name"] for row in rows] == ["toy", "prune-50"]
    base, other = rows
    assert base["base"] == base["id"] and other["base"] == base["id"]
    assert other["measured"]["rounds"] >= 5 and other["measured"]["method"].startswith("thread CPU time")
    assert other["ratioToBase"] > 0
    # stored: the most trustworthy of the two measurements each model now has
    assert other["stored"]["value"] <= max(other["measured"]["value"], lat["value"]) + 1e-9
    assert (
        "of 2 measurements" in other["stored"]["detail"]
        or other["stored"]["value"] == other["measured"]["value"]
    )

    r = bonsai("show", "prune-50", cwd=tmp_path)
    assert r.returncode == 0 and "latency" in r.stdout and " ms (spread " in r.stdout

    r = bonsai("measure", "prune-50", "toy", cwd=tmp_path)  # text output; the base named too: once
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert (
        len(lines) == 2
        and lines[0].startswith("toy")
        and "x the base" in lines[1]
        and " ms (spread " in lines[1]
    )


def test_measure_an_unknown_model_is_a_usage_error(tmp_path: Path) -> None:
    make_workspace(tmp_path)
    r = bonsai("measure", "nothing-like-it", cwd=tmp_path)
    assert r.returncode == 2 and "no model 'nothing-like-it'" in r.stderr and "Traceback" not in r.stderr
