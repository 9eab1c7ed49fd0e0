"""Artifact format: bit-exact round trips of every stored form, honest sizes, errors, export."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from torch import nn

from modelbonsai.artifacts import (
    ArtifactError,
    export_model,
    load_artifact,
    read_manifest,
    read_tensor,
    save_artifact,
    stored_size,
    tensor_names,
    tensor_shapes,
)
from modelbonsai.ops.dynamic import dynamic_linear_type
from modelbonsai.ops.quantize import QuantEncoding
from modelbonsai.ops.registry import CompressedModel, OpContext, get_op, register_edit

CTX = OpContext(device=torch.device("cpu"), seed=0)


def mlp() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(21)
        return nn.Sequential(
            nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 8)
        ).eval()


def gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=2,
        n_embd=32,
        n_head=4,
        vocab_size=64,
        n_positions=32,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(22)
        return GPT2LMHeadModel(config).eval()


def apply(cm: CompressedModel, op_name: str, **params: Any) -> CompressedModel:
    op = get_op(op_name)
    assert op is not None
    return op.fn(cm, op.resolve(params), CTX)


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        if isinstance(sa[k], torch.Tensor):
            assert sa[k].dtype == sb[k].dtype, k
            assert torch.equal(sa[k], sb[k]), k


def file_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def round_trip(cm: CompressedModel, folder: Path, skeleton: Callable[[], nn.Module]) -> CompressedModel:
    size = save_artifact(cm, folder)
    assert size.bytes_total == stored_size(folder) == file_bytes(folder)
    back = load_artifact(folder, skeleton)
    assert_same_state(cm.module, back.module)
    for name in tensor_names(folder):  # the streaming reader agrees with the rebuilt model
        t = read_tensor(folder, name)
        assert tuple(t.shape) == tensor_shapes(folder)[name]
    return back


# -- forms -----------------------------------------------------------------------------------------
def test_dense_round_trip(tmp_path: Path) -> None:
    cm = CompressedModel(mlp())
    size = save_artifact(cm, tmp_path)
    assert set(size.forms.values()) == {"dense"}
    assert size.per_tensor["0.weight"] == 256 * 256 * 4
    round_trip(cm, tmp_path, mlp)


def test_sparse_forms_are_smaller_and_masks_are_derived(tmp_path: Path) -> None:
    m = mlp()
    with torch.no_grad():
        w0, w2 = m[0].weight, m[2].weight
        w0[torch.rand_like(w0) < 0.5] = 0.0  # half zeros: bitmask + values
        w2[torch.rand_like(w2) < 0.99] = 0.0  # 99% zeros: CSR
    cm = CompressedModel(
        m, masks={"0.weight": w0 == 0, "2.weight": w2 != 0, "4.weight": torch.rand(8, 64) < 0.5}
    )
    size = save_artifact(cm, tmp_path)
    assert size.forms["0.weight"] == "bitmask" and size.forms["2.weight"] == "csr"
    nnz0 = int((w0 != 0).sum())
    assert size.per_tensor["0.weight"] == 256 * 256 // 8 + nnz0 * 4 < 256 * 256 * 4
    assert size.per_tensor["2.weight"] < 256 * 64 * 4 // 10
    manifest = read_manifest(tmp_path)
    assert manifest["masks"]["0.weight"] == {"derive": "zeros"}
    assert manifest["masks"]["2.weight"] == {"derive": "nonzeros"}
    assert "stored" in manifest["masks"]["4.weight"]  # not derivable: stored as a bitmask
    back = round_trip(cm, tmp_path, mlp)
    for name, mask in cm.masks.items():
        assert torch.equal(back.masks[name], mask), name


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("granularity", ["tensor", "channel", "group"])
def test_quantized_round_trip_bit_exact(tmp_path: Path, bits: int, symmetric: bool, granularity: str) -> None:
    cm = apply(
        CompressedModel(mlp()),
        "quantize.weights",
        bits=bits,
        symmetric=symmetric,
        granularity=granularity,
        group_size=32,
    )
    size = save_artifact(cm, tmp_path)
    assert size.forms["0.weight"] == "packed"
    back = round_trip(cm, tmp_path, mlp)
    enc = back.encodings["0.weight"]
    assert isinstance(enc, QuantEncoding) and enc.bits == bits and enc.symmetric == symmetric
    w = back.module[0].weight.detach()
    assert torch.equal(enc.project(w), w)
    assert torch.equal(read_tensor(tmp_path, "0.weight"), cm.module[0].weight.detach())


def test_int4_is_an_eighth_of_fp32_plus_scales(tmp_path: Path) -> None:
    cm = apply(
        CompressedModel(mlp()),
        "quantize.weights",
        bits=4,
        granularity="group",
        group_size=128,
        exclude=["4.*"],
    )
    size = save_artifact(cm, tmp_path)
    n = 256 * 256
    assert size.per_tensor["0.weight"] == n // 2 + (n // 128) * 2  # packed nibbles + fp16 scales
    with safe_open(str(tmp_path / "tensors.safetensors"), "pt") as f:
        assert f.get_tensor("0.weight::codes").dtype == torch.uint8
        assert f.get_tensor("0.weight::scales").dtype == torch.float16
    cm8 = apply(CompressedModel(mlp()), "quantize.weights", bits=8, granularity="channel")
    assert save_artifact(cm8, tmp_path / "i8").per_tensor["0.weight"] == n + 256 * 2
    cm3 = apply(CompressedModel(mlp()), "quantize.weights", bits=3, granularity="channel", symmetric=False)
    assert save_artifact(cm3, tmp_path / "i3").per_tensor["0.weight"] == n * 3 // 8 + 256 * 2 + 256 * 3 // 8
    dense = save_artifact(CompressedModel(mlp()), tmp_path / "dense").bytes_total
    assert size.bytes_total < dense / 6


def test_pruned_then_quantized_uses_bitmask_plus_packed_codes(tmp_path: Path) -> None:
    m = mlp()
    with torch.no_grad():
        m[0].weight[torch.rand_like(m[0].weight) < 0.8] = 0.0
    cm = apply(
        CompressedModel(m), "quantize.weights", bits=4, symmetric=False, granularity="group", group_size=64
    )
    size = save_artifact(cm, tmp_path)
    assert size.forms["0.weight"] == "packed-bitmask"
    n, nnz = 256 * 256, int((m[0].weight != 0).sum())
    assert size.per_tensor["0.weight"] < n // 2
    assert size.per_tensor["0.weight"] == n // 8 + (nnz + 1) // 2 + (n // 64) * 2 + (n // 64) // 2
    round_trip(cm, tmp_path, mlp)


def test_stale_encoding_falls_back_to_plain_storage(tmp_path: Path) -> None:
    cm = apply(CompressedModel(mlp()), "quantize.weights", bits=4)
    with torch.no_grad():
        cm.module[0].weight.add_(1e-3)  # moved off the grid without projection
    size = save_artifact(cm, tmp_path)
    assert size.forms["0.weight"] == "dense"
    assert any("0.weight" in n for n in read_manifest(tmp_path)["notes"])
    back = round_trip(cm, tmp_path, mlp)
    assert "0.weight" not in back.encodings and "2.weight" in back.encodings


# -- structure ------------------------------------------------------------------------------------
@register_edit("test.shrink_hidden")
def _shrink(module: nn.Module, edit: dict[str, Any]) -> None:
    keep = torch.tensor(edit["keep"])
    first, second = module[0], module[2]
    new_first = nn.Linear(first.in_features, len(keep))
    new_second = nn.Linear(len(keep), second.out_features)
    with torch.no_grad():
        new_first.weight.copy_(first.weight[keep])
        new_first.bias.copy_(first.bias[keep])
        new_second.weight.copy_(second.weight[:, keep])
        new_second.bias.copy_(second.bias)
    module[0], module[2] = new_first, new_second


def test_structural_edits_are_replayed(tmp_path: Path) -> None:
    keep = list(range(0, 256, 2))
    cm = CompressedModel(mlp())
    edit = {"kind": "test.shrink_hidden", "keep": keep}
    _shrink(cm.module, edit)
    cm.edits.append(edit)
    cm.kept_indices = {"0.weight": {0: keep}, "2.weight": {1: keep}}
    cm = apply(cm, "quantize.weights", bits=4, granularity="group", group_size=32)
    back = round_trip(cm, tmp_path, mlp)
    assert back.module[0].weight.shape == (128, 256)
    assert back.kept_indices == cm.kept_indices and back.edits == cm.edits
    x = torch.randn(3, 256)
    assert torch.equal(back.module(x), cm.module(x))
    with pytest.raises(ArtifactError, match="structure"):
        manifest = json.loads((tmp_path / "manifest.json").read_text())
        manifest["edits"] = [{"kind": "no.such.edit"}]
        (tmp_path / "manifest.json").write_text(json.dumps(manifest))
        load_artifact(tmp_path, mlp)


def test_dynamic_int8_round_trip(tmp_path: Path) -> None:
    m = mlp()
    with torch.no_grad():
        m[0].weight[torch.rand_like(m[0].weight) < 0.9] = 0.0
    cm = apply(CompressedModel(m), "quantize.dynamic", exclude=["4.*"])
    size = save_artifact(cm, tmp_path)
    assert size.forms["0.weight"] == "qint8" and size.forms["0.bias"] == "dense"
    n = 256 * 256
    assert size.per_tensor["2.weight"] == 256 * 64 + 64 * 4  # int8 values + fp32 scales
    assert size.per_tensor["0.weight"] < n // 4  # sparse int8: bitmask + non-zero values
    back = load_artifact(tmp_path, mlp)
    kind = dynamic_linear_type()
    for i in (0, 2):
        a, b = cm.module[i].weight(), back.module[i].weight()
        assert isinstance(back.module[i], kind)
        assert torch.equal(a.int_repr(), b.int_repr())
        assert torch.equal(a.q_per_channel_scales(), b.q_per_channel_scales())
        assert torch.equal(cm.module[i].bias(), back.module[i].bias())
    x = torch.randn(4, 256)
    with torch.no_grad():
        assert torch.equal(cm.module(x), back.module(x))
    assert "0.weight" in tensor_names(tmp_path)
    assert torch.equal(read_tensor(tmp_path, "0.weight"), cm.module[0].weight().dequantize())


def test_gpt2_tied_quantized_dynamic_and_fp16(tmp_path: Path) -> None:
    ids = torch.randint(0, 64, (2, 10))
    cm = apply(
        CompressedModel(gpt2()),
        "quantize.weights",
        bits=4,
        granularity="group",
        group_size=16,
        include=["*.weight"],
        exclude=["*ln_*"],
    )
    assert "transformer.wte.weight" in cm.encodings
    size = save_artifact(cm, tmp_path / "q")
    assert size.forms["lm_head.weight"] == "alias" and size.per_tensor["lm_head.weight"] == 0
    back = round_trip(cm, tmp_path / "q", gpt2)
    assert back.module.lm_head.weight is back.module.transformer.wte.weight  # still tied
    with torch.no_grad():
        assert torch.equal(back.module(input_ids=ids).logits, cm.module(input_ids=ids).logits)

    dyn = apply(CompressedModel(gpt2()), "quantize.dynamic", include=["transformer.h.*"])
    back = round_trip(dyn, tmp_path / "d", gpt2)
    with torch.no_grad():
        assert torch.equal(back.module(input_ids=ids).logits, dyn.module(input_ids=ids).logits)

    half = CompressedModel(gpt2().half())
    back = round_trip(half, tmp_path / "h", gpt2)
    assert back.module.transformer.h[0].mlp.c_fc.weight.dtype == torch.float16
    assert (
        save_artifact(half, tmp_path / "h2").bytes_total
        < save_artifact(CompressedModel(gpt2()), tmp_path / "f").bytes_total * 0.6
    )


# -- broken artifacts ------------------------------------------------------------------------------
def test_corrupt_or_missing_files_are_clear_errors(tmp_path: Path) -> None:
    cm = apply(CompressedModel(mlp()), "quantize.weights", bits=4)
    save_artifact(cm, tmp_path)
    manifest, tensors = tmp_path / "manifest.json", tmp_path / "tensors.safetensors"
    good_manifest, good_tensors = manifest.read_text(), tensors.read_bytes()

    tensors.write_bytes(good_tensors[: len(good_tensors) // 2])
    with pytest.raises(ArtifactError, match=r"tensors\.safetensors.*truncated"):
        load_artifact(tmp_path, mlp)
    tensors.write_bytes(b"\x00" * len(good_tensors))  # right size, garbage content
    with pytest.raises(ArtifactError, match=r"tensors.safetensors"):
        load_artifact(tmp_path, mlp)
    with pytest.raises(ArtifactError, match=r"tensors.safetensors"):
        read_tensor(tmp_path, "0.weight")
    tensors.unlink()
    with pytest.raises(ArtifactError, match=r"tensors.safetensors: missing"):
        load_artifact(tmp_path, mlp)
    tensors.write_bytes(good_tensors)

    manifest.write_text(good_manifest[:40])
    with pytest.raises(ArtifactError, match=r"manifest.json"):
        load_artifact(tmp_path, mlp)
    broken = json.loads(good_manifest)
    del broken["tensors"]["0.weight"]
    manifest.write_text(json.dumps(broken))
    with pytest.raises(ArtifactError, match="skeleton"):
        load_artifact(tmp_path, mlp)
    broken = json.loads(good_manifest)
    broken["tensors"]["0.weight"]["bits"] = 3  # entry does not fit its data
    manifest.write_text(json.dumps(broken))
    with pytest.raises(ArtifactError, match=r"0.weight"):
        load_artifact(tmp_path, mlp)
    manifest.unlink()
    with pytest.raises(ArtifactError, match=r"manifest.json: missing"):
        load_artifact(tmp_path, mlp)
    with pytest.raises(ArtifactError, match=r"manifest.json"):
        tensor_names(tmp_path)
    manifest.write_text(good_manifest)
    round_trip(cm, tmp_path, mlp)  # repaired: loads again


def test_wrong_skeleton_is_a_clear_error(tmp_path: Path) -> None:
    save_artifact(CompressedModel(mlp()), tmp_path)
    with pytest.raises(ArtifactError, match="skeleton"):
        load_artifact(tmp_path, lambda: nn.Sequential(nn.Linear(3, 3)))


# -- export -----------------------------------------------------------------------------------------
def test_export_hf_reloads_with_from_pretrained(tmp_path: Path) -> None:
    from transformers import GPT2LMHeadModel

    ids = torch.randint(0, 64, (2, 10))
    cm = apply(CompressedModel(gpt2()), "quantize.weights", bits=4, granularity="group", group_size=16)
    # GPT-2's Conv1D layers have no compressed-tensors form (tests/artifacts/test_export_hf.py):
    # exported dequantized, the folder holds the float values the model runs on
    out = export_model(cm, tmp_path / "hf", format="hf", dequantize=True)
    again = GPT2LMHeadModel.from_pretrained(str(out)).eval()
    with torch.no_grad():
        assert torch.equal(again(input_ids=ids).logits, cm.module(input_ids=ids).logits)

    dyn = apply(CompressedModel(gpt2()), "quantize.dynamic")
    save_artifact(dyn, tmp_path / "art")
    out = export_model(
        tmp_path / "art", tmp_path / "hf_dyn", gpt2, format="hf", dequantize=True
    )  # as the CLI
    again = GPT2LMHeadModel.from_pretrained(str(out)).eval()
    w = dyn.module.transformer.h[0].mlp.c_fc.weight().dequantize()
    assert torch.equal(again.transformer.h[0].mlp.c_fc.weight, w.t())
    with torch.no_grad():
        close = again(input_ids=ids).logits
        assert torch.allclose(close, dyn.module(input_ids=ids).logits, atol=0.1)


def test_export_safetensors_and_refusals(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    cm = apply(CompressedModel(mlp()), "quantize.weights", bits=4)
    path = export_model(cm, tmp_path / "st", format="safetensors")
    state = load_file(str(path))
    assert torch.equal(state["0.weight"], cm.module[0].weight.detach())
    with pytest.raises(ArtifactError, match="not a Hugging Face"):
        export_model(cm, tmp_path / "hf", format="hf")
    g = CompressedModel(gpt2())
    with torch.no_grad():
        g.module.transformer.h[0].mlp.c_fc = nn.Linear(32, 64)  # shape no longer in the config
    with pytest.raises(ArtifactError, match="config"):
        export_model(g, tmp_path / "hf2", format="hf")


def test_mask_with_extra_zeros_is_derived_with_exceptions(tmp_path: Path) -> None:
    m = mlp()
    with torch.no_grad():
        w = m[0].weight
        pruned = torch.rand_like(w) < 0.5
        w[pruned] = 0.0
        w.view(-1)[torch.nonzero(~pruned.view(-1))[:10, 0]] = 0.0  # kept weights that happen to be 0
    cm = CompressedModel(m, masks={"0.weight": pruned})
    save_artifact(cm, tmp_path)
    how = read_manifest(tmp_path)["masks"]["0.weight"]
    assert how["derive"] == "zeros" and "except" in how
    assert torch.equal(load_artifact(tmp_path, mlp).masks["0.weight"], pruned)


@pytest.mark.parametrize("ops", [("prune", "quant"), ("prune", "quant", "cast"), ("cast", "quant")])
def test_lineage_of_ops_round_trips(tmp_path: Path, ops: tuple[str, ...]) -> None:
    """Pruning, quantization and casts composed as in a lineage keep the stored form exact."""
    steps = {
        "prune": ("prune.magnitude", {"sparsity": 0.6}),
        "quant": ("quantize.weights", {"bits": 4, "granularity": "group", "group_size": 64}),
        "cast": ("cast", {"dtype": "bf16"}),
    }
    cm = CompressedModel(mlp())
    for key in ops:
        name, params = steps[key]
        if get_op(name) is None:
            pytest.skip(f"op {name} not available")
        cm = apply(cm, name, **params)
    size = save_artifact(cm, tmp_path)
    assert size.forms["0.weight"] == ("packed-bitmask" if "prune" in ops else "packed")
    back = round_trip(cm, tmp_path, mlp)
    for name, mask in cm.masks.items():
        assert torch.equal(back.masks[name], mask.cpu())
