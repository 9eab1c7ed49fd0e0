"""Validating an experiment file with a `task:` imports neither torch nor PIL: the task classes
(their kinds, options, docs, whether they train on the evaluation rows) are read without it, so a
language server's first lineage reply does not pay torch's import for such a file."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from modelbonsai.experiment import taskinfo
from modelbonsai.tasks import TASKS

EXPERIMENT = textwrap.dedent(
    """
    base:
      name: toy
      load: model
    task:
      kind: sentence-embedding
      data: sentences.jsonl
      tokenizer: model
      max_instances: 8
    variants:
      - name: prune-50
        ops:
          - prune.magnitude: {sparsity: 0.5}
      - name: kd
        ops:
          - finetune: {steps: 2, distill: 1.0}
    """
)

PROBE = """
import json, sys
from modelbonsai.experiment import load_experiment, taskinfo
parsed = load_experiment(sys.argv[1])
print(json.dumps({
    "problems": [p.message for p in parsed.problems],
    "kinds": list(taskinfo.builtin_kinds()),
    "options": {k: taskinfo.task_options(k) for k in taskinfo.builtin_kinds()},
    "trains": {k: taskinfo.trains_on_evaluation(k, {}) for k in taskinfo.builtin_kinds()},
    "docs": {k: taskinfo.task_doc(k) for k in taskinfo.builtin_kinds()},
    "imported": sorted(m for m in ("torch", "PIL", "transformers") if m in sys.modules),
}))
"""


def test_a_task_file_is_validated_without_torch(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "sentences.jsonl").write_text('{"text": "a"}\n')
    f = tmp_path / "exp.bonsai.yaml"
    f.write_text(EXPERIMENT)
    r = subprocess.run([sys.executable, "-c", PROBE, str(f)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["imported"] == []
    # the same answers as the classes give with torch imported (this process has it)
    assert got["kinds"] == list(TASKS)
    assert got["options"] == {
        k: {name: list(spec) for name, spec in (taskinfo.task_options(k) or {}).items()} for k in TASKS
    }
    assert got["trains"] == {k: TASKS[k].trains_on_evaluation({}) for k in TASKS}
    assert got["docs"] == {k: (TASKS[k].__doc__ or "").strip() for k in TASKS}
    # distillation without `train` trains on the evaluation rows: the rule still runs, torch-free
    assert got["trains"]["sentence-embedding"] is True
    assert any("evaluation" in p for p in got["problems"]), got["problems"]
