"""Keeps the README's experiment-file and op reference in step with the code that defines them.

    python scripts/readme_reference.py          # rewrite the generated sections of README.md
    python scripts/readme_reference.py --check  # exit 1 if they are out of date (a test runs this)

The key table comes from `modelbonsai.experiment.format_reference()` and the op table from the op
registry, so the README never describes an op or key that the code does not have.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from modelbonsai.experiment import format_reference
from modelbonsai.ops.registry import Param, all_ops

README = Path(__file__).resolve().parent.parent / "README.md"


def _param(p: Param) -> str:
    kind = "|".join(p.choices) if p.type == "enum" else p.type
    bounds = f" {p.interval()}" if p.interval() else ""
    default = " required" if p.required else ("" if p.default is None else f" = `{json.dumps(p.default)}`")
    return f"`{p.name}` ({kind}{bounds}){default}".replace("|", "\\|")


def ops_reference() -> str:
    rows = ["| op | what it does | parameters |", "|---|---|---|"]
    for op in all_ops():
        if op.source != "builtin":
            continue
        params = "; ".join(_param(p) for p in op.params) or "—"
        summary = op.summary.replace("|", "\\|")
        rows.append(f"| `{op.name}` | {summary} | {params} |")
    return "\n".join(rows)


def experiment_reference() -> str:
    text = format_reference()
    # The generated text opens with a note for developers; the README keeps just the table on.
    start = text.find("| section |")
    return text[start:].strip() if start >= 0 else text.strip()


SECTIONS = {"experiment-reference": experiment_reference, "ops-reference": ops_reference}


def render(readme: str) -> str:
    for name, make in SECTIONS.items():
        pattern = re.compile(rf"(<!-- BEGIN {name} -->\n).*?(\n<!-- END {name} -->)", re.S)
        if not pattern.search(readme):
            raise SystemExit(f"README.md has no '<!-- BEGIN {name} -->' section")
        body = make()
        readme = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(2), readme)
    return readme


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="fail if README.md is out of date")
    args = ap.parse_args()
    current = README.read_text(encoding="utf-8")
    wanted = render(current)
    if args.check:
        if wanted != current:
            sys.stderr.write(
                "README.md reference sections are out of date: run python scripts/readme_reference.py\n"
            )
            return 1
        return 0
    README.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
