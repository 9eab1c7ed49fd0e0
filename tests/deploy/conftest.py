"""Tiny models and tasks of the samples' kinds (a CNN on images, a GPT-2 on characters, a BERT
for sentence embeddings), built in the test, for the deploy tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

CHARS = list("abcdefghijklmnopqrstuvwxyz .,\n")


def cnn() -> nn.Module:
    """The digits sample's shape of model, smaller: conv + BatchNorm + pooling + Linear."""
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )
    with torch.no_grad():  # BatchNorm statistics other than the identity, so folding them matters
        m[1].running_mean.uniform_(-0.5, 0.5)
        m[1].running_var.uniform_(0.5, 2.0)
    return m.eval()


@pytest.fixture
def image_task(tmp_path: Path):
    from modelbonsai.tasks import get_task_class

    g = torch.Generator().manual_seed(1)
    data = tmp_path / "data"
    data.mkdir()
    save_file(
        {
            "images": torch.randn(21, 1, 16, 16, generator=g),
            "labels": torch.randint(0, 10, (21,), generator=g),
        },
        str(data / "eval.safetensors"),
    )
    return get_task_class("image-classification")({"data": "data"}, tmp_path)


def gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(CHARS) + 1, n_positions=32, n_embd=32, n_layer=2, n_head=2)
    return GPT2LMHeadModel(cfg).eval()


@pytest.fixture
def lm_task(tmp_path: Path):
    from modelbonsai.tasks import get_task_class

    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "char_vocab.json").write_text(
        json.dumps({"kind": "bonsai-char", "chars": ["?", *CHARS], "unk": 0})
    )
    text = "the quick brown fox jumps over the lazy dog, again and again.\n" * 12
    (tmp_path / "corpus.txt").write_text(text)
    options = {"data": "corpus.txt", "tokenizer": "tok", "context": 16, "num_prompts": 0}
    return get_task_class("causal-lm")(options, tmp_path, max_instances=20)


def bert() -> nn.Module:
    """A MiniLM-shaped encoder (BERT), tiny."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=60,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return BertModel(cfg).eval()


@pytest.fixture
def embedding_task(tmp_path: Path):
    """Sentence embeddings of token batches padded to each batch's longest text, as the text
    tasks pad: the sequence length differs between batches (the export's dynamic dimension)."""
    from modelbonsai.tasks.base import Batch, Task

    class Embeddings(Task):
        kind = "test-embeddings"

        def _batch(self, i: int, n: int, length: int) -> Batch:
            g = torch.Generator().manual_seed(i)
            ids = torch.randint(1, 60, (n, length), generator=g)
            mask = torch.ones_like(ids)
            mask[0, length // 2 :] = 0  # one padded row per batch
            ids[0, length // 2 :] = 0
            return Batch([f"i{i}-{k}" for k in range(n)], {"input_ids": ids, "attention_mask": mask})

        def eval_batches(self, batch_size: int):
            for i, (n, length) in enumerate([(batch_size, 12), (batch_size, 7), (3, 16)]):
                yield self._batch(i, n, length)

        def training_batches(self, batch_size: int, seed: int):
            raise NotImplementedError

        def example_batch(self, batch_size: int) -> Batch:
            return self._batch(99, batch_size, 10)

        def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
            out = model(**batch.inputs).last_hidden_state
            m = batch.inputs["attention_mask"].unsqueeze(-1).float()
            return (out * m).sum(1) / m.sum(1)

        def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
            raise NotImplementedError

        def evaluate(self, model, device, reference=None):
            raise NotImplementedError

        def render(self, instance_id: str):
            raise NotImplementedError

    return Embeddings({}, tmp_path)
