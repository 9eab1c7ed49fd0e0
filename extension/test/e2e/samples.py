"""Prepares the small samples for the e2e, each into its own workspace, and works out what the
Behaviors step must find.

    python samples.py prepare OUT   # before VS Code opens them
    python samples.py oracle OUT    # after the e2e ran the digits experiment in VS Code

`prepare`: OUT/digits is samples/digits at its small size (BONSAI_SAMPLE_SMALL=1 prepare.py --out)
with its small.bonsai.yaml, not run (the e2e runs it with "Bonsai: Run Experiment File").
OUT/minilm is samples/minilm small with only the base, the per-layer pruning variant that
includes LayerNorm (`layer-all-0.1`) and the one that excludes it (`layer-nonorm-0.1`, for the
recipe diff) run by the CLI: the other variants are not needed and MiniLM is the slow part on a
loaded machine. `oracle`: OUT/expect.json.

The oracle is computed here from the stored evaluation outputs (predictions and targets per
instance), independently of the comparison engine the panels use: for every digits variant the
per-class accuracy change against the base. The case-study variant is the one whose damage is most
concentrated on one class (the largest gap between its worst class's drop and its overall drop),
and its worst class is the "collapsed" class the Behaviors group table must show.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[3]
SAMPLES = REPO / "samples"
CHARLM_VARIANT = "rtn-tensor-3"  # run.mjs (CHARLM) opens Behaviors for it: 3-bit weights diverge
MINILM_VARIANT = "layer-all-0.1"  # run.mjs (MINILM) opens Layers for it
MINILM_NONORM = "layer-nonorm-0.1"  # its recipe differs from MINILM_VARIANT's by `exclude` only
# The instances each sample is evaluated on: its experiment file's max_instances (written here
# for minilm), which the CLI's run and the panels' comparisons both follow (a file's own limit wins
# over bonsai.maxInstances), so the panels compare what the CLI stored (the oracle's instances).
DIGITS_INSTANCES = 128
MINILM_INSTANCES = 16


def sh(cmd: list[str], cwd: Path, env: dict[str, str]) -> None:
    start = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-3000:] + r.stderr[-3000:])
        raise SystemExit(
            f"samples.py: `{' '.join(cmd[1:])}` failed with exit status {r.returncode} (in {cwd})"
        )
    print(
        f"samples.py: {' '.join(Path(c).name if i < 2 else c for i, c in enumerate(cmd))} ({took:.0f}s)",
        flush=True,
    )


def bonsai(*args: str) -> list[str]:
    return [sys.executable, "-m", "modelbonsai", *args]


def prepare(name: str, out: Path, env: dict[str, str], run: tuple[str, ...] | None = None,
            max_instances: int | None = None) -> Path:
    """The sample's small experiment file (its task's max_instances set to `max_instances` when
    given), model.py and prepared model/data in `out`; with `run`, its variants run by the CLI
    with those extra arguments."""
    src = SAMPLES / name
    out.mkdir(parents=True, exist_ok=True)
    for f in ("small.bonsai.yaml", "model.py"):
        if (src / f).exists():
            shutil.copyfile(src / f, out / f)
    if max_instances is not None:
        exp = out / "small.bonsai.yaml"
        text = exp.read_text(encoding="utf-8")
        limited = re.sub(r"(?m)^(  max_instances:) \d+$", rf"\g<1> {max_instances}", text)
        if limited == text:
            raise SystemExit(f"samples.py: {name}'s small.bonsai.yaml sets no max_instances to change")
        exp.write_text(limited, encoding="utf-8")
    sh([sys.executable, str(src / "prepare.py"), "--out", str(out)], out, env)
    if run is not None:
        sh(bonsai("run", "small.bonsai.yaml", "--workspace", str(out), "--device", "cpu", *run), out, env)
    return out


def per_class(ws: Path, artifact: str) -> tuple[dict[int, float], float]:
    o = load_file(str(ws / ".bonsai" / artifact / "outputs.safetensors"))
    t, p = o["targets"], o["predictions"]
    acc = {int(c): float((p[t == c] == c).float().mean()) for c in t.unique()}
    return acc, float((p == t).float().mean())


def digits_oracle(ws: Path, env: dict[str, str]) -> dict[str, object]:
    models = json.loads(
        subprocess.run(
            bonsai("ls", "--json", "--workspace", str(ws)),
            cwd=ws,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    base = next(m for m in models if m["parent_id"] is None)
    base_cls, base_acc = per_class(ws, base["artifact"])
    rows = []
    for m in models:
        if m is base or m["status"] != "ok" or not m.get("artifact"):
            continue
        cls, acc = per_class(ws, m["artifact"])
        deltas = {c: cls[c] - base_cls[c] for c in base_cls}
        worst = min(deltas.values())
        rows.append(
            {
                "variant": m["name"],
                "overall": acc - base_acc,
                "worst": worst,
                "worstClasses": sorted(str(c) for c, d in deltas.items() if d <= worst + 1e-9),
                "deltas": {str(c): round(d, 4) for c, d in sorted(deltas.items())},
            }
        )
    if not rows:
        raise SystemExit("samples.py: the digits run made no variants to compare")
    pick = max(rows, key=lambda r: (r["overall"] - r["worst"], r["variant"]))
    return {"base": base["name"], "ids": {m["name"]: m["id"] for m in models}, **pick, "all": rows}


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in ("prepare", "oracle"):
        raise SystemExit("usage: samples.py prepare|oracle OUT")
    out = Path(sys.argv[2]).resolve()
    env = {
        **os.environ,
        "BONSAI_SAMPLE_SMALL": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
    }
    if sys.argv[1] == "prepare":
        prepare("digits", out / "digits", env)
        prepare("minilm", out / "minilm", env, ("--only", MINILM_VARIANT, MINILM_NONORM),
                max_instances=MINILM_INSTANCES)
        prepare("charlm", out / "charlm", env, ("--only", CHARLM_VARIANT))
        return
    digits = {**digits_oracle(out / "digits", env), "instances": DIGITS_INSTANCES}
    (out / "expect.json").write_text(json.dumps({"digits": digits}, indent=1))
    print(
        f"samples.py: digits case study {digits['variant']}: worst class {digits['worstClasses']} "
        f"{digits['worst'] * 100:+.1f} points (overall {digits['overall'] * 100:+.1f})",
        flush=True,
    )


if __name__ == "__main__":
    main()
