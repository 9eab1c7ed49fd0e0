"""Fuzzed experiment files through `bonsai run --dry-run` (issue 17 items 5 and 9): every file is
either checked clean or its problems are listed with their positions, and no Python traceback
reaches stderr without BONSAI_DEBUG. One process runs the CLI's `main` on each file in turn
(starting `bonsai` per file would cost an import of torch each), logging left as the CLI sets it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from support.fuzz import cases

#: The first cases are the hostile values of support/fuzz.py in three places each; then random edits.
FILES = 60

_DRIVER = """
import sys
from modelbonsai.cli import main
for f in sys.argv[1:]:
    print(f"=== {f}", file=sys.stderr, flush=True)
    rc = main(["run", "--dry-run", f])
    print(f"=== rc {rc}", file=sys.stderr, flush=True)
"""


def test_fuzzed_files_through_the_cli_dry_run(tmp_path: Path) -> None:
    files = []
    for i, (sample, text) in enumerate(cases(FILES, seed=5)):
        f = tmp_path / f"case{i:03d}-{sample.parent.name}.bonsai.yaml"
        f.write_text(text, encoding="utf-8")
        files.append(f)
    env = {**os.environ, "BONSAI_DEBUG": "", "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, *map(str, files)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    sections = re.split(r"^=== (?=/)", done.stderr, flags=re.M)[1:]
    assert len(sections) == len(files), done.stderr[-3000:]
    failures = []
    for f, section in zip(files, sections, strict=True):
        rc = int(re.search(r"^=== rc (-?\d+)$", section, re.M).group(1))  # type: ignore[union-attr]
        positioned = re.findall(rf"^{re.escape(str(f))}:\d+:\d+: error: ", section, re.M)
        if "Traceback" in section or "internal error" in section or "could not check" in section:
            failures.append(f"{f.name}: {section[-800:]}")
        elif not ((rc == 0 and "dry run" in section) or (rc == 2 and positioned)):
            failures.append(f"{f.name}: exit {rc} without the check's outcome: {section[-800:]}")
    assert not failures, "\n\n".join(failures[:5])


_BROKEN_CHECKER = """
import sys
from modelbonsai.cli import main
from modelbonsai.experiment import parse

def fail(self, node):
    raise RuntimeError("a bug in the checker")

parse._Parser.run = fail  # an unexpected bug: the file is reported, the log says why
sys.exit(main(["run", sys.argv[1]]))
"""


def test_a_checker_bug_is_one_line_without_bonsai_debug(tmp_path: Path) -> None:
    f = tmp_path / "x.bonsai.yaml"
    f.write_text("base:\n  load: m.py:build\nvariants: []\n")
    for debug in ("", "1"):
        env = {**os.environ, "BONSAI_DEBUG": debug}
        done = subprocess.run(
            [sys.executable, "-c", _BROKEN_CHECKER, str(f)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stderr
        assert (
            f"{f}:1:1: error: Bonsai could not check this file: RuntimeError: a bug in the checker"
            in done.stderr
        )
        assert ("Traceback" in done.stderr) == bool(debug), done.stderr
