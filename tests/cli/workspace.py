"""The CLI and runner tests' workspace: the shared toy workspace plus user ops that scale weights
or fail."""

from __future__ import annotations

import textwrap
from pathlib import Path

from support.workspace import experiment_head, write_workspace

USER_OPS = textwrap.dedent(
    """
    from modelbonsai.ops.registry import OpError, Param, register_op

    @register_op("mine.explode", family="test", summary="always fails", source="user",
                 params=[Param("why", "str", "what to say", default="boom")])
    def explode(cm, params, ctx):
        raise OpError("mine.explode", params["why"])

    @register_op("mine.scale", family="test", summary="scales every weight", source="user",
                 params=[Param("factor", "float", "multiplier", default=0.5)])
    def scale(cm, params, ctx):
        import torch
        with torch.no_grad():
            for p in cm.module.parameters():
                p.mul_(params["factor"])
        ctx.progress(1.0, "scaled")
        return cm
    """
)

# The shared head (with this workspace's user ops), then a chain, a failing op and its child.
EXPERIMENT = (
    experiment_head("my_ops.py")
    + """\
  - name: prune-50
    from: base
    ops:
      - prune.magnitude: {sparsity: 0.5}
  - name: prune-50-scaled
    from: prune-50
    ops:
      - mine.scale: {factor: 0.5}
      - prune.magnitude: {sparsity: 0.7}
  - name: bad
    from: base
    ops:
      - mine.explode: {why: "it went wrong"}
  - name: after-bad
    from: bad
    ops:
      - mine.scale: {}
"""
)


def make_workspace(root: Path, experiment: str = EXPERIMENT) -> Path:
    """Write the workspace; returns the experiment file."""
    return write_workspace(root, experiment, USER_OPS)
