"""Starter experiment files for plain PyTorch models: a .py with a function returning an
nn.Module, or .safetensors weights with the factory that builds them (issue 19 item 8)."""

from __future__ import annotations

import json
import struct
import textwrap
from pathlib import Path

import pytest

from modelbonsai.experiment import load_experiment
from modelbonsai.experiment.factories import (
    FactoryError,
    factories_in_file,
    factories_near,
    model_factories,
    safetensors_summary,
)
from modelbonsai.experiment.starter import (
    StarterError,
    create_starter,
    starter_for_module,
    starter_for_weights,
)

TINY = """\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        self.fc1 = nn.Linear(8, width)
        self.fc2 = nn.Linear(width, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def build() -> nn.Module:
    torch.manual_seed(0)
    return Net()
"""


def _names(source: str) -> list[tuple[str, str, int, tuple[str, ...]]]:
    return [(f.name, f.kind, f.line, f.required) for f in model_factories(textwrap.dedent(source))]


def test_factories_are_found_from_the_syntax_tree() -> None:
    src = """
        import torch.nn as nn
        import torchvision
        from torch.nn import Sequential, Linear
        from transformers import BertModel


        class Block(nn.Module):
            def __init__(self, n):
                super().__init__()


        class Big(Block):
            pass


        class Small(Block):
            def __init__(self, n=3):
                super().__init__(n)


        def annotated() -> "nn.Module":
            ...


        def seq():
            return Sequential(Linear(2, 2))


        def bound(width=4):
            model = nn.Linear(width, width)
            model = model.eval()
            return model


        def chained():
            return seq().to("cpu")


        def vision():
            return torchvision.models.resnet18()


        def bert(config):
            return BertModel(config)


        def needs(a, *, b, c=1):
            return Block(a)


        def _helper():
            return nn.ReLU()


        def data():
            return [1, 2]


        def inner_only():
            def make():
                return nn.Linear(1, 1)
            return make


        def functional(x):
            return nn.functional.relu(x)
    """
    assert _names(src) == [
        ("Block", "class", 7, ("n",)),
        ("Big", "class", 12, ("n",)),
        ("Small", "class", 16, ()),
        ("annotated", "function", 21, ()),
        ("seq", "function", 25, ()),
        ("bound", "function", 29, ()),
        ("chained", "function", 35, ()),
        ("vision", "function", 39, ()),
        ("bert", "function", 43, ("config",)),
        ("needs", "function", 47, ("a", "b")),
    ]


def test_a_file_without_torch_models_has_no_factories_and_a_syntax_error_is_named(tmp_path: Path) -> None:
    assert _names("def f():\n    return 1\n") == []
    bad = tmp_path / "broken.py"
    bad.write_text("def build(:\n    pass\n")
    with pytest.raises(FactoryError, match=r"cannot read broken.py, line 1: "):
        factories_in_file(bad)
    binary = tmp_path / "bin.py"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(FactoryError, match="not UTF-8 text"):
        factories_in_file(binary)


def _write_tiny(folder: Path, name: str = "tiny.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    py = folder / name
    py.write_text(TINY)
    return py


def test_module_starter_validates_and_names_the_function(tmp_path: Path) -> None:
    py = _write_tiny(tmp_path / "proj")
    text = starter_for_module(py, "build")
    assert text.startswith("# Bonsai experiment for the PyTorch model that build() in tiny.py returns.\n")
    assert "base:\n  name: tiny\n  load: tiny.py:build\n# task:" in text
    target = create_starter(py, function="build")
    assert target == tmp_path / "proj" / "tiny.bonsai.yaml"
    assert target.read_text() == text
    r = load_experiment(target)
    assert r.problems == [], [str(p) for p in r.problems]
    assert r.experiment is not None and r.experiment.base.load_kind == "file-function"
    assert [v.name for v in r.experiment.variants] == ["prune-0.3", "prune-0.5", "int8", "prune-0.5-int8"]
    # a class of the file is a factory too; a second starter takes a free name
    second = create_starter(py, function="Net")
    assert second.name == "tiny-2.bonsai.yaml"
    assert "  load: tiny.py:Net\n" in second.read_text()
    assert "model that class Net in tiny.py builds" in second.read_text()
    assert load_experiment(second).problems == []


def test_module_starter_bad_input_says_what_is_wrong(tmp_path: Path) -> None:
    py = _write_tiny(tmp_path)
    with pytest.raises(
        StarterError,
        match=r"^tiny.py has no function 'make' that returns an nn.Module \(it has Net\(\), build\(\)\)$",
    ):
        create_starter(py, function="make")
    with pytest.raises(StarterError, match=r"several model functions \(Net\(\), build\(\)\); say which one"):
        create_starter(py)
    plain = tmp_path / "util.py"
    plain.write_text("def add(a, b):\n    return a + b\n")
    with pytest.raises(StarterError, match=r"^util.py has no function that returns an nn.Module"):
        create_starter(plain)
    needy = tmp_path / "needy.py"
    needy.write_text("from torch import nn\n\ndef build(width):\n    return nn.Linear(width, 2)\n")
    with pytest.raises(
        StarterError, match=r"every model function in needy.py needs arguments \(build\(width\)\)"
    ):
        create_starter(needy)
    with pytest.raises(StarterError, match=r"build\(\) in needy.py needs arguments \(width\)"):
        create_starter(needy, function="build")
    with pytest.raises(FileNotFoundError):
        create_starter(tmp_path / "missing.py")
    other = tmp_path / "notes.txt"
    other.write_text("x")
    with pytest.raises(StarterError, match=r"cannot start an experiment from notes\.txt"):
        create_starter(other)
    assert sorted(p.name for p in tmp_path.glob("*.bonsai.yaml")) == []  # nothing written


def _save_weights(py: Path, target: Path) -> None:
    import importlib.util

    from safetensors.torch import save_file

    spec = importlib.util.spec_from_file_location("tiny_model_for_test", py)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in mod.build().state_dict().items()}, str(target))


def test_weights_starter_finds_the_factory_beside_them(tmp_path: Path) -> None:
    # the digits layout: model.py beside a model/ folder holding the weights
    root = tmp_path / "digits"
    py = _write_tiny(root, "model.py")
    (py.parent / "helpers.py").write_text("def add(a, b):\n    return a + b\n")
    weights = root / "model" / "model.safetensors"
    _save_weights(py, weights)
    assert safetensors_summary(weights) == (4, 8 * 16 + 16 + 16 * 4 + 4)
    assert [(f.file, f.name) for f in factories_near(weights)] == [(py, "Net"), (py, "build")]
    with pytest.raises(
        StarterError,
        match=r"several functions could build model.safetensors \(\.\./model.py:Net, \.\./model.py:build\); choose one",
    ):
        create_starter(weights)
    target = create_starter(weights, factory=f"{py}:build")
    assert target == root / "digits.bonsai.yaml"
    text = target.read_text()
    assert (
        "# Bonsai experiment for model.safetensors (4 tensors, 212 values), built by build() in model.py."
        in text
    )
    assert "  name: digits\n  load: model/model.safetensors\n  factory: model.py:build\n" in text
    r = load_experiment(target)
    assert r.problems == [], [str(p) for p in r.problems]
    assert r.experiment is not None and r.experiment.base.load_kind == "safetensors"
    # a relative factory is relative to the weights' folder
    assert "factory: model.py:Net" in starter_for_weights(weights, "../model.py:Net")


def test_weights_starter_picks_up_image_data_beside_the_model(tmp_path: Path) -> None:
    root = tmp_path / "cnn"
    py = root / "net.py"
    root.mkdir()
    py.write_text(
        "from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Flatten(), nn.Linear(4, 2))\n"
    )
    weights = root / "weights.safetensors"
    _save_weights(py, weights)
    (root / "data").mkdir()
    (root / "data" / "eval.safetensors").write_bytes(b"")
    text = starter_for_weights(weights)
    assert "task:\n  kind: image-classification\n  data: data\n  max_instances: 500\n" in text
    assert "  name: cnn\n  load: weights.safetensors\n  factory: net.py:build\n" in text


def _raw(path: Path, header: bytes, data: bytes = b"") -> Path:
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


def test_unreadable_weights_are_named(tmp_path: Path) -> None:
    _write_tiny(tmp_path, "model.py")
    cases = {
        "short.safetensors": (b"abc", r"short.safetensors is not a safetensors file: it is 3 bytes long"),
        "huge.safetensors": (
            struct.pack("<Q", 10**12) + b"{}",
            r"huge.safetensors is not a safetensors file: its header length \(1,000,000,000,000 bytes\) does not fit in the file \(10 bytes\)",
        ),
        "notjson.safetensors": (
            None,
            r"notjson.safetensors is not a safetensors file: its header is not JSON",
        ),
        "cut.safetensors": (
            None,
            r"cut.safetensors: tensor 'w' lies past the end of the file \(truncated download\?\)",
        ),
        "empty.safetensors": (None, r"empty.safetensors holds no tensors"),
    }
    (tmp_path / "short.safetensors").write_bytes(b"abc")
    (tmp_path / "huge.safetensors").write_bytes(cases["huge.safetensors"][0])
    _raw(tmp_path / "notjson.safetensors", b"{nope")
    head = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    _raw(tmp_path / "cut.safetensors", head, b"\x00" * 8)
    _raw(tmp_path / "empty.safetensors", json.dumps({"__metadata__": {}}).encode())
    for name, (_, message) in cases.items():
        with pytest.raises(StarterError, match="^" + message + "$"):
            create_starter(tmp_path / name)
    pickle = tmp_path / "model.pt"
    pickle.write_bytes(b"\x80\x04")
    with pytest.raises(
        StarterError, match=r"model.pt is a pickled checkpoint; the starter takes .safetensors weights"
    ):
        create_starter(pickle)
    assert list(tmp_path.glob("*.bonsai.yaml")) == []


def test_weights_without_a_factory_nearby_ask_for_one(tmp_path: Path) -> None:
    weights = tmp_path / "w" / "model.safetensors"
    py = _write_tiny(tmp_path / "elsewhere")
    _save_weights(py, weights)
    with pytest.raises(
        StarterError,
        match=r"no function returning an nn.Module was found in the .py files beside model.safetensors",
    ):
        create_starter(weights)
    with pytest.raises(StarterError, match=r"factory 'tiny.py' must be file.py:function"):
        create_starter(weights, factory="tiny.py")
    with pytest.raises(StarterError, match=r"factory file .*nothere.py does not exist"):
        create_starter(weights, factory="nothere.py:build")
    target = create_starter(weights, factory=f"{py}:build")
    assert target == tmp_path / "w" / "w.bonsai.yaml"  # beside the weights: the factory is elsewhere
    assert "  load: model.safetensors\n  factory: ../elsewhere/tiny.py:build\n" in target.read_text()
    assert load_experiment(target).problems == []


@pytest.mark.parametrize("form", ["module", "weights"])
def test_the_starter_runs(tmp_path: Path, form: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`bonsai run` makes every variant the starter declares, from either form."""
    from modelbonsai.cli import main

    py = _write_tiny(tmp_path, "model.py")
    if form == "module":
        target = create_starter(py, function="build")
    else:
        weights = tmp_path / "model" / "model.safetensors"
        _save_weights(py, weights)
        target = create_starter(weights, factory=f"{py}:build")
    assert main(["run", str(target), "--device", "cpu", "--workspace", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["ls", "--json", "--workspace", str(tmp_path)]) == 0
    models = json.loads(capsys.readouterr().out)
    assert sorted(m["name"] for m in models) == sorted(
        [target.stem.removesuffix(".bonsai"), "prune-0.3", "prune-0.5", "int8", "prune-0.5-int8"]
    )
    assert all(m["status"] == "ok" for m in models)


def test_finding_factories_imports_neither_torch_nor_the_file(tmp_path: Path) -> None:
    """What the lens runs on every .py: a syntax-tree read, so no torch import and no code run."""
    import subprocess
    import sys

    py = tmp_path / "model.py"
    py.write_text(TINY + "\nraise SystemExit('the model file was run')\n")
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from modelbonsai.experiment.factories import factories_in_file\n"
        f"print([f.name for f in factories_in_file(Path({str(py)!r}))])\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["['Net', 'build']", "False"]
