"""Make the charlm sample: a character-level GPT-2 trained on the Python standard library's source.

Writes (git-ignored, skipped when present unless --force):
  data/corpus.txt         source of a fixed list of standard-library modules (every Python has it)
  model/                  a Hugging Face folder: config.json, model.safetensors, char_vocab.json

The model is transformers' GPT2LMHeadModel, ~0.6M parameters, trained from scratch for a fixed
number of steps with fixed seeds on one thread, so the same Python gives the same model. About
three minutes on a laptop CPU; `BONSAI_SAMPLE_SMALL=1` trains a much smaller, shorter model (tests).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import math
import os
import shutil
import time
from pathlib import Path

import torch

from modelbonsai.tasks.tokenize import CharTokenizer

HERE = Path(__file__).resolve().parent
SEED = 0
MODULES = (
    "textwrap",
    "string",
    "bisect",
    "heapq",
    "fnmatch",
    "glob",
    "shlex",
    "colorsys",
    "calendar",
    "queue",
    "abc",
    "copy",
    "keyword",
    "netrc",
    "numbers",
    "operator",
    "random",
    "sched",
    "statistics",
    "contextlib",
    "dataclasses",
    "functools",
    "fractions",
    "difflib",
    "base64",
    "csv",
    "getopt",
)


def make_corpus(path: Path, limit_chars: int) -> str:
    parts = []
    for name in MODULES:
        try:
            src = inspect.getsourcefile(importlib.import_module(name))
        except (ImportError, TypeError):
            continue
        if src and Path(src).is_file():
            parts.append(Path(src).read_text(encoding="utf-8", errors="replace"))
    # keep ASCII only (the vocabulary stays small) and tabs as spaces
    text = "\n".join(parts).replace("\t", "    ")
    text = "".join(c for c in text if c == "\n" or 32 <= ord(c) < 127)[:limit_chars]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"data: {len(text):,} characters of standard-library source -> {path}")
    return text


def train(text: str, out: Path, *, small: bool) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    tok = CharTokenizer.build(text)
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    train_ids = ids[: int(len(ids) * 0.9)]  # the task holds out the last 10% for evaluation
    ctx = 64
    config = GPT2Config(
        vocab_size=tok.vocab_size,
        n_positions=128,
        n_embd=64 if small else 128,
        n_layer=2 if small else 3,
        n_head=4,
        n_inner=None,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    model = GPT2LMHeadModel(config)
    # the causal-lm task's held-out perplexity: 6.23 (1.83 nats/char) after 600 steps of 24, 4.85
    # (1.58) after 1000 steps of 32 at a higher peak lr; in trials, longer schedules or a narrower
    # model trained longer gained little more for the time
    steps, batch, lr = (60, 16, 3e-3) if small else (1000, 32, 5e-3)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(SEED)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: GPT-2, {n_params:,} parameters, vocabulary {tok.vocab_size} characters, {steps} steps")
    start, avg = time.perf_counter(), math.nan
    model.train()
    for step in range(1, steps + 1):
        offsets = torch.randint(0, len(train_ids) - ctx - 1, (batch,), generator=g)
        chunk = torch.stack([train_ids[o : o + ctx + 1] for o in offsets.tolist()])
        loss = _loss(model, chunk)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        avg = loss.item() if math.isnan(avg) else 0.95 * avg + 0.05 * loss.item()
        if step % 50 == 0 or step == steps:
            print(
                f"step {step}/{steps}: loss {avg:.3f} nats/char ({time.perf_counter() - start:.0f}s)",
                flush=True,
            )
    model.eval()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tok.save(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"model: saved to {out}")


def _loss(model: torch.nn.Module, chunk: torch.Tensor) -> torch.Tensor:
    logits = model(chunk[:, :-1]).logits
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), chunk[:, 1:].flatten())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--force", action="store_true", help="rebuild even when cached")
    ap.add_argument(
        "--out", type=Path, default=HERE, help="folder for model/ and data/ (default: this sample's)"
    )
    args = ap.parse_args()
    small = os.environ.get("BONSAI_SAMPLE_SMALL") == "1"
    corpus, model = args.out / "data" / "corpus.txt", args.out / "model"
    if args.force or not corpus.exists():
        text = make_corpus(corpus, 60_000 if small else 600_000)
    else:
        text = corpus.read_text(encoding="utf-8")
    if args.force or not (model / "model.safetensors").exists():
        train(text, model, small=small)
    else:
        print(f"charlm: cached model in {model} (use --force to retrain)")


if __name__ == "__main__":
    main()
