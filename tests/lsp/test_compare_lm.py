"""bonsai/compare/behavior on a causal LM over stdio: the result carries the true per-token KL
(`token_kl` [N, T], `kl` [N]), equal to the engine's result computed directly."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_lsp
import torch
from pytest_lsp import LanguageClient
from safetensors.torch import save_file

from modelbonsai import wire
from modelbonsai.lsp import protocol as P

from .helpers import job_end, request, server_config, start_session, watch

ARCH = textwrap.dedent(
    """
    import torch
    from torch import nn

    class TinyLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(4, 8)
            self.head = nn.Linear(8, 4)

        def forward(self, ids):
            return self.head(torch.relu(self.emb(ids)))

    def build():
        return TinyLM()
    """
)

EXPERIMENT = textwrap.dedent(
    """\
    seed: 0
    base:
      name: lm
      load: model.safetensors
      factory: arch.py:build
    task:
      kind: causal-lm
      data: eval.txt
      train: train.txt
      tokenizer: .
      context: 8
      prompts: ["ab", "ba"]
      max_new_tokens: 4
    variants:
      - name: int4
        from: base
        ops:
          - quantize.weights: {bits: 4}
    """
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from modelbonsai.tasks.tokenize import CharTokenizer

    root = tmp_path_factory.mktemp("compare-lm")
    (root / "arch.py").write_text(ARCH)
    (root / "exp.bonsai.yaml").write_text(EXPERIMENT)
    CharTokenizer.build("abc").save(root)
    (root / "eval.txt").write_text("abcab" * 20)
    (root / "train.txt").write_text("abcab" * 20)
    scope: dict[str, Any] = {}
    exec(ARCH, scope)
    torch.manual_seed(0)
    model = scope["build"]()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / "model.safetensors"))
    return root


@pytest_lsp.fixture(config=server_config(), scope="module")
async def client(lsp_client: LanguageClient, folder: Path):
    watch(lsp_client)
    await start_session(lsp_client, folder, folder / "storage")
    job = (await request(lsp_client, P.RUN, {"file": str(folder / "exp.bonsai.yaml")}))["jobId"]
    final = await job_end(lsp_client, job, 120)
    assert final["state"] == "done", final
    yield
    await lsp_client.shutdown_session()


@pytest.mark.asyncio(loop_scope="module")
async def test_causal_lm_behavior_carries_token_kl(client: LanguageClient, folder: Path) -> None:
    from modelbonsai.artifacts import load_artifact
    from modelbonsai.compare import api
    from modelbonsai.load import load_skeleton
    from modelbonsai.runner import load_evaluation
    from modelbonsai.store import LineageStore
    from modelbonsai.tasks import CausalLMTask

    m = {x["name"]: x["id"] for x in (await request(client, P.LINEAGE, {}))["models"]}
    ref = await request(
        client, P.COMPARE_BEHAVIOR, {"base": m["lm"], "models": [m["int4"]], "options": {"bootstrap": 50}}
    )
    if "data" not in ref:  # a comparison slower than its first-reply wait: ask for page 0
        ref = await request(client, P.RESULT_PAGE, {"resultId": ref["resultId"], "page": 0})
    assert ref["pages"] == 1 and "data" in ref
    got = wire.decode_result(base64.b64decode(ref["data"]))
    n = len(got.meta["ids"])
    assert n > 0 and got.tensors["token_kl"].shape == (n, 8) and got.tensors["kl"].shape == (n,)
    assert np.isfinite(got.tensors["token_kl"]).all() and (got.tensors["token_kl"] >= -1e-6).all()
    assert got.tensors["kl"].max() > 0, "4-bit weights change the next-token distributions"

    # the engine called directly on the same models, evaluations and task
    store = LineageStore.open(folder)
    base_rec, other_rec = store.get_model(m["lm"]), store.get_model(m["int4"])

    def module(rec: Any) -> Any:
        return load_artifact(
            store.artifact_path(rec), lambda: load_skeleton(base_rec.base_spec, folder)
        ).module

    task = CausalLMTask(
        {
            "data": "eval.txt",
            "train": "train.txt",
            "tokenizer": ".",
            "context": 8,
            "prompts": ["ab", "ba"],
            "max_new_tokens": 4,
        },
        folder,
    )
    direct = api.behavior(
        None,
        base_rec.id,
        other_rec.id,
        load_evaluation(store, base_rec),
        load_evaluation(store, other_rec),
        task_key={},
        groupings=task.groupings,
        class_names=task.class_names(),
        bootstrap=50,
        seed=0,
        models=(module(base_rec), module(other_rec)),
        task=task,
    )
    assert got.kind == direct.result.kind and got.meta["ids"] == direct.result.meta["ids"]
    assert set(got.tensors) == set(direct.result.tensors)
    for k, v in direct.result.tensors.items():
        np.testing.assert_allclose(got.tensors[k], v, rtol=1e-5, atol=1e-6, err_msg=k)
    store.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_lm_instances_come_decoded_by_the_task_s_tokenizer(
    client: LanguageClient, folder: Path
) -> None:
    """bonsai/instances on a causal LM: the window's text one string per token, and each model's
    next-token predictions (and the targets) as text too, from the tokenizer on the server: the
    panel never shows token ids nor guesses a vocabulary."""
    from modelbonsai.runner import load_evaluation
    from modelbonsai.store import LineageStore
    from modelbonsai.tasks.tokenize import CHAR_VOCAB, CharTokenizer

    m = {x["name"]: x["id"] for x in (await request(client, P.LINEAGE, {}))["models"]}
    ref = await request(client, P.INSTANCES, {"ids": ["0", "8"], "models": [m["lm"], m["int4"]]})
    if "data" not in ref:
        ref = await request(client, P.RESULT_PAGE, {"resultId": ref["resultId"], "page": 0})
    got = wire.decode_result(base64.b64decode(ref["data"]))
    text = "abcab" * 20  # eval.txt (the task has train.txt for training)
    first, second = got.meta["instances"]
    assert first["tokens"] == list(text[0:9]) and "".join(first["tokens"]) == first["text"]
    assert second["tokens"] == list(text[8:17])
    tok = CharTokenizer.load(folder / CHAR_VOCAB)
    store = LineageStore.open(folder)
    for name in ("lm", "int4"):
        ev = load_evaluation(store, store.get_model(m[name]))
        pos = {str(x): k for k, x in enumerate(ev.ids)}
        for i, iid in enumerate(("0", "8")):
            ids = ev.predictions[pos[iid]].tolist()
            assert got.meta["predictionTokens"][m[name]][i] == [
                tok.chars[j] if j > 0 else "\ufffd" for j in ids
            ]
    store.close()
    assert got.meta["targetTokens"] == [list(text[1:9]), list(text[9:17])]
