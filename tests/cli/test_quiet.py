"""The CLI's stderr holds Bonsai's output only: the libraries' chatter (torchao's "Failed to load
…so", torch's `_pytree` warnings, transformers' progress bars and warnings) is hidden unless
BONSAI_DEBUG is set.

The run imports a user ops file that speaks exactly as those libraries do, on their loggers, after
the CLI has started (as torchao does when transformers imports it during a load), and imports
torchao itself when it is installed (`make bench` installs it). The export writes a Hugging Face
folder with save_pretrained, which draws its "Writing model shards" bar for real.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.hf import save_text_classifier, write_text_data

# What torchao, torch and transformers print, emitted the way they emit it (logger names, levels,
# warning categories and the modules they are attributed to).
NOISY_OPS = """
import logging
import warnings

try:  # the real thing when it is installed
    import torchao  # noqa: F401
except ImportError:
    pass
logging.getLogger("torchao").warning(
    "Failed to load /venv/torchao/_C_mxfp8.cpython-311-x86_64-linux-gnu.so: Could not load this library")
logging.getLogger("torch.utils._pytree").warning(
    "<enum 'KernelPreference'> is an Enum subclass and is now natively supported by torch.compile")
logging.getLogger("transformers.modeling_utils").warning("Some weights of the model were not initialized")
warnings.warn_explicit("`torch_dtype` is deprecated! Use `dtype` instead!", FutureWarning,
                       "modeling_utils.py", 1, module="transformers.modeling_utils")
"""

EXPERIMENT = """\
base:
  name: tiny
  load: my_model
task:
  kind: text-classification
  data: data/eval.jsonl
  tokenizer: my_model
ops_from: noisy_ops.py
variants:
  - name: int8
    ops:
      - quantize.weights: {bits: 8}
"""

NOISE = (
    "Failed to load",
    "_pytree",
    "Enum subclass",
    "not initialized",
    "FutureWarning",
    "torch_dtype",
    "Writing model shards",
    "Loading weights",
    "it/s]",
)


def bonsai(*args: str, cwd: Path, debug: bool = False) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "bonsai"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "modelbonsai"]
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "TORCH_LOGS",
            "TQDM_DISABLE",
            "HF_HUB_DISABLE_PROGRESS_BARS",
            "TRANSFORMERS_VERBOSITY",
            "TRANSFORMERS_NO_ADVISORY_WARNINGS",
            "PYTHONWARNINGS",
        )
    }
    env.update({"COLUMNS": "200", "BONSAI_DEBUG": "1" if debug else ""})
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("quiet")
    save_text_classifier(ws / "my_model")
    write_text_data(ws / "data", names=("eval.jsonl",))
    (ws / "noisy_ops.py").write_text(NOISY_OPS)
    (ws / "exp.bonsai.yaml").write_text(EXPERIMENT)
    return ws


def test_run_and_export_print_no_library_noise(workspace: Path) -> None:
    r = bonsai("run", "exp.bonsai.yaml", "--device", "cpu", cwd=workspace)
    assert r.returncode == 0, r.stderr
    assert [n for n in NOISE if n in r.stderr] == [], r.stderr
    assert "int8" in r.stdout and "2 models made" in r.stderr  # Bonsai's own output is all there

    r = bonsai("export", "int8", str(workspace / "out"), cwd=workspace)
    assert r.returncode == 0, r.stderr
    assert [n for n in NOISE if n in r.stderr] == [], r.stderr
    assert r.stderr.startswith("exported int8")


def test_bonsai_debug_shows_it(workspace: Path) -> None:
    # the same noise is there under BONSAI_DEBUG: the filter above is what hid it
    r = bonsai("run", "exp.bonsai.yaml", "--device", "cpu", "--force", cwd=workspace, debug=True)
    assert r.returncode == 0, r.stderr
    for noise in ("Failed to load", "Enum subclass", "not initialized", "torch_dtype"):
        assert noise in r.stderr, noise
    r = bonsai("export", "int8", str(workspace / "out2"), cwd=workspace, debug=True)
    assert r.returncode == 0 and "Writing model shards" in r.stderr, r.stderr
