"""The language-server tests' workspace: the shared toy workspace plus slow, noisy and failing ops."""

from __future__ import annotations

import textwrap
from pathlib import Path

import torch

from support.workspace import experiment_head, write_workspace

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

# The shared head (with this workspace's user ops), then two variants in a chain.
EXPERIMENT = (
    experiment_head("my_ops.py")
    + """\
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
    """Write the workspace into `root`; returns the experiment file."""
    return write_workspace(root, experiment, USER_OPS, hidden)


def make_hf_model(folder: Path) -> Path:
    """A tiny Hugging Face folder (config.json + model.safetensors); returns config.json."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=2, n_head=2)
    GPT2LMHeadModel(config).save_pretrained(str(folder), safe_serialization=True)
    return folder / "config.json"
