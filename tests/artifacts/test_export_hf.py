"""Compressed Hugging Face exports: each variant of a tiny BERT and a tiny GPT-2 made with Bonsai's
ops, stored as an artifact, exported, and loaded back with transformers alone; the outputs match
what Bonsai stored (the max abs difference is printed), the weights stay compressed, the tokenizer
comes along, and what a folder cannot state is refused with the op and the layer named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from torch import nn

from modelbonsai.artifacts import ArtifactError, export_model, load_artifact, save_artifact
from modelbonsai.ops.registry import CompressedModel, OpContext, get_op

pytest.importorskip("compressed_tensors")

CTX = OpContext(device=torch.device("cpu"), seed=0)
#: what "matches" means: the export rebuilds Bonsai's weights bit for bit, so the outputs agree
#: to float32 rounding of the same operations (observed: 0.0)
TOL = 1e-6
VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    *[f"w{i}" for i in range(59)],
]


def apply(cm: CompressedModel, op_name: str, **params: Any) -> CompressedModel:
    op = get_op(op_name)
    assert op is not None
    return op.fn(cm, op.resolve(params), CTX)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT saved as a Hugging Face folder with its tokenizer, as a user's base model is."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("bert-base")
    config = BertConfig(
        vocab_size=64,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    BertModel(config).eval().save_pretrained(str(folder))
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    BertTokenizerFast(vocab=str(folder / "vocab.txt")).save_pretrained(str(folder))
    return folder


def bert(folder: Path) -> nn.Module:
    from transformers import BertModel

    return BertModel.from_pretrained(str(folder)).eval()


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
    torch.manual_seed(1)
    return GPT2LMHeadModel(config).eval()


IDS = torch.randint(5, 64, (2, 12), generator=torch.Generator().manual_seed(3))


def outputs(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        out = model(input_ids=IDS)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def stored(cm: CompressedModel, folder: Path, skeleton: Any) -> CompressedModel:
    """The variant as Bonsai stores it (what its evaluation ran on), rebuilt from the artifact."""
    save_artifact(cm, folder)
    return load_artifact(folder, skeleton)


def max_diff(a: torch.Tensor, b: torch.Tensor, label: str) -> float:
    diff = float((a - b).abs().max())
    print(f"{label}: max abs difference {diff:.3g}")
    return diff


def tensor_bytes(path: Path, suffixes: tuple[str, ...]) -> int:
    total = 0
    with safe_open(str(path), "pt") as f:
        for k in f.keys():
            if k.endswith(suffixes) and ".layer." in k and "LayerNorm" not in k:
                t = f.get_tensor(k)
                total += t.numel() * t.element_size()
    return total


BERT_VARIANTS: dict[str, tuple[tuple[str, dict[str, Any]], ...]] = {
    "int8-channel": (("quantize.weights", {"bits": 8, "granularity": "channel"}),),
    "int4-group": (("quantize.weights", {"bits": 4, "granularity": "group", "group_size": 32}),),
    "int4-group-asym": (
        ("quantize.weights", {"bits": 4, "granularity": "group", "group_size": 32, "symmetric": False}),
    ),
    "int3-tensor-asym": (("quantize.weights", {"bits": 3, "granularity": "tensor", "symmetric": False}),),
    "bf16-int4-group": (
        ("cast", {"dtype": "bf16"}),
        ("quantize.weights", {"bits": 4, "granularity": "group", "group_size": 32}),
    ),
    "sparse-50": (("prune.magnitude", {"sparsity": 0.5}),),
    "sparse-2of4": (("prune.nm", {"n": 2, "m": 4}),),
    "sparse-2of4-int4": (
        ("prune.nm", {"n": 2, "m": 4}),
        ("quantize.weights", {"bits": 4, "granularity": "group", "group_size": 32}),
    ),
    "neurons-int8": (
        ("prune.structured", {"amount": 0.25, "structures": "neurons"}),
        ("quantize.weights", {"bits": 8, "granularity": "channel"}),
    ),
    "dynamic-int8": (("quantize.dynamic", {"granularity": "channel"}),),
}


@pytest.mark.parametrize("variant", list(BERT_VARIANTS))
def test_bert_variant_loads_with_transformers_alone(variant: str, bert_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    cm = CompressedModel(bert(bert_dir))
    for op, params in BERT_VARIANTS[variant]:
        cm = apply(cm, op, **params)
    ops = [op for op, _ in BERT_VARIANTS[variant]]
    art = tmp_path / "art"
    model = stored(cm, art, lambda: bert(bert_dir))
    out = export_model(art, tmp_path / "hf", lambda: bert(bert_dir), format="hf", ops=ops)
    loaded = AutoModel.from_pretrained(str(out)).eval()
    reference = outputs(model.module)
    if variant == "dynamic-int8":
        # torch's dynamic int8 also rounds activations at run time, which compressed-tensors does
        # not: the export runs the int8 weights on float activations (what a float copy runs)
        from modelbonsai.artifacts import float_copy

        assert max_diff(outputs(loaded), outputs(float_copy(model)), variant + " vs float copy") <= TOL
        assert max_diff(outputs(loaded), reference, variant + " vs dynamic") <= 0.05
    else:
        assert max_diff(outputs(loaded), reference, variant) <= TOL
    info = json.loads((out / "bonsai_export.json").read_text())
    config = json.loads((out / "config.json").read_text())
    quantized = variant not in ("sparse-50", "sparse-2of4")
    assert ("quantization_config" in config) == quantized
    if quantized:
        assert config["quantization_config"]["format"] == "pack-quantized"
        assert len(info["quantized"]) == 13  # q, k, v, attention out, intermediate, output x 2 + pooler
    if variant.startswith("sparse-") and not quantized:
        assert "written dense" in info["notes"][0]
    if variant == "neurons-int8":
        assert config["intermediate_size"] == 96 and info["config_changes"] == {"intermediate_size": 96}
    # the base's tokenizer came along and works from the export alone
    assert {"vocab.txt", "tokenizer.json", "tokenizer_config.json"} <= set(info["tokenizer_files"])
    assert AutoTokenizer.from_pretrained(str(out))("w3 w7")["input_ids"] == [2, 8, 12, 3]


def test_int4_weights_are_stored_packed(bert_dir: Path, tmp_path: Path) -> None:
    """The Linear weights of the encoder as int4 groups of 32 with float32 scales: 4 bits + 32/32
    bits per weight = 0.15625 of float32, exactly; the whole file well under half of it."""
    cm = apply(
        CompressedModel(bert(bert_dir)), "quantize.weights", bits=4, granularity="group", group_size=32
    )
    packed = export_model(cm, tmp_path / "int4", format="hf")
    dense = export_model(cm, tmp_path / "float", format="hf", dequantize=True)
    float_bytes = tensor_bytes(dense / "model.safetensors", (".weight",)) - tensor_bytes(
        dense / "model.safetensors", ("LayerNorm.weight",)
    )
    int4_bytes = tensor_bytes(packed / "model.safetensors", (".weight_packed", ".weight_scale"))
    print(f"linear weights: {int4_bytes} bytes packed, {float_bytes} as float32")
    assert int4_bytes / float_bytes == pytest.approx(0.15625)
    whole = (packed / "model.safetensors").stat().st_size / (dense / "model.safetensors").stat().st_size
    print(f"file: {whole:.3f} of the float export (embeddings, norms and biases stay float)")
    assert whole < 0.5
    with torch.no_grad():
        from transformers import AutoModel

        again = AutoModel.from_pretrained(str(dense)).eval()
        assert max_diff(outputs(again), outputs(cm.module), "dequantized export") <= TOL


def test_another_auto_class_finds_the_quantized_layers(tmp_path: Path) -> None:
    """A head model's folder loaded as its base class: the targets match under the prefix."""
    from transformers import AutoModel, BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    torch.manual_seed(2)
    cm = apply(CompressedModel(BertForSequenceClassification(config).eval()), "quantize.weights", bits=4)
    out = export_model(cm, tmp_path / "cls", format="hf")
    base = AutoModel.from_pretrained(str(out)).eval()
    with torch.no_grad():
        want = cm.module.bert(input_ids=IDS).last_hidden_state
        assert max_diff(base(input_ids=IDS).last_hidden_state, want, "as AutoModel") <= TOL


GPT2_VARIANTS: dict[str, tuple[tuple[str, dict[str, Any]], ...]] = {
    "sparse-50": (("prune.magnitude", {"sparsity": 0.5}),),
    "sparse-2of4": (("prune.nm", {"n": 2, "m": 4}),),
    "neurons": (("prune.structured", {"amount": 0.5, "structures": "neurons"}),),
}


@pytest.mark.parametrize("variant", list(GPT2_VARIANTS))
def test_gpt2_variant_loads_with_transformers_alone(variant: str, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    cm = CompressedModel(gpt2())
    for op, params in GPT2_VARIANTS[variant]:
        cm = apply(cm, op, **params)
    model = stored(cm, tmp_path / "art", gpt2)
    out = export_model(model, tmp_path / "hf", format="hf")
    loaded = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    assert max_diff(outputs(loaded), outputs(model.module), "gpt2 " + variant) <= TOL
    if variant == "neurons":
        assert json.loads((out / "config.json").read_text())["n_inner"] == 64


def llama() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    torch.manual_seed(4)
    return LlamaForCausalLM(config).eval()


def test_llama_pruned_and_quantized_loads_with_transformers_alone(tmp_path: Path) -> None:
    """A gated MLP pruned alike in every layer states its width as intermediate_size; its q/k/v/o
    and gate/up/down Linear layers are int4 groups with zero points."""
    from transformers import AutoModelForCausalLM

    cm = apply(CompressedModel(llama()), "prune.structured", amount=0.25, structures="neurons")
    cm = apply(cm, "quantize.weights", bits=4, granularity="group", group_size=16, symmetric=False)
    model = stored(cm, tmp_path / "art", llama)
    out = export_model(model, tmp_path / "hf", format="hf", ops=["prune.structured", "quantize.weights"])
    config = json.loads((out / "config.json").read_text())
    assert config["intermediate_size"] == 96 and len(config["quantization_config"]["config_groups"]) == 1
    loaded = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    assert max_diff(outputs(loaded), outputs(model.module), "llama neurons + int4 asymmetric") <= TOL


def test_gpt2_quantized_conv1d_is_refused_naming_op_and_layer(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    cm = apply(CompressedModel(gpt2()), "quantize.weights", bits=4, granularity="group", group_size=16)
    with pytest.raises(ArtifactError) as e:
        export_model(cm, tmp_path / "hf", format="hf", ops=["quantize.weights"])
    message = str(e.value)
    assert "quantize.weights on 'transformer.h.0.attn.c_attn'" in message
    assert "Conv1D" in message and "nn.Linear" in message and "dequantize" in message
    assert not (tmp_path / "hf").exists()
    # dequantized, it exports the float values the model runs on
    out = export_model(cm, tmp_path / "hf", format="hf", dequantize=True)
    loaded = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    assert max_diff(outputs(loaded), outputs(cm.module), "gpt2 int4 dequantized") <= TOL


def test_palettized_layer_is_refused_naming_op_and_layer(bert_dir: Path, tmp_path: Path) -> None:
    cm = apply(
        CompressedModel(bert(bert_dir)),
        "palettize",
        n_bits=2,
        iterations=2,
        include=["encoder.layer.0.attention.self.query.weight"],
    )
    with pytest.raises(
        ArtifactError, match=r"palettize on 'encoder\.layer\.0\.attention\.self\.query\.weight'"
    ):
        export_model(cm, tmp_path / "hf", format="hf", ops=["palettize"])


STRUCTURE_REFUSED: dict[str, tuple[Any, str, dict[str, Any], str]] = {
    "bert-heads": (
        "bert",
        "prune.structured",
        {"amount": 0.5, "structures": "heads"},
        "attention heads kept",
    ),
    "bert-lowrank": ("bert", "lowrank", {"rank": 8}, "factorised into two layers of rank 8"),
    "bert-one-layer": (
        "bert",
        "prune.structured",
        {"amount": 0.5, "structures": "neurons", "include": ["encoder.layer.0.*"]},
        "one intermediate_size for every layer",
    ),
    "gpt2-heads": (
        "gpt2",
        "prune.structured",
        {"amount": 0.5, "structures": "heads"},
        "attention heads kept",
    ),
}


@pytest.mark.parametrize("case", list(STRUCTURE_REFUSED))
def test_structure_no_config_states_is_refused_then_loads_from_safetensors(
    case: str, bert_dir: Path, tmp_path: Path
) -> None:
    arch, op, params, why = STRUCTURE_REFUSED[case]
    skeleton = (lambda: bert(bert_dir)) if arch == "bert" else gpt2
    model = stored(apply(CompressedModel(skeleton()), op, **params), tmp_path / "art", skeleton)
    with pytest.raises(ArtifactError) as e:
        export_model(model, tmp_path / "hf", format="hf", ops=[op])
    message = str(e.value)
    print(message)
    assert f"{op} on '" in message and why in message
    assert "safetensors" in message and "load_bonsai_model.py" in message
    written = export_model(model, tmp_path / "st", format="safetensors")
    loader = import_loader(written.parent)
    assert "modelbonsai" not in (written.parent / "load_bonsai_model.py").read_text()
    got = outputs(loader.load(written.parent))
    assert max_diff(got, outputs(model.module), f"{case} via the loader") <= TOL
    if case == "bert-heads":
        # and in a fresh interpreter with plain torch + transformers: Bonsai is never imported
        script = (
            "import sys, torch\n"
            f"sys.path.insert(0, {str(written.parent)!r})\n"
            "from load_bonsai_model import load\n"
            "m = load()\n"
            f"ids = torch.tensor({IDS.tolist()})\n"
            "with torch.no_grad():\n"
            "    o = m(input_ids=ids).last_hidden_state\n"
            f"torch.save(o, {str(tmp_path / 'out.pt')!r})\n"
            "assert not any(k.startswith('modelbonsai') for k in sys.modules)\n"
        )
        subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, timeout=300)
        assert torch.equal(torch.load(tmp_path / "out.pt", weights_only=True), got)


def import_loader(folder: Path) -> Any:
    """The export's load_bonsai_model.py as a module of its own name (one per folder)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        f"loader_{abs(hash(str(folder)))}", folder / "load_bonsai_model.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_forced_export_keeps_the_users_tokenizer(bert_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "vocab.txt").write_text("mine\n")
    cm = CompressedModel(bert(bert_dir))
    export_model(cm, out, format="hf", force=True)
    assert (out / "vocab.txt").read_text() == "mine\n"
    assert (out / "tokenizer.json").is_file()  # the base's, which the folder lacked


def test_cli_exports_a_stored_variant_with_its_tokenizer(
    bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`bonsai export` of variants run from an experiment file: the tokenizer comes from the
    base's folder, and a refusal names the op from the model's lineage and the layer."""
    import shutil

    from transformers import AutoModel, AutoTokenizer

    from modelbonsai.cli import main

    shutil.copytree(bert_dir, tmp_path / "bert")
    (tmp_path / "exp.bonsai.yaml").write_text(
        "base:\n  name: bert\n  load: bert\nvariants:\n"
        "  - name: int4\n    from: base\n    ops:\n"
        "      - quantize.weights: {bits: 4, granularity: group, group_size: 32}\n"
        "  - name: heads\n    from: base\n    ops:\n"
        "      - prune.structured: {amount: 0.5, structures: heads}\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["run", "exp.bonsai.yaml", "--device", "cpu"]) == 0
    assert main(["export", "int4", "int4-hf"]) == 0
    loaded = AutoModel.from_pretrained(str(tmp_path / "int4-hf")).eval()
    assert json.loads((tmp_path / "int4-hf" / "config.json").read_text())["quantization_config"]
    assert AutoTokenizer.from_pretrained(str(tmp_path / "int4-hf"))("w3")["input_ids"] == [2, 8, 3]
    outputs(loaded)  # compressed-tensors unpacks the weights on the first forward
    assert loaded.encoder.layer[0].attention.self.query.weight.shape == (64, 64)
    capsys.readouterr()
    assert main(["export", "heads", "heads-hf"]) == 2
    err = capsys.readouterr().err
    assert "prune.structured on 'encoder.layer.0.attention.self'" in err and "Traceback" not in err
    assert main(["export", "heads", "heads-st", "--format", "safetensors"]) == 0
    assert (tmp_path / "heads-st" / "load_bonsai_model.py").is_file()


def test_missing_compressed_tensors_is_a_clear_error(
    bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cm = apply(CompressedModel(bert(bert_dir)), "quantize.weights", bits=8)
    monkeypatch.setitem(sys.modules, "compressed_tensors.compressors.pack_quantized.helpers", None)
    with pytest.raises(ArtifactError, match=r"pip install 'compressed-tensors==0\.20\.1'.*--dequantize"):
        export_model(cm, tmp_path / "hf", format="hf")
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize(
    ("edit", "op", "layer"),
    [
        ({"scaled": ["encoder.layer.0.attention.self.query"], "quantized": []}, "smoothquant", "query"),
        ({"scaled": [], "quantized": ["encoder.layer.1.output.dense"]}, "quantize.static", "output.dense"),
    ],
)
def test_an_input_hook_is_refused_naming_op_and_layer(
    edit: dict[str, Any], op: str, layer: str, bert_dir: Path, tmp_path: Path
) -> None:
    """SmoothQuant's unfolded input scales and W8A8's activation rounding run in a forward hook
    that a Hugging Face class does not have: refused, before anything is written."""
    cm = CompressedModel(bert(bert_dir), edits=[{"kind": "input.transform", **edit}])
    with pytest.raises(ArtifactError, match=rf"{op} on 'encoder\.layer\.\d\.[a-z.]*{layer}'.*forward hook"):
        export_model(cm, tmp_path / "hf", format="hf", ops=["smoothquant"])
    assert not (tmp_path / "hf").exists()


def test_gpt2_dynamic_int8_is_refused_naming_op_and_layer(tmp_path: Path) -> None:
    cm = apply(CompressedModel(gpt2()), "quantize.dynamic")
    with pytest.raises(
        ArtifactError, match=r"quantize\.dynamic on 'transformer\.h\.0\.attn\.c_attn'.*Conv1D"
    ):
        export_model(cm, tmp_path / "hf", format="hf", ops=["quantize.dynamic"])


@pytest.mark.parametrize(
    ("op", "params"),
    [("prune.structured", {"amount": 0.5}), ("lowrank", {"rank": 4})],
)
def test_the_loader_rebuilds_a_model_that_is_not_hugging_face(
    op: str, params: dict[str, Any], tmp_path: Path
) -> None:
    """A plain torch model (no config to embed): `load(folder, model=<a fresh base>)`."""

    def mlp() -> nn.Module:
        torch.manual_seed(5)
        return nn.Sequential(
            nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4)
        ).eval()

    cm = apply(CompressedModel(mlp()), op, **params)
    written = export_model(cm, tmp_path / "st", format="safetensors")
    loader = import_loader(written.parent)
    with pytest.raises(ValueError, match="not a Hugging Face model"):
        loader.load(written.parent)
    again = loader.load(written.parent, model=mlp())
    x = torch.randn(3, 16, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert max_diff(again(x), cm.module(x), f"mlp {op} via the loader") <= TOL
