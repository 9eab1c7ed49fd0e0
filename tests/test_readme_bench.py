"""The README's performance section is generated from `make bench`'s table: the generator's form
(markers, header, one row per figure, verdicts) and the README's section, not the timings."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses and typing look the module up by name
    spec.loader.exec_module(mod)
    return mod


gen = _load(ROOT / "scripts" / "readme_bench.py", "readme_bench")
summary = _load(ROOT / "tests" / "bench" / "summary.py", "bench_summary")


def _bench_dir(tmp_path: Path) -> Path:
    """Two benches as `make bench` leaves them: one met and missed a figure each, one crashed."""
    last = {
        "bench": "a",
        "figures": [
            {"name": "p99 (ms)", "value": 12.5, "target": 50, "ok": True},
            {"name": "ratio | floor", "value": 0.41, "target": 0.5, "ok": False},
        ],
    }
    (tmp_path / "bench_a.py.out").write_text("noise\n" + json.dumps(last) + "\n")
    (tmp_path / "bench_a.py.rc").write_text("1\n")
    (tmp_path / "bench_b.py.out").write_text("Traceback ...\n")
    (tmp_path / "bench_b.py.rc").write_text("1\n")
    return tmp_path


def test_summary_saves_the_table_and_the_generator_writes_it(tmp_path: Path) -> None:
    folder = _bench_dir(tmp_path)
    assert summary.main([str(folder)]) == 1  # a miss and a failure
    doc = json.loads((folder / summary.SAVED).read_text())
    assert len(doc["load_average"]) == 3 and doc["cpus"] and doc["failed"] is True
    assert [r[1:] for r in doc["rows"]] == [
        ["p99 (ms)", 12.5, 50, "met"],
        ["ratio | floor", 0.41, 0.5, "MISSED"],
        ["(no JSON last line)", "", "", "FAILED (exit 1)"],
    ]
    text = gen.section(doc)
    lines = text.splitlines()
    assert lines[0] == gen.START and lines[-1] == gen.END
    assert lines[1].startswith("Measured by tests/bench/ (`make bench`) on ") and ": 2 benches, " in lines[1]
    assert "; 1 of 2 figures met their targets" in lines[1]
    assert lines[1].endswith("and a bench failed.")
    assert lines[3:5] == [gen.HEADER, gen.RULE]
    assert lines[5:8] == [
        "| bench_a.py | p99 (ms) | 12.5 | 50 | met |",
        "| bench_a.py | ratio \\| floor | 0.41 | 0.5 | MISSED |",
        "| bench_b.py | (no JSON last line) |  |  | FAILED (exit 1) |",
    ]
    readme = f"# X\n\n## Performance\n\n{gen.START}\nold\n{gen.END}\n\n## Next\n"
    once = gen.replace(readme, text)
    assert gen.problems(once) == []
    assert once.startswith("# X\n\n## Performance\n\n" + gen.START) and once.endswith(
        gen.END + "\n\n## Next\n"
    )
    assert gen.replace(once, text) == once  # regenerating changes nothing


def test_malformed_sections_are_reported() -> None:
    assert gen.problems("no markers") != []
    bad = f"{gen.START}\nMeasured by tests/bench/ (`make bench`) on x\n\n{gen.HEADER}\n{gen.RULE}\n| a | b | c |\n{gen.END}"
    assert any("five cells" in p for p in gen.problems(bad))


def test_the_readme_section_is_well_formed() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "readme_bench.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
