"""User ops loaded from a Python file: registration with source, errors naming file and line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from modelbonsai.ops import registry
from modelbonsai.ops.registry import CompressedModel, get_op
from modelbonsai.ops.user import UserOpsError, load_user_ops

OPS_FILE = '''
import torch
from modelbonsai.ops.registry import Param, register_op

@register_op("user.scale", family="user", summary="Scale every weight.",
             params=[Param("factor", "float", "Multiplier.", default=VALUE, minimum=0.0)])
def scale(cm, params, ctx):
    """Multiply every parameter by `factor`."""
    with torch.no_grad():
        for p in cm.module.parameters():
            p.mul_(params["factor"])
    return cm
'''


@pytest.fixture
def clean_registry() -> Iterator[None]:
    registry._ensure_builtins()
    before = dict(registry._OPS)
    yield
    registry._OPS.clear()
    registry._OPS.update(before)


def test_load_registers_with_source_and_runs(tmp_path: Path, clean_registry, tiny_cnn, ctx, run_op) -> None:
    f = tmp_path / "my_ops.py"
    f.write_text(OPS_FILE.replace("VALUE", "2.0"))
    assert load_user_ops(f) == ["user.scale"]
    op = get_op("user.scale")
    assert op is not None and op.source == str(f.resolve()) and op.doc.startswith("Multiply")
    w = tiny_cnn.fc1.weight.detach().clone()
    run_op("user.scale", CompressedModel(tiny_cnn), {}, ctx)
    assert torch.equal(tiny_cnn.fc1.weight, 2 * w)
    # editing and reloading the file replaces the op instead of clashing
    f.write_text(OPS_FILE.replace("VALUE", "3.0"))
    load_user_ops(f)
    assert get_op("user.scale").param("factor").default == 3.0  # type: ignore[union-attr]


def test_errors_name_file_and_line(tmp_path: Path, clean_registry) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\ndef broken(:\n")
    with pytest.raises(UserOpsError) as e:
        load_user_ops(bad)
    assert e.value.line == 2 and str(bad.resolve()) in str(e.value) and "SyntaxError" in str(e.value)
    bad.write_text("import torch\n\nraise RuntimeError('boom')\n")
    with pytest.raises(UserOpsError) as e:
        load_user_ops(bad)
    assert e.value.line == 3 and "boom" in str(e.value)
    clash = tmp_path / "clash.py"
    clash.write_text(OPS_FILE.replace('"user.scale"', '"cast"').replace("VALUE", "1.0"))
    with pytest.raises(UserOpsError, match="registered twice") as e:
        load_user_ops(clash)
    assert e.value.line is not None
    assert get_op("cast").source == "builtin"  # type: ignore[union-attr]
    with pytest.raises(UserOpsError, match="no such file"):
        load_user_ops(tmp_path / "missing.py")
