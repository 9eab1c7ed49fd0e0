"""After `make demo`, a language server started as the extension starts it by default reports
no stale model in any sample (issue 16, part 2).

The demo runs each sample's experiment file with `bonsai run FILE --workspace FOLDER`; the
extension then starts the server with its default initialization options. The full demo takes
minutes, so this runs each sample's real experiment file, with its real `seed`, `base` and
`task` sections (so each file's own `max_instances`, or none), but:

- on the small models and data of `prepare.py` with BONSAI_SAMPLE_SMALL=1 (what the sample
  tests run: digits evaluates its 449 images, MiniLM its 64 sentences against its limit of
  200, charlm its windows against its limit of 96);
- with only the base and one variant per sample (the file's first variant made from the base),
  since every model of a file is judged by the same evaluation fingerprint.

The initialization options are read from extension/package.json's setting defaults, as VS Code
hands them to extension/src/server.ts (a setting left null is not sent: server.test.ts checks
that side), so changing a default there is what this test sees.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient, client_capabilities

from modelbonsai.lsp import protocol as P

from .helpers import request, server_config, watch

REPO = Path(__file__).resolve().parents[2]
SAMPLES = ("digits", "minilm", "charlm")
# setting -> initialization option, as extension/src/server.ts maps them
SENT_SETTINGS = {"bonsai.device": "device", "bonsai.maxInstances": "maxInstances"}

pytestmark = pytest.mark.slow


def default_initialization_options(storage: Path) -> dict[str, Any]:
    """What the extension sends when the user changed no setting: package.json's defaults."""
    pkg = json.loads((REPO / "extension" / "package.json").read_text(encoding="utf-8"))
    props = pkg["contributes"]["configuration"]["properties"]
    options: dict[str, Any] = {"storagePath": str(storage), "trusted": True}
    for setting, option in SENT_SETTINGS.items():
        default = props[setting].get("default")
        if default is not None:
            options[option] = default
    return options


def _first_variant_from_base(file: Path) -> dict[str, Any]:
    """The file's first variant made from the base (sweeps expanded), as a flow-YAML mapping."""
    from modelbonsai.experiment import load_experiment

    exp = load_experiment(file).experiment
    assert exp is not None
    v = next(v for v in exp.variants if v.parent in ("base", exp.base.name))
    return {"name": v.name, "ops": [{c.name: dict(c.params)} for c in v.ops]}


def prepare_sample(name: str, out: Path) -> Path:
    """`prepare.py` at small size into `out`, and the sample's own experiment file there with its
    variants cut to one; returns the file."""
    env = dict(
        os.environ, BONSAI_SAMPLE_SMALL="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1"
    )
    folder = REPO / "samples" / name
    out.mkdir(parents=True)
    if (folder / "model.py").exists():  # the experiment's factory, beside the file (as demo.py does)
        shutil.copy(folder / "model.py", out / "model.py")
    proc = subprocess.run(
        [sys.executable, str(folder / "prepare.py"), "--out", str(out)],
        env=env,
        cwd=out,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = (folder / f"{name}.bonsai.yaml").read_text(encoding="utf-8")
    head = text[: text.index("\nvariants:")]
    file = out / f"{name}.bonsai.yaml"
    file.write_text(text, encoding="utf-8")  # parsed in place: its paths resolve in `out`
    variant = _first_variant_from_base(file)
    file.write_text(f"{head}\nvariants:\n  - {json.dumps(variant)}\n", encoding="utf-8")
    return file


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three samples after the demo's `bonsai run FILE --workspace FOLDER`."""
    from modelbonsai.cli import main

    root = tmp_path_factory.mktemp("demo")
    for name in SAMPLES:
        file = prepare_sample(name, root / name)
        assert main(["run", str(file), "--workspace", str(root / name), "--device", "cpu"]) == 0, name
    return root


@pytest_lsp.fixture(config=server_config(), scope="module")
async def client(lsp_client: LanguageClient, folder: Path):
    watch(lsp_client)
    folders = [folder / name for name in SAMPLES]
    await lsp_client.initialize_session(
        lsp.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"),
            root_uri=folders[0].as_uri(),
            workspace_folders=[lsp.WorkspaceFolder(uri=f.as_uri(), name=f.name) for f in folders],
            initialization_options=default_initialization_options(folder / "storage"),
        )
    )
    yield
    await lsp_client.shutdown_session()


def test_the_extension_sends_no_instance_limit_by_default(tmp_path: Path) -> None:
    # the files' own max_instances decide, or every instance (runner.evaluation_limit)
    assert "maxInstances" not in default_initialization_options(tmp_path)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("name", SAMPLES)
async def test_no_sample_model_is_stale_after_the_demo(
    client: LanguageClient, folder: Path, name: str
) -> None:
    result = await request(client, P.LINEAGE, {"folder": str(folder / name)})
    P.check(result, P.LineageResult, "result")
    models = {m["name"]: (m["status"], m.get("statusReason", "")) for m in result["models"]}
    assert len(models) == 2, models  # the base and the one variant
    assert {n: s for n, s in models.items() if s[0] != "ok"} == {}


@pytest.mark.parametrize("setting", ["default", 512])
@pytest.mark.parametrize("name", SAMPLES)
def test_a_run_from_the_server_would_redo_nothing(folder: Path, name: str, setting: str | int) -> None:
    """Nor would one with bonsai.maxInstances 512 (the old default): the files' own limits win,
    and digits' 449 images are all of them, which 512 is too."""
    from modelbonsai.experiment import load_experiment
    from modelbonsai.runner import make_plan
    from modelbonsai.store import LineageStore

    options = default_initialization_options(folder / "storage")
    limit = options.get("maxInstances") if setting == "default" else setting
    exp = load_experiment(folder / name / f"{name}.bonsai.yaml").experiment
    with LineageStore.open(folder / name) as store:
        plan = make_plan(exp, store, max_instances=limit)
        assert plan.stale() == [] and plan.reevaluations() == []
