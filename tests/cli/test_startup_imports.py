"""Start-up: a weights-only `bonsai compare` and `bonsai ls` never import torch (the largest
part of a cold start), and the results are those of the full engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from safetensors.torch import save_file

from modelbonsai import cli, runner
from modelbonsai.cli import main

ARCH = textwrap.dedent(
    """
    from torch import nn

    def build():
        return nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 3))
    """
)
EXPERIMENT = textwrap.dedent(
    """
    base:
      name: toy
      load: model.safetensors
      factory: arch.py:build
    variants:
      - name: prune-50
        ops:
          - prune.magnitude: {sparsity: 0.5}
      - name: int4
        ops:
          - quantize.weights: {bits: 4, granularity: group, group_size: 16}
    """
)


def _imports(ws: Path, *args: str) -> tuple[str, set[str]]:
    """(stdout, which of torch / numba the command imported) of `bonsai ARGS` in a fresh process."""
    code = (
        "import sys; from modelbonsai.cli import main; rc = main(sys.argv[1:]); "
        "print(json.dumps(sorted(m for m in ('torch', 'numba') if m in sys.modules)), file=sys.stderr); "
        "sys.exit(rc)"
    ).replace("import sys;", "import sys, json;")
    r = subprocess.run(
        [sys.executable, "-c", code, *args, "--workspace", str(ws)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BONSAI_DEBUG": ""},
    )
    assert r.returncode == 0, r.stderr
    return r.stdout, set(json.loads(r.stderr.strip().splitlines()[-1]))


def test_weights_only_compare_and_ls_do_not_import_torch(tmp_path: Path) -> None:
    (tmp_path / "arch.py").write_text(ARCH)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 48), torch.nn.ReLU(), torch.nn.Linear(48, 3))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "exp.bonsai.yaml").write_text(EXPERIMENT)
    assert main(["run", str(tmp_path / "exp.bonsai.yaml"), "--device", "cpu"]) == 0

    out, imported = _imports(tmp_path, "compare", "toy", "prune-50", "int4", "--json")
    assert imported == {"numba"}, imported  # the kernels, not torch
    others = json.loads(out)["others"]
    w = others["prune-50"]["weights"]["metrics"]
    assert 0 < w["rel_l2"] < 1 and w["sparsity_other"] > 0.4
    assert others["prune-50"]["behavior"] is None  # no task: weights only
    assert 15 < others["int4"]["weights"]["metrics"]["sqnr_db"] < 40  # ~6 dB a bit, less the spread

    out, imported = _imports(tmp_path, "ls", "--json")
    assert imported == set(), imported
    assert {m["name"] for m in json.loads(out)} == {"toy", "prune-50", "int4"}


def test_outputs_file_named_as_the_runner_names_it() -> None:
    assert cli.OUTPUTS_FILE == runner.OUTPUTS_FILE
