"""A user op's parameters can be swept (issue 22 item 6): `thr-{threshold}` over
`threshold: [0.02, 0.05]` of an op from `ops_from`, whose schema the parser cannot know (it never
imports user code: the editor may be untrusted, and a run parses before it imports).
"""

from __future__ import annotations

import contextlib
import io
import textwrap
from pathlib import Path

from modelbonsai.cli import main
from modelbonsai.experiment import load_experiment
from modelbonsai.ops.registry import get_op
from support.workspace import experiment_head, write_workspace

# an op name no other test registers: parsing must see it as not loaded
OP = "sweeptest.threshold"

USER_OPS = textwrap.dedent(
    f"""
    import torch
    from modelbonsai.ops.registry import Param, register_op

    @register_op("{OP}", family="test", summary="zero small weights", source="user",
                 params=[Param("threshold", "float", "below this |w| is zero", default=0.01, minimum=0.0),
                         Param("layers", "int_list", "which Linear layers", default=[0])])
    def threshold(cm, params, ctx):
        with torch.no_grad():
            for i in params["layers"]:
                w = cm.module[2 * i].weight
                w.masked_fill_(w.abs() < params["threshold"], 0.0)
        return cm
    """
)

EXPERIMENT = (
    experiment_head("my_ops.py")
    + f"""\
  - name: thr-{{threshold}}
    ops:
      - {OP}: {{threshold: [0.02, 0.05], layers: [0, 1]}}
  - name: both-{{threshold}}
    from: thr-0.05
    ops:
      - {OP}: {{threshold: [0.1]}}
"""
)


def test_the_parser_sweeps_a_user_ops_parameter_that_the_name_names(tmp_path: Path) -> None:
    exp_file = write_workspace(tmp_path, EXPERIMENT, USER_OPS)
    assert get_op(OP) is None  # not loaded: the parser reads the file, never imports it
    parsed = load_experiment(exp_file)
    assert [p.message for p in parsed.problems] == []  # the diagnostics the editor shows
    exp = parsed.experiment
    assert exp is not None
    by_name = {v.name: v for v in exp.variants}
    assert set(by_name) == {"thr-0.02", "thr-0.05", "both-0.1"}
    assert by_name["thr-0.02"].ops[0].params == {"threshold": 0.02, "layers": [0, 1]}  # layers: a value
    assert by_name["thr-0.05"].sweep_values == {"threshold": 0.05}
    assert by_name["both-0.1"].parent == "thr-0.05" and by_name["both-0.1"].ops[0].params == {
        "threshold": 0.1
    }


def test_an_unnamed_placeholder_is_still_reported(tmp_path: Path) -> None:
    text = EXPERIMENT.replace("thr-{threshold}", "thr-{treshold}")
    exp_file = write_workspace(tmp_path, text, USER_OPS)
    messages = [p.message for p in load_experiment(exp_file).problems]
    assert any("'{treshold}' in the name is not a swept parameter" in m for m in messages), messages


def test_bonsai_run_makes_one_model_per_value(tmp_path: Path) -> None:
    exp_file = write_workspace(tmp_path, EXPERIMENT, USER_OPS)
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(["run", str(exp_file), "--device", "cpu"])
    assert code == 0, err.getvalue()
    assert "4 models made" in err.getvalue()  # the base, thr-0.02, thr-0.05, both-0.1
    for name in ("thr-0.02", "thr-0.05", "both-0.1"):
        assert name in out.getvalue()
