"""Seeded mutations of the samples' experiment files, for the fuzz tests of the parser, the editor
features and the CLI (issue 17 item 9).

`cases(n, seed)` gives the same `n` (file, text) pairs on every run: first three cases per
hostile value (alias bombs, recursive aliases, deep nesting, huge numbers, long paths, control
characters, huge sweeps), as a task option, as a base argument and in place of any value of a
sample, then random edits of the kinds a
user makes while typing (and some a user would not), one to three per case.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted(ROOT.glob("samples/*/*.bonsai.yaml"))


def alias_bomb(width: int = 9, depth: int = 7) -> str:
    """A flow list of anchors, each a list of `width` aliases of the one before: width**depth values."""
    out = [f"&b0 [{', '.join(['x'] * width)}]"]
    out += [f"&b{i} [{', '.join([f'*b{i - 1}'] * width)}]" for i in range(1, depth)]
    return "[" + ", ".join(out) + "]"


#: Values that once made the parser hang, recurse or fail with an internal error.
HOSTILE = [
    alias_bomb(),
    "&a [1, *a]",
    "&m {x: *m}",
    "[" * 500 + "]" * 500,
    "{x: " * 300 + "1" + "}" * 300,
    "9" * 5000,
    "a" * 5000,
    "x/" + "y" * 300 + "/z.py:build",
    '"nul\\0byte"',
    '"\\e[31mred"',
    "~no-such-user/x",
    "../../evil",
    "[" + ", ".join(str(i / 20000) for i in range(20000)) + "]",
    "!!python/object/apply:os.system ['echo x']",
    "1e999",
]

#: Small pieces a mutation inserts.
TOKENS = [
    "*a",
    "&a ",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "- ",
    "~",
    "null",
    "true",
    "-1",
    "0",
    "1e-3",
    "'",
    '"',
    "#",
    "\t",
    "\x1b",
    "\x00",
    "\x85",
    "\ufeff",
    "é",
    "😀",
    "  ",
    "\n",
    "\n  ",
    "? ",
    "|",
    ">",
    "---\n",
    "...\n",
    "<<: ",
    "%YAML 1.1\n",
    "{a: b}",
    "[1, 2]",
    "from: base",
    "name: x",
    "ops:",
    "prune.magnitude",
    "base",
    "sparsity: [0.1, 0.2]",
    "{sparsity}",
    "a/b",
    "x.py:Y",
    "os:system",
    "!!binary ",
    "!!set ",
]


def cases(n: int, seed: int = 0) -> Iterator[tuple[Path, str]]:
    """`n` mutated sample files: (the sample's path, the mutated text)."""
    rng = random.Random(seed)
    texts = {p: p.read_text(encoding="utf-8") for p in SAMPLES}
    made = 0
    for i, value in enumerate(HOSTILE):
        for where in ("task", "base.args", "anywhere"):
            if made == n:
                return
            path = SAMPLES[(3 * i + len(where)) % len(SAMPLES)]
            yield path, _place(texts[path], value, where, rng)
            made += 1
    while made < n:
        path = rng.choice(SAMPLES)
        text = texts[path]
        for _ in range(rng.randint(1, 3)):
            text = _mutate(text, rng)
        yield path, text
        made += 1


def _place(text: str, value: str, where: str, rng: random.Random) -> str:
    """`value` as a task option, as a base argument, or in place of any value."""
    lines = text.split("\n")
    if where in ("task", "base.args"):
        section = where.split(".")[0] + ":"
        at = lines.index(section) + 1 if section in lines else 0
        lines.insert(
            at, f"  x_{where.replace('.', '_')}: {value}" if where == "task" else f"  args: {{x: {value}}}"
        )
        return "\n".join(lines)
    return _replace_value(text, value, rng)


def _replace_value(text: str, value: str, rng: random.Random) -> str:
    lines = text.split("\n")
    at = [i for i, line in enumerate(lines) if ": " in line and not line.lstrip().startswith("#")]
    if not at:
        return text
    i = rng.choice(at)
    key = lines[i].partition(": ")[0]
    lines[i] = f"{key}: {value}"
    return "\n".join(lines)


def _mutate(text: str, rng: random.Random) -> str:
    lines = text.split("\n")
    kind = rng.randrange(11)
    pos = rng.randrange(len(text) + 1)
    if kind == 0:  # insert a token
        return text[:pos] + rng.choice(TOKENS) + text[pos:]
    if kind == 1:  # delete a span
        return text[:pos] + text[pos + rng.randint(1, 40) :]
    if kind == 2:  # replace a character with any of the first 592 code points
        return text[:pos] + chr(rng.randrange(0, 0x250)) + text[pos + 1 :]
    if kind == 3:  # duplicate a line
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
        return "\n".join(lines)
    if kind == 4:  # swap two lines
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines)
    if kind == 5:  # re-indent a line
        i = rng.randrange(len(lines))
        lines[i] = " " * rng.randint(0, 8) + lines[i].lstrip()
        return "\n".join(lines)
    if kind == 6:  # replace a value, now and then with a hostile one
        return _replace_value(text, rng.choice(TOKENS + HOSTILE[:6]), rng)
    if kind == 7:  # cut the file short
        return text[:pos]
    if kind == 8:  # anchor a value and alias it elsewhere
        at = [i for i, line in enumerate(lines) if ": " in line]
        if len(at) < 2:
            return text
        i, j = rng.sample(at, 2)
        key, _, value = lines[i].partition(": ")
        lines[i] = f"{key}: &z {value}"
        lines[j] = f"{lines[j].partition(': ')[0]}: *z"
        return "\n".join(lines)
    if kind == 9:  # sweep a parameter
        count = rng.choice([3, 50, 2500])
        return text.replace(
            "sparsity: ", "sparsity: [" + ", ".join(str(i / count) for i in range(count)) + "] #", 1
        )
    # a run of YAML punctuation
    junk = "".join(rng.choice("ab:-[]{}, \n*&!|>'\"#") for _ in range(rng.randint(1, 80)))
    return text[:pos] + junk + text[pos:]
