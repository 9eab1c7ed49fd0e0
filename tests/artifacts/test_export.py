"""Export into a folder that holds files: refused unless forced; forced, only the export's own
files are replaced; written through a temporary sibling folder, so a failed export changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from modelbonsai.artifacts import ExportExistsError, export_conflict, export_model
from modelbonsai.cli import main
from modelbonsai.ops.registry import CompressedModel


def gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=1, n_embd=16, n_head=2, vocab_size=32, n_positions=16, bos_token_id=0, eos_token_id=0
    )
    torch.manual_seed(0)
    return GPT2LMHeadModel(config).eval()


def users_folder(folder: Path) -> dict[str, bytes]:
    """A folder as a user has it: their model's files, a tokenizer, notes, a stale shard index."""
    files = {
        "config.json": b'{"model_type": "bert"}',
        "model.safetensors": b"their weights",
        "model.safetensors.index.json": b'{"weight_map": {}}',
        "tokenizer.json": b'{"their": "tokenizer"}',
        "README.md": b"# mine",
        "notes/todo.txt": b"keep me",
    }
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return files


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir())


def test_a_folder_holding_files_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert export_conflict(out) is None  # an empty folder is fine
    before = users_folder(out)
    with pytest.raises(ExportExistsError) as e:
        export_model(CompressedModel(gpt2()), out, format="hf")
    assert e.value.replaced == ["config.json", "model.safetensors", "model.safetensors.index.json"]
    assert e.value.kept == ["README.md", "notes/", "tokenizer.json"]
    assert "not empty" in str(e.value) and "replaces config.json, model.safetensors" in str(e.value)
    assert "keeps README.md, notes/, tokenizer.json" in str(e.value)
    # plain safetensors writes no config: a forced one would leave the folder's config alone
    with pytest.raises(ExportExistsError) as e:
        export_model(CompressedModel(gpt2()), out, format="safetensors")
    assert e.value.replaced == ["model.safetensors", "model.safetensors.index.json"]
    assert e.value.kept == ["README.md", "config.json", "notes/", "tokenizer.json"]
    assert contents(out) == before
    assert siblings(out) == ["out"]


def test_forced_export_replaces_the_export_files_and_keeps_the_rest(tmp_path: Path) -> None:
    from transformers import GPT2LMHeadModel

    out = tmp_path / "out"
    out.mkdir()
    before = users_folder(out)
    cm = CompressedModel(gpt2())
    assert export_model(cm, out, format="hf", force=True) == out
    after = contents(out)
    for kept in ("tokenizer.json", "README.md", "notes/todo.txt"):
        assert after[kept] == before[kept]
    # the stale shard index is gone: from_pretrained would otherwise look for its shards
    assert "model.safetensors.index.json" not in after
    assert {"config.json", "model.safetensors", "bonsai_export.json"} <= set(after)
    again = GPT2LMHeadModel.from_pretrained(str(out)).eval()
    ids = torch.randint(0, 32, (1, 5))
    with torch.no_grad():
        assert torch.equal(again(input_ids=ids).logits, cm.module(input_ids=ids).logits)
    assert siblings(out) == ["out"]  # no temporary or set-aside folder left behind


def test_a_linked_folder_is_exported_into_where_it_points(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "model.safetensors").write_bytes(b"old")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    export_model(CompressedModel(nn.Linear(2, 2)), tmp_path / "link", format="safetensors", force=True)
    assert (tmp_path / "link").is_symlink() and (
        tmp_path / "real" / "model.safetensors"
    ).read_bytes() != b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_a_new_export_folder_has_the_mode_of_any_new_folder(tmp_path: Path) -> None:
    export_model(CompressedModel(nn.Linear(2, 2)), tmp_path / "fresh", format="safetensors")
    (tmp_path / "made").mkdir()
    assert (tmp_path / "fresh").stat().st_mode == (tmp_path / "made").stat().st_mode  # not mkdtemp's 0700


def test_an_export_that_fails_midway_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import modelbonsai.artifacts.export as export

    out = tmp_path / "out"
    out.mkdir()
    before = users_folder(out)

    def half_written(state: dict[str, torch.Tensor], path: str, metadata: dict[str, str]) -> None:
        Path(path).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(export, "save_file", half_written)
    with pytest.raises(OSError, match="disk full"):
        export_model(CompressedModel(nn.Linear(2, 2)), out, format="safetensors", force=True)
    assert contents(out) == before
    assert siblings(out) == ["out"]
    # a new folder: nothing of it is left either
    with pytest.raises(OSError, match="disk full"):
        export_model(CompressedModel(nn.Linear(2, 2)), tmp_path / "new" / "deeper", format="safetensors")
    assert list((tmp_path / "new").iterdir()) == []


def test_cli_export_refuses_without_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from support.workspace import write_workspace

    exp = write_workspace(tmp_path, _EXPERIMENT, "")
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(exp), "--device", "cpu"]) == 0
    out = tmp_path / "export"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"their weights")
    (out / "tokenizer.json").write_text("{}")
    capsys.readouterr()
    assert main(["export", "toy", str(out), "--format", "safetensors"]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "replaces model.safetensors" in err and "keeps tokenizer.json" in err
    assert "--force" in err and "Traceback" not in err
    assert (out / "model.safetensors").read_bytes() == b"their weights"
    assert main(["export", "toy", str(out), "--format", "safetensors", "--force"]) == 0
    assert (out / "model.safetensors").read_bytes() != b"their weights"
    assert (out / "tokenizer.json").read_text() == "{}"


_EXPERIMENT = """\
base:
  name: toy
  load: model.safetensors
  factory: arch.py:build
variants: []
"""
