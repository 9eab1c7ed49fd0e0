"""Tiny models and toy tasks shared by the op tests (and the quantization tests).

Every model is built from a fixed seed, so two calls of a factory give identical weights: a test
can compress one copy and use another as the untouched "fresh base skeleton" that the artifact
loader replays structural edits on. All dropouts are 0 and models come back in eval mode, so
forwards are deterministic.

Fixtures:
- ``tiny_cnn`` / ``tiny_cnn_factory``: conv-BN-ReLU x2, max-pool, flatten -> Linear -> Linear,
  input ``cnn_input`` of shape [4, 3, 8, 8], 4 classes. Parameter names: ``conv1.weight``,
  ``bn1.weight``, ``conv2.weight``, ``bn2.weight``, ``fc1.weight`` (256 inputs = 16 channels x
  4 x 4), ``fc2.weight``.
- ``tiny_gpt2`` / ``tiny_gpt2_factory``: ``GPT2LMHeadModel`` (2 layers, 32 wide, 4 heads, vocab 64,
  tied lm_head), input ``gpt2_input`` ([2, 16] token ids).
- ``tiny_bert`` / ``tiny_bert_factory``: ``BertForSequenceClassification`` (2 layers, 32 wide,
  4 heads, intermediate 64, vocab 64, 2 labels), input ``bert_input`` ([2, 16] token ids).
- ``cnn_task``, ``gpt2_task``, ``bert_task``: toy tasks with learnable synthetic data that follow
  the op-facing task contract (``calibration_batches``, ``training_batches``, ``forward``,
  ``loss``) and yield ``tasks.base.Batch`` objects.
- ``ctx`` (CPU, seed 0, no task) and ``make_ctx(task=..., parent=..., seed=...)``.
- ``make_cm(module)``: wraps a module in a ``CompressedModel``.
- ``run_op(name, cm, params, ctx)``: resolves `params` through the registry (defaults, checks)
  and runs the op, as the runner does.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from modelbonsai.ops.registry import CompressedModel, OpContext, get_op
from modelbonsai.tasks.base import Batch

ModelFactory = Callable[[], nn.Module]


def _seeded(build: Callable[[], nn.Module], seed: int = 1234) -> nn.Module:
    # fork_rng so building a model never disturbs the seed a test set for itself
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
    return model.eval()


def build_tiny_cnn() -> nn.Module:
    def build() -> nn.Module:
        return nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(3, 8, 3, padding=1),
                bn1=nn.BatchNorm2d(8),
                relu1=nn.ReLU(),
                conv2=nn.Conv2d(8, 16, 3, padding=1),
                bn2=nn.BatchNorm2d(16),
                relu2=nn.ReLU(),
                pool=nn.MaxPool2d(2),
                flatten=nn.Flatten(),
                fc1=nn.Linear(16 * 4 * 4, 32),
                relu3=nn.ReLU(),
                fc2=nn.Linear(32, 4),
            )
        )

    model = _seeded(build)
    # non-trivial running stats so BN folding / recalibration tests are meaningful
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(99)
        for bn in (model.bn1, model.bn2):
            assert isinstance(bn, nn.BatchNorm2d)
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 1.5)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    return model


def build_tiny_gpt2() -> nn.Module:
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
    return _seeded(lambda: GPT2LMHeadModel(config))


def build_tiny_bert() -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return _seeded(lambda: BertForSequenceClassification(config))


class ToyTask:
    """A synthetic, learnable task following the op-facing part of the Task contract."""

    def __init__(
        self,
        make_batch: Callable[[torch.Generator, int], Batch],
        forward: Callable[[nn.Module, Batch], torch.Tensor],
        loss: Callable[[nn.Module, Batch], torch.Tensor],
    ) -> None:
        self._make_batch = make_batch
        self._forward = forward
        self._loss = loss

    def training_batches(self, batch_size: int, seed: int) -> Iterator[Batch]:
        gen = torch.Generator().manual_seed(seed)
        while True:
            yield self._make_batch(gen, batch_size)

    def calibration_batches(self, n: int, batch_size: int, seed: int) -> Iterator[Batch]:
        it = self.training_batches(batch_size, seed)
        for _ in range(n):
            yield next(it)

    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return self._forward(model, batch)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return self._loss(model, batch)


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def make_cnn_task() -> ToyTask:
    def make_batch(gen: torch.Generator, n: int) -> Batch:
        x = torch.randn(n, 3, 8, 8, generator=gen)
        # class = the image quadrant with the largest mean: learnable by a small CNN
        quads = torch.stack(
            [
                x[:, :, :4, :4].mean((1, 2, 3)),
                x[:, :, :4, 4:].mean((1, 2, 3)),
                x[:, :, 4:, :4].mean((1, 2, 3)),
                x[:, :, 4:, 4:].mean((1, 2, 3)),
            ],
            dim=1,
        )
        return Batch(ids=[str(i) for i in range(n)], inputs=x, targets=quads.argmax(1))

    def forward(model: nn.Module, batch: Batch) -> torch.Tensor:
        x = batch.inputs.to(_device_of(model))
        return model(x.to(next(model.parameters()).dtype)).float()

    def loss(model: nn.Module, batch: Batch) -> torch.Tensor:
        assert batch.targets is not None
        return F.cross_entropy(forward(model, batch), batch.targets.to(_device_of(model)))

    return ToyTask(make_batch, forward, loss)


def make_gpt2_task() -> ToyTask:
    def make_batch(gen: torch.Generator, n: int) -> Batch:
        # counting sequences mod 64 from a random start: next token is predictable
        start = torch.randint(0, 64, (n, 1), generator=gen)
        ids = (start + torch.arange(16)) % 64
        return Batch(ids=[str(i) for i in range(n)], inputs={"input_ids": ids}, targets=None)

    def forward(model: nn.Module, batch: Batch) -> torch.Tensor:
        ids = batch.inputs["input_ids"].to(_device_of(model))
        return model(input_ids=ids).logits.float()

    def loss(model: nn.Module, batch: Batch) -> torch.Tensor:
        ids = batch.inputs["input_ids"].to(_device_of(model))
        logits = model(input_ids=ids).logits.float()
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))

    return ToyTask(make_batch, forward, loss)


def make_bert_task() -> ToyTask:
    def make_batch(gen: torch.Generator, n: int) -> Batch:
        ids = torch.randint(0, 64, (n, 16), generator=gen)
        return Batch(
            ids=[str(i) for i in range(n)], inputs={"input_ids": ids}, targets=(ids[:, 1] < 32).long()
        )

    def forward(model: nn.Module, batch: Batch) -> torch.Tensor:
        ids = batch.inputs["input_ids"].to(_device_of(model))
        return model(input_ids=ids).logits.float()

    def loss(model: nn.Module, batch: Batch) -> torch.Tensor:
        assert batch.targets is not None
        return F.cross_entropy(forward(model, batch), batch.targets.to(_device_of(model)))

    return ToyTask(make_batch, forward, loss)


@pytest.fixture
def tiny_cnn_factory() -> ModelFactory:
    return build_tiny_cnn


@pytest.fixture
def tiny_cnn() -> nn.Module:
    return build_tiny_cnn()


@pytest.fixture
def cnn_input() -> torch.Tensor:
    return torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(7))


@pytest.fixture
def tiny_gpt2_factory() -> ModelFactory:
    return build_tiny_gpt2


@pytest.fixture
def tiny_gpt2() -> nn.Module:
    return build_tiny_gpt2()


@pytest.fixture
def gpt2_input() -> torch.Tensor:
    return torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(7))


@pytest.fixture
def tiny_bert_factory() -> ModelFactory:
    return build_tiny_bert


@pytest.fixture
def tiny_bert() -> nn.Module:
    return build_tiny_bert()


@pytest.fixture
def bert_input() -> torch.Tensor:
    return torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(8))


@pytest.fixture
def cnn_task() -> ToyTask:
    return make_cnn_task()


@pytest.fixture
def gpt2_task() -> ToyTask:
    return make_gpt2_task()


@pytest.fixture
def bert_task() -> ToyTask:
    return make_bert_task()


@pytest.fixture
def make_cm() -> Callable[[nn.Module], CompressedModel]:
    return lambda module: CompressedModel(module=module)


@pytest.fixture
def make_ctx() -> Callable[..., OpContext]:
    def make(task: Any = None, parent: CompressedModel | None = None, seed: int = 0) -> OpContext:
        return OpContext(device=torch.device("cpu"), seed=seed, task=task, parent=parent)

    return make


@pytest.fixture
def ctx() -> OpContext:
    return OpContext(device=torch.device("cpu"), seed=0)


def _run_op(name: str, cm: CompressedModel, params: dict[str, Any], ctx: OpContext) -> CompressedModel:
    op = get_op(name)
    assert op is not None, f"op {name} is not registered"
    return op.fn(cm, op.resolve(params), ctx)


@pytest.fixture
def run_op() -> Callable[[str, CompressedModel, dict[str, Any], OpContext], CompressedModel]:
    return _run_op
