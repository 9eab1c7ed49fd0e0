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
