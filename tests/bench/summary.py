"""One table of every bench figure against its target, from the benches' JSON last lines.

`make bench` saves each bench's stdout as ``<dir>/<bench>.out`` and its exit status as
``<dir>/<bench>.rc``; this reads them (nothing is typed in by hand) and prints one row per
figure that has a target. A bench's last line is one JSON object; figures are found there by
these rules, so a bench names its targets rather than registering them here:

- ``"figures": [{"name", "value", "target", "ok"?, "unit"?}, ...]``: taken as given (and then
  nothing else of that bench: every bench lists its figures so);
- otherwise (an older bench), a key ``target_<x>`` (or ``<x>_target``) beside a key ``<x>``, at any depth: a row ``<x>``;
- ``target_seconds`` beside ``seconds`` (bench_startup's form), likewise.

A bench whose last line is not JSON, or that has no figure with a target, still gets a row with
its exit status. The exit status of this script is 1 when any bench failed or missed. The table
is also saved as ``<dir>/summary.json`` with the time and the load average (the README's
performance section is generated from it: scripts/readme_bench.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

Row = tuple[str, str, Any, Any, str]  # bench, figure, value, target, verdict


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if not line:
            continue
        try:
            value = json.loads(line)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None
    return None


def _pairs(node: Any, path: str, out: list[tuple[str, Any, Any, Any]]) -> None:
    """(figure path, value, target, ok or None) for every figure beside its target."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            _pairs(item, f"{path}[{i}]", out)
        return
    if not isinstance(node, dict):
        return
    ok = node.get("ok") if isinstance(node.get("ok"), bool) else None
    for key, target in node.items():
        if not isinstance(target, (int, float)) or isinstance(target, bool):
            continue
        figure = None
        if key.startswith("target_"):
            figure = key[len("target_") :]
        elif key.endswith("_target"):
            figure = key[: -len("_target")]
        if figure is not None and isinstance(node.get(figure), (int, float)):
            out.append((f"{path}.{figure}".lstrip("."), node[figure], target, ok))
    for key, value in node.items():
        if isinstance(value, (dict, list)) and key != "figures":
            _pairs(value, f"{path}.{key}", out)


def rows(folder: Path) -> tuple[list[Row], bool]:
    table: list[Row] = []
    failed = False
    for out in sorted(folder.glob("*.out")):
        bench = out.name.removesuffix(".out")
        rc_file = out.with_suffix(".rc")
        rc = int(rc_file.read_text().strip() or 1) if rc_file.exists() else None
        failed |= rc not in (0, None)
        status = "ran" if rc is None else ("ok" if rc == 0 else f"FAILED (exit {rc})")
        last = _last_json(out.read_text(errors="replace"))
        found: list[tuple[str, Any, Any, Any]] = []
        if last is not None:
            for f in last.get("figures") or []:
                if isinstance(f, dict) and "name" in f:
                    found.append(
                        (
                            str(f["name"]) + (f" ({f['unit']})" if f.get("unit") else ""),
                            f.get("value"),
                            f.get("target"),
                            f.get("ok"),
                        )
                    )
            if not found:  # a bench that lists its figures is taken at its word
                _pairs(last, "", found)
        if not found:
            table.append((bench, "-" if last is not None else "(no JSON last line)", "", "", status))
        for name, value, target, ok in found:
            verdict = status if ok is None else ("met" if ok else "MISSED")
            table.append((bench, name, value, target, verdict))
    return table, failed


def _show(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


#: what main() saves beside the benches' outputs: the table with the machine's state when it was
#: made (scripts/readme_bench.py writes the README's performance section from it)
SAVED = "summary.json"


def save(folder: Path, table: list[Row], failed: bool) -> dict[str, Any]:
    import datetime
    import os

    doc = {
        "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "failed": failed,
        "rows": [list(r) for r in table],
    }
    (folder / SAVED).write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else Path(".venv/bench")
    table, failed = rows(folder)
    save(folder, table, failed)
    header = ("bench", "figure", "value", "target", "verdict")
    cells = [header] + [tuple(_show(c) for c in r) for r in table]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print()
    for i, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    return 1 if failed or any(r[4] == "MISSED" for r in table) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
