"""A tiny Bonsai workspace for the language-server tests: model, task, slow/failing ops, experiment."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import torch
from safetensors.torch import save_file

ARCH = textwrap.dedent(
    """
    from torch import nn

    def build():
        return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    """
)

TASK = textwrap.dedent(
    """
    import torch
    from modelbonsai.tasks.base import Batch, Evaluation, Metric, RenderedInstance, Task

    def _data(n, seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 4, generator=g)
        y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
        return x, y

    class ToyTask(Task):
        kind = "toy"

        def eval_batches(self, batch_size):
            n = self.max_instances or 24
            x, y = _data(n, 0)
            for i in range(0, n, batch_size):
                yield Batch([f"i{j}" for j in range(i, min(n, i + batch_size))], x[i:i + batch_size], y[i:i + batch_size])

        def training_batches(self, batch_size, seed):
            g = 0
            while True:
                x, y = _data(batch_size, 1000 + seed + g)
                g += 1
                yield Batch([f"t{k}" for k in range(batch_size)], x, y)

        def example_batch(self, batch_size):
            x, y = _data(batch_size, 7)
            return Batch([f"e{k}" for k in range(batch_size)], x, y)

        def forward(self, model, batch):
            return model(batch.inputs)

        def loss(self, model, batch):
            return torch.nn.functional.cross_entropy(model(batch.inputs), batch.targets)

        def evaluate(self, model, device, reference=None):
            ids, outs, ys = [], [], []
            for b in self.eval_batches(8):
                b = self.to_device(b, device)
                ids += b.ids
                outs.append(self.forward(model, b).float().cpu())
                ys.append(b.targets.cpu())
            out = torch.cat(outs).softmax(-1)
            y = torch.cat(ys)
            pred = out.argmax(-1)
            metrics = [Metric("accuracy", float((pred == y).float().mean()), "", True, headline=True)]
            if reference is not None:
                metrics.append(Metric("agreement", float((pred == reference.predictions).float().mean())))
            return Evaluation(metrics, ids, out, pred, y)

        def class_names(self):
            return ["zero", "one", "two"]

        def render(self, instance_id):
            return RenderedInstance(instance_id, "text", text=f"instance {instance_id}")
    """
)

# `test.slow` takes `steps * delay` seconds, reporting progress and honouring cancel each step.
USER_OPS = textwrap.dedent(
    """
    import time
    from modelbonsai.ops.registry import OpError, Param, register_op

    @register_op("test.slow", family="test", summary="sleeps in steps", source="user",
                 params=[Param("steps", "int", "how many steps", default=10, minimum=1),
                         Param("delay", "float", "seconds per step", default=0.05, minimum=0)])
    def slow(cm, params, ctx):
        n = params["steps"]
        for i in range(n):
            ctx.check_cancelled()
            ctx.progress(i / n, f"step {i + 1} of {n}")
            time.sleep(params["delay"])
        return cm

    @register_op("test.noisy", family="test", summary="prints to stdout", source="user", params=[])
    def noisy(cm, params, ctx):
        import os, sys
        print("a stray print from an op")
        sys.stdout.flush()
        os.write(1, b"and a raw write to file descriptor 1\\n")
        return cm

    @register_op("test.explode", family="test", summary="always fails", source="user",
                 params=[Param("why", "str", "what to say", default="boom")])
    def explode(cm, params, ctx):
        raise OpError("test.explode", params["why"])
    """
)

EXPERIMENT = textwrap.dedent(
    """\
    seed: 3
    base:
      name: toy
      load: model.safetensors
      factory: arch.py:build
    task:
      kind: tasks.py:ToyTask
    ops_from: my_ops.py
    variants:
      - name: prune-50
        from: base
        ops:
          - prune.magnitude: {sparsity: 0.5}
      - name: int8
        from: prune-50
        ops:
          - quantize.weights: {bits: 8}
    """
)


def make_workspace(root: Path, experiment: str = EXPERIMENT, hidden: tuple[int, ...] = (16,)) -> Path:
    """Write the workspace into `root` (created); returns the experiment file. `hidden` sets the
    MLP's hidden widths (wide layers make big tensors for the large-payload tests)."""
    from torch import nn

    root.mkdir(parents=True, exist_ok=True)
    widths = [4, *hidden, 3]
    layers = ", nn.ReLU(), ".join(f"nn.Linear({a}, {b})" for a, b in itertools.pairwise(widths))
    (root / "arch.py").write_text(ARCH.replace("nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3)", layers))
    (root / "tasks.py").write_text(TASK)
    (root / "my_ops.py").write_text(USER_OPS)
    torch.manual_seed(0)
    model = eval(f"nn.Sequential({layers})", {"nn": nn})
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / "model.safetensors"))
    exp = root / "exp.bonsai.yaml"
    exp.write_text(experiment)
    return exp


def make_hf_model(folder: Path) -> Path:
    """A tiny Hugging Face folder (config.json + model.safetensors); returns config.json."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=2, n_head=2)
    GPT2LMHeadModel(config).save_pretrained(str(folder), safe_serialization=True)
    return folder / "config.json"
