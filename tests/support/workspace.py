"""The tiny toy workspace the CLI, runner and language-server tests build: an MLP factory, a
synthetic 3-class task, and whatever user ops and experiment file each suite adds."""

from __future__ import annotations

import argparse
import itertools
import textwrap
from pathlib import Path
from string import Template

ARCH = textwrap.dedent(
    """
    from torch import nn

    def build():
        return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    """
)

# $-placeholders (string.Template: the code's own braces stay as they are), filled by task_source.
_TASK_TEMPLATE = Template(
    textwrap.dedent(
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
            n = self.max_instances or $instances
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
            metrics = [Metric("accuracy", ${scale}float((pred == y).float().mean()), "$unit", True, headline=True)]
            if reference is not None:
                metrics.append(Metric("agreement", ${scale}float((pred == reference.predictions).float().mean()), "$unit"))
            return Evaluation(metrics, ids, out, pred, y)

        def class_names(self):
            return ["zero", "one", "two"]

        def render(self, instance_id):
            return RenderedInstance(instance_id, "text", text=f"instance {instance_id}")
    """
    )
)


def task_source(instances: int = 24, percent: bool = False) -> str:
    """The toy task's module: `instances` evaluation instances unless the run sets a maximum;
    metrics as fractions, or with `percent` as percentages (unit "%", what the e2e's screenshots
    show)."""
    scale, unit = ("100.0 * ", "%") if percent else ("", "")
    return _TASK_TEMPLATE.substitute(instances=instances, scale=scale, unit=unit)


#: the toy task module the CLI, runner and language-server suites write
TASK = task_source()


#: the experiment file's head for this workspace (base and task); variants follow it
EXPERIMENT_HEAD = """\
base:
  name: toy
  load: model.safetensors
  factory: arch.py:build
task:
  kind: tasks.py:ToyTask
seed: 3
variants:
"""


def experiment_head(ops_from: str | None = None) -> str:
    """:data:`EXPERIMENT_HEAD`, with `ops_from: <ops_from>` (the workspace's user ops module)
    just before `variants:` when given."""
    if ops_from is None:
        return EXPERIMENT_HEAD
    return EXPERIMENT_HEAD.replace("\nvariants:\n", f"\nops_from: {ops_from}\nvariants:\n")


def write_workspace(root: Path, experiment: str, user_ops: str, hidden: tuple[int, ...] = (16,)) -> Path:
    """Write the workspace into `root` (created); returns the experiment file. `hidden` sets the
    MLP's hidden widths (wide layers make big tensors for the large-payload tests)."""
    import torch  # imported here: writing the task module alone (main) needs no torch
    from safetensors.torch import save_file
    from torch import nn

    root.mkdir(parents=True, exist_ok=True)
    widths = [4, *hidden, 3]
    layers = ", nn.ReLU(), ".join(f"nn.Linear({a}, {b})" for a, b in itertools.pairwise(widths))
    (root / "arch.py").write_text(ARCH.replace("nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3)", layers))
    (root / "tasks.py").write_text(TASK)
    (root / "my_ops.py").write_text(user_ops)
    torch.manual_seed(0)
    model = eval(f"nn.Sequential({layers})", {"nn": nn})
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / "model.safetensors"))
    exp = root / "exp.bonsai.yaml"
    exp.write_text(experiment)
    return exp


def main(argv: list[str] | None = None) -> None:
    """`python -m support.workspace task FILE [--instances N] [--percent]` (run from tests/): write
    the toy task module, e.g. into the e2e workspace (extension/test/e2e/run.mjs)."""
    parser = argparse.ArgumentParser(prog="python -m support.workspace", description=main.__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    task = sub.add_parser("task", help="write the toy task module")
    task.add_argument("file", type=Path)
    task.add_argument("--instances", type=int, default=24, help="evaluation instances (default 24)")
    task.add_argument("--percent", action="store_true", help="metrics as percentages")
    args = parser.parse_args(argv)
    args.file.write_text(task_source(args.instances, args.percent))


if __name__ == "__main__":
    main()
