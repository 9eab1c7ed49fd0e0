"""`bonsai` end to end, as a user runs it: a subprocess on a tiny model built in the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelbonsai.cli import main

from .workspace import make_workspace

BROKEN = """\
base:
  name: toy
  load: model.safetensors
  factory: arch.py:build
variants:
  - name: a
    ops:
      - prune.magnitud: {sparsity: 0.5}
  - name: b
    from: nowhere
    ops:
      - prune.magnitude: {sparsity: 1.5}
  - name: a
    ops:
      - prune.magnitude: {sparsity: 0.2}
"""


def bonsai(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "bonsai"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "modelbonsai"]
    env = {**os.environ, "COLUMNS": "200", "BONSAI_DEBUG": ""}
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def test_broken_file_reports_every_error_with_positions_and_runs_nothing(tmp_path: Path) -> None:
    make_workspace(tmp_path)
    (tmp_path / "broken.bonsai.yaml").write_text(BROKEN)
    r = bonsai("run", "broken.bonsai.yaml", cwd=tmp_path)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("broken.bonsai.yaml:")]
    assert [ln.split(": ")[0] for ln in lines] == [
        "broken.bonsai.yaml:8:9",
        "broken.bonsai.yaml:10:11",
        "broken.bonsai.yaml:12:37",
        "broken.bonsai.yaml:13:11",
    ]
    assert "prune.magnitud" in lines[0] and "nowhere" in lines[1] and "1.5" in lines[2] and "'a'" in lines[3]
    assert "nothing was run" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / ".bonsai").exists()


def test_run_skip_force_ls_show_rm(tmp_path: Path) -> None:
    make_workspace(tmp_path)
    r = bonsai("run", "exp.bonsai.yaml", "--only", "prune-50-scaled", "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "4 models made, 0 up to date" in r.stderr
    for name in ("toy", "prune-50", "prune-50-scaled/1", "prune-50-scaled"):
        assert name in r.stdout
    assert "accuracy" in r.stdout and "stored_size" in r.stdout  # headline metrics in the table

    # the whole file: the rest is up to date (skipped), the failing branch fails (exit 1)
    r = bonsai("run", "exp.bonsai.yaml", cwd=tmp_path)
    assert r.returncode == 1
    assert "0 models made, 3 up to date, 1 failed" in r.stderr, r.stderr
    assert "bad failed: op mine.explode: it went wrong" in r.stderr
    assert "after-bad skipped" in r.stderr and "Traceback" not in r.stderr

    before = json.loads(bonsai("ls", "--json", cwd=tmp_path).stdout)
    r = bonsai("run", "exp.bonsai.yaml", "--only", "prune-50", "--force", cwd=tmp_path)
    assert r.returncode == 0 and "1 model made" in r.stderr, r.stderr

    r = bonsai("ls", "--json", cwd=tmp_path)
    assert r.returncode == 0
    models = {m["name"]: m for m in json.loads(r.stdout)}
    # the variant that failed is listed as failed, with why, until a run makes it
    assert set(models) == {"toy", "prune-50", "prune-50-scaled/1", "prune-50-scaled", "bad"}
    assert models["bad"]["status"] == "failed" and models["bad"]["id"] is None
    assert models["bad"]["status_reason"] == "op mine.explode: it went wrong"
    assert models["bad"]["parent"] == "toy" and models["bad"]["op"] == "mine.explode"
    r = bonsai("ls", cwd=tmp_path)
    assert r.returncode == 0 and "bad" in r.stdout and "failed" in r.stdout
    assert "bad failed in its latest run (exp.bonsai.yaml): op mine.explode: it went wrong" in r.stderr
    old = {m["name"]: m for m in before}
    assert models["prune-50"]["id"] != old["prune-50"]["id"]  # forced: made again
    assert models["prune-50-scaled/1"]["parent_id"] == models["prune-50"]["id"]
    assert models["prune-50"]["status"] == "ok" and models["prune-50"]["op"] == "prune.magnitude"
    assert {x["name"] for x in models["prune-50"]["metrics"]} >= {
        "accuracy",
        "stored_size",
        "nonzero_parameters",
    }

    r = bonsai("show", "prune-50", cwd=tmp_path)
    assert r.returncode == 0
    assert (
        "prune.magnitude" in r.stdout
        and '"sparsity": 0.5' in r.stdout
        and "children   prune-50-scaled/1" in r.stdout
    )

    r = bonsai("compare", "toy", "prune-50", "prune-50-scaled", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cmp_ = json.loads(r.stdout)["others"]
    w50, w70 = cmp_["prune-50"]["weights"]["metrics"], cmp_["prune-50-scaled"]["weights"]["metrics"]
    assert 0 < w50["rel_l2"] < w70["rel_l2"] and w50["sparsity_other"] < w70["sparsity_other"]
    assert cmp_["prune-50"]["behavior"]["instances"] == 24

    r = bonsai("rm", "prune-50", cwd=tmp_path)
    assert r.returncode == 2 and "--recursive" in r.stderr and "Traceback" not in r.stderr
    r = bonsai("rm", "prune-50", "--recursive", cwd=tmp_path)
    assert r.returncode == 0 and r.stderr.count("deleted") == 3
    assert [m["name"] for m in json.loads(bonsai("ls", "--json", cwd=tmp_path).stdout)] == ["toy", "bad"]

    # mended, the variant is made and no longer failed
    (tmp_path / "exp.bonsai.yaml").write_text(
        (tmp_path / "exp.bonsai.yaml")
        .read_text()
        .replace('mine.explode: {why: "it went wrong"}', "mine.scale: {}")
    )
    r = bonsai("run", "exp.bonsai.yaml", "--only", "bad", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    models = {m["name"]: m for m in json.loads(bonsai("ls", "--json", cwd=tmp_path).stdout)}
    assert models["bad"]["status"] == "ok" and models["bad"]["id"]


def test_workspace_option_and_broken_model(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    exp = make_workspace(ws)
    r = bonsai("run", str(exp), "--only", "prune-50", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (ws / ".bonsai" / "lineage.sqlite").is_file()  # default workspace: the file's folder
    models = json.loads(bonsai("ls", "--json", "--workspace", str(ws), cwd=tmp_path).stdout)
    pruned = next(m for m in models if m["name"] == "prune-50")
    (ws / ".bonsai" / pruned["artifact"] / "manifest.json").write_text("{oops")
    r = bonsai("ls", "--workspace", str(ws), cwd=tmp_path)
    assert r.returncode == 0 and "broken" in r.stdout and "manifest.json is unreadable" in r.stderr
    # a broken model is made again on the next run (it is not "up to date") and replaced
    r = bonsai("run", str(exp), "--only", "prune-50", cwd=tmp_path)
    assert r.returncode == 0 and "1 model made" in r.stderr, r.stderr
    after = json.loads(bonsai("ls", "--json", "--workspace", str(ws), cwd=tmp_path).stdout)
    assert sorted((m["name"], m["status"]) for m in after) == [("prune-50", "ok"), ("toy", "ok")]


# -- in-process: usage errors are cheap to check without a subprocess ---------------------------


def test_usage_errors_exit_2_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([]) == 2
    assert main(["run"]) == 2
    assert main(["run", "missing.bonsai.yaml"]) == 2
    assert "no such experiment file" in capsys.readouterr().err
    assert main(["show", "ghost"]) == 2
    err = capsys.readouterr().err
    assert "no model 'ghost'" in err and "Traceback" not in err
    assert main(["ls", "--workspace", str(tmp_path / "nope")]) == 2
    assert main(["ls", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_ops_lists_registered_ops(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ops"]) == 0
    out = capsys.readouterr().out
    assert "prune.magnitude" in out and "sparsity" in out


def test_sigkill_during_a_run_keeps_the_store_consistent(tmp_path: Path) -> None:
    """Kill `bonsai run` after its first models are stored: what was complete stays listed,
    nothing half-written shows, and the next run only makes what is missing."""
    import signal
    import time

    from modelbonsai.store import LineageStore

    make_workspace(tmp_path)
    exe = Path(sys.executable).parent / "bonsai"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "modelbonsai"]
    proc = subprocess.Popen(
        [*cmd, "run", "exp.bonsai.yaml", "--only", "prune-50-scaled"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = tmp_path / ".bonsai" / "lineage.sqlite"
    deadline = time.monotonic() + 120
    listed: list[str] = []
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            s = LineageStore.open(tmp_path)
            listed = [m.name for m in s.list_models()]
            s.close()
            if len(listed) >= 2:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(listed) >= 2, "the run never got to store two models"
    s = LineageStore.open(tmp_path)
    models = s.list_models()
    names = [m.name for m in models]
    assert names[: len(listed)] == listed  # everything complete before the kill is still there
    assert all(m.status == "ok" for m in models)
    assert {p.name for p in (s.root / "artifacts").iterdir()} == {m.id for m in models}
    assert list((s.root / "tmp").iterdir()) == []
    run = s.list_runs()[0]
    if len(models) < 4:  # killed mid-run (not after it finished)
        assert run.status == "failed" and "interrupted" in run.message
    s.close()
    r = bonsai("run", "exp.bonsai.yaml", "--only", "prune-50-scaled", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    made = 4 - len(models)
    assert f"{made} model{'s' if made != 1 else ''} made" in r.stderr  # only what was missing
    again = LineageStore.open(tmp_path)
    assert [m.name for m in again.list_models()][: len(models)] == names and len(again.list_models()) == 4
    again.close()


def test_bad_only_and_device_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = make_workspace(tmp_path)
    assert main(["run", str(exp), "--only", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--only: no variant named nope" in err and "prune-50" in err and "Traceback" not in err
    assert main(["run", str(exp), "--device", "tpu"]) == 2
    assert "unknown device 'tpu'" in capsys.readouterr().err
    assert not (tmp_path / ".bonsai" / "artifacts").exists() or not any(
        (tmp_path / ".bonsai" / "artifacts").iterdir()
    )


def test_changed_task_settings_reevaluate_instead_of_calling_models_up_to_date(tmp_path: Path) -> None:
    exp = make_workspace(tmp_path)
    r = bonsai("run", "exp.bonsai.yaml", "--only", "prune-50", "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0 and "2 models made, 0 up to date" in r.stderr, r.stderr
    ids = {m["name"]: m["id"] for m in json.loads(bonsai("ls", "--json", cwd=tmp_path).stdout)}
    exp.write_text(
        exp.read_text().replace("kind: tasks.py:ToyTask", "kind: tasks.py:ToyTask\n  max_instances: 10")
    )
    r = bonsai("run", "exp.bonsai.yaml", "--only", "prune-50", "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0 and "0 models made, 2 re-evaluated, 0 up to date" in r.stderr, r.stderr
    assert {m["name"]: m["id"] for m in json.loads(bonsai("ls", "--json", cwd=tmp_path).stdout)} == ids
    # the file's max_instances wins over --max-instances, which says it is ignored
    r = bonsai(
        "run",
        "exp.bonsai.yaml",
        "--only",
        "prune-50",
        "--device",
        "cpu",
        "--max-instances",
        "4",
        cwd=tmp_path,
    )
    assert r.returncode == 0 and "0 models made, 2 up to date" in r.stderr, r.stderr
    assert "--max-instances 4 ignored: exp.bonsai.yaml sets max_instances: 10" in r.stderr
    # where the file sets none, --max-instances is an evaluation setting too; the plan says
    # what is re-evaluated, and that the base was not asked for
    exp.write_text(exp.read_text().replace("\n  max_instances: 10", ""))
    r = bonsai(
        "run",
        "exp.bonsai.yaml",
        "--only",
        "prune-50",
        "--device",
        "cpu",
        "--max-instances",
        "4",
        cwd=tmp_path,
    )
    assert r.returncode == 0 and "0 models made, 2 re-evaluated, 0 up to date" in r.stderr, r.stderr
    assert (
        "plan: re-evaluate toy (evaluated on 10 instances, a run now evaluates 4 instances, not asked for)"
        in r.stderr
    )
    assert (
        "plan: re-evaluate prune-50 (evaluated on 10 instances, a run now evaluates 4 instances)" in r.stderr
    )
    r = bonsai(
        "run",
        "exp.bonsai.yaml",
        "--only",
        "prune-50",
        "--device",
        "cpu",
        "--max-instances",
        "4",
        cwd=tmp_path,
    )
    assert r.returncode == 0 and "0 models made, 2 up to date" in r.stderr and "plan:" not in r.stderr, (
        r.stderr
    )
