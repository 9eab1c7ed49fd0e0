from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from modelbonsai.load import LoadError, base_fingerprint, load_base, load_skeleton

FACTORY = textwrap.dedent(
    """
    import torch
    from torch import nn

    def build(width=8):
        return nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 3))

    def trained():
        torch.manual_seed(3)
        return build()

    def not_a_model():
        return 42
    """
)


def _tiny_gpt2(folder: Path) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=32, n_positions=16)
    model = GPT2LMHeadModel(cfg).eval()
    model.save_pretrained(folder)
    return model


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_hf_folder_loads_the_named_architecture(tmp_path: Path) -> None:
    ref = _tiny_gpt2(tmp_path / "gpt")
    model = load_base({"load": "gpt"}, tmp_path)
    assert type(model).__name__ == "GPT2LMHeadModel"
    assert _same(model, ref) and not model.training
    skel = load_skeleton({"load": "gpt"}, tmp_path)
    assert type(skel) is type(model)
    assert {k: v.shape for k, v in skel.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }


def test_hf_pickle_refused_unless_allowed(tmp_path: Path) -> None:
    ref = _tiny_gpt2(tmp_path / "gpt")
    for f in (tmp_path / "gpt").glob("*.safetensors"):
        f.unlink()
    torch.save(ref.state_dict(), tmp_path / "gpt" / "pytorch_model.bin")
    with pytest.raises(LoadError, match="pickle"):
        load_base({"load": "gpt"}, tmp_path)
    model = load_base({"load": "gpt"}, tmp_path, allow_pickle=True)
    assert _same(model, ref)


def test_hf_errors(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="does not exist"):
        load_base({"load": "nowhere"}, tmp_path)
    _tiny_gpt2(tmp_path / "gpt")
    for f in (tmp_path / "gpt").glob("*.safetensors"):
        f.unlink()
    with pytest.raises(LoadError, match="no weights"):
        load_base({"load": "gpt"}, tmp_path)
    cfg = json.loads((tmp_path / "gpt" / "config.json").read_text())
    cfg["architectures"] = ["NoSuchModelForAnything"]
    (tmp_path / "gpt" / "config.json").write_text(json.dumps(cfg))
    save_file({"x": torch.zeros(1)}, tmp_path / "gpt" / "model.safetensors")
    with pytest.raises(LoadError, match=r"'NoSuchModelForAnything'.*not in transformers"):
        load_base({"load": "gpt"}, tmp_path)
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_mine.NoSuchModelForAnything"}
    (tmp_path / "gpt" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(LoadError, match="remote code"):
        load_base({"load": "gpt"}, tmp_path)
    (tmp_path / "plain").mkdir()
    with pytest.raises(LoadError, match=r"no config\.json"):
        load_base({"load": "plain"}, tmp_path)


def test_file_function_returns_the_model(tmp_path: Path) -> None:
    (tmp_path / "arch.py").write_text(FACTORY)
    model = load_base({"load": "arch.py:trained"}, tmp_path)
    torch.manual_seed(3)
    assert isinstance(model, nn.Sequential)
    # same as calling it directly
    ref = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    assert _same(model, ref)


def test_module_function_form_with_args(tmp_path: Path) -> None:
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(FACTORY)
    model = load_base({"load": "mypkg.models:build", "args": {"width": 5}}, tmp_path)
    assert model[0].out_features == 5


def test_safetensors_plus_factory(tmp_path: Path) -> None:
    (tmp_path / "arch.py").write_text(FACTORY)
    ref = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    save_file(ref.state_dict(), tmp_path / "w.safetensors")
    model = load_base({"load": "w.safetensors", "factory": "arch.py:build"}, tmp_path)
    assert _same(model, ref)
    skel = load_skeleton({"load": "w.safetensors", "factory": "arch.py:build"}, tmp_path)
    assert type(skel) is nn.Sequential and not _same(skel, ref)
    # weights that do not fit the architecture
    with pytest.raises(LoadError, match="do not fit"):
        load_base({"load": "w.safetensors", "factory": "arch.py:build", "args": {"width": 6}}, tmp_path)
    with pytest.raises(LoadError, match="weights file; give a 'factory"):
        load_base({"load": "w.safetensors"}, tmp_path)
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(LoadError, match="not a readable safetensors"):
        load_base({"load": "bad.safetensors", "factory": "arch.py:build"}, tmp_path)


def test_factory_errors(tmp_path: Path) -> None:
    (tmp_path / "arch.py").write_text(FACTORY)
    with pytest.raises(LoadError, match="returned int"):
        load_base({"load": "arch.py:not_a_model"}, tmp_path)
    with pytest.raises(LoadError, match="no function 'nope'"):
        load_base({"load": "arch.py:nope"}, tmp_path)
    with pytest.raises(LoadError, match="does not exist"):
        load_base({"load": "missing.py:build"}, tmp_path)
    with pytest.raises(LoadError, match="cannot be imported"):
        load_base({"load": "no_such_module_xyz:build"}, tmp_path)
    (tmp_path / "broken.py").write_text("raise RuntimeError('oops')\n")
    with pytest.raises(LoadError, match="RuntimeError: oops"):
        load_base({"load": "broken.py:build"}, tmp_path)


def test_fingerprint_changes_with_weights(tmp_path: Path) -> None:
    (tmp_path / "arch.py").write_text(FACTORY)
    save_file({"a": torch.zeros(2)}, tmp_path / "w.safetensors")
    spec = {"load": "w.safetensors", "factory": "arch.py:build"}
    fp = base_fingerprint(spec, tmp_path)
    assert base_fingerprint(spec, tmp_path) == fp
    save_file({"a": torch.zeros(3)}, tmp_path / "w.safetensors")
    assert base_fingerprint(spec, tmp_path) != fp
