"""Make the digits sample: data from scikit-learn's bundled digits, and a trained CNN.

Writes (git-ignored, skipped when present unless --force):
  data/train.safetensors, data/eval.safetensors, data/classes.json
  model/model.safetensors

Deterministic: fixed seeds, one thread for training. Takes well under a minute on a laptop CPU.
`BONSAI_SAMPLE_SMALL=1` trains fewer epochs (for the test suite; accuracy is then lower).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from model import build  # noqa: E402

SEED = 0
EVAL_SHARE = 0.25


def make_data(folder: Path) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0  # [N, 1, 8, 8] in 0..1
    # 16x16 gives the convolutions room; bilinear keeps strokes smooth
    images = F.interpolate(images, size=(16, 16), mode="bilinear", align_corners=False)
    images = (images - 0.5) / 0.5
    labels = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SEED))
    n_eval = int(len(labels) * EVAL_SHARE)
    ev, tr = order[:n_eval], order[n_eval:]
    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        {"images": images[ev].contiguous(), "labels": labels[ev].contiguous()},
        str(folder / "eval.safetensors"),
    )
    save_file(
        {"images": images[tr].contiguous(), "labels": labels[tr].contiguous()},
        str(folder / "train.safetensors"),
    )
    (folder / "classes.json").write_text(json.dumps([str(i) for i in range(10)]))
    print(f"data: {len(tr)} training and {len(ev)} evaluation images (16x16) in {folder}")


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random shifts of up to one pixel: cheap, and worth a point of accuracy on 1.3k images."""
    dx, dy = (int(v) for v in torch.randint(-1, 2, (2,), generator=g))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def train(data: Path, out: Path, epochs: int) -> float:
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    tr, ev = load_file(str(data / "train.safetensors")), load_file(str(data / "eval.safetensors"))
    model = build()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps_per_epoch = (len(tr["labels"]) + 63) // 64
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(SEED)
    start = time.perf_counter()
    acc = 0.0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(tr["labels"]), generator=g)
        total = 0.0
        for i in range(0, len(order), 64):
            idx = order[i : i + 64]
            loss = F.cross_entropy(model(augment(tr["images"][idx], g)), tr["labels"][idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        model.eval()
        with torch.no_grad():
            acc = float((model(ev["images"]).argmax(1) == ev["labels"]).float().mean()) * 100
        print(
            f"epoch {epoch + 1}/{epochs}: loss {total / len(order):.3f}, eval accuracy {acc:.1f}% "
            f"({time.perf_counter() - start:.0f}s)",
            flush=True,
        )
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    print(f"model: {sum(p.numel() for p in model.parameters())} parameters -> {out / 'model.safetensors'}")
    return acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--force", action="store_true", help="rebuild even when cached")
    ap.add_argument(
        "--out", type=Path, default=HERE, help="folder for model/ and data/ (default: this sample's)"
    )
    args = ap.parse_args()
    data, model = args.out / "data", args.out / "model"
    small = os.environ.get("BONSAI_SAMPLE_SMALL") == "1"
    if args.force or not (data / "eval.safetensors").exists():
        make_data(data)
    if args.force or not (model / "model.safetensors").exists():
        train(data, model, epochs=3 if small else 20)
    else:
        print(f"digits: cached model in {model} (use --force to retrain)")


if __name__ == "__main__":
    main()
