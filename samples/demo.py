"""What `make demo` runs: prepare the three samples, run their experiment files, show the lineage.

For each sample (digits, minilm, charlm): its `prepare.py` (skipped when its model and data are
cached), then `bonsai run <sample>.bonsai.yaml --workspace <sample folder>` (only variants that are
not up to date run), then `bonsai ls`. A sample that fails is reported and the others still run.

    python samples/demo.py [--only digits charlm] [--small] [--device cpu]

`--small` (or BONSAI_SAMPLE_SMALL=1) runs each sample's `small.bonsai.yaml` on a small model in a
separate folder (what the test suite runs).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLES = ("digits", "minilm", "charlm")


def bonsai(*args: str) -> list[str]:
    return [sys.executable, "-m", "modelbonsai", *args]


def step(title: str, cmd: list[str], env: dict[str, str], cwd: Path) -> bool:
    print(f"\n== {title}\n$ {' '.join(Path(c).name if i == 0 else c for i, c in enumerate(cmd))}", flush=True)
    start = time.perf_counter()
    rc = subprocess.call(cmd, env=env, cwd=cwd)
    print(
        f"-- {title}: {'ok' if rc == 0 else f'exit status {rc}'} in {time.perf_counter() - start:.0f}s",
        flush=True,
    )
    return rc == 0


def run_sample(
    name: str, *, small: bool, device: str | None, env: dict[str, str], out_root: Path | None
) -> bool:
    folder = HERE / name
    if out_root is not None:
        out = out_root / name
    else:  # small runs get their own git-ignored folder, so the full-size cache is never replaced
        out = folder / "cache" / "small" if small else folder
    out.mkdir(parents=True, exist_ok=True)
    experiment = folder / ("small.bonsai.yaml" if small else f"{name}.bonsai.yaml")
    if out != folder:
        # the experiment's relative paths (model/, data/, model.py) resolve beside the file
        for extra in ("model.py",):
            if (folder / extra).exists():
                (out / extra).write_bytes((folder / extra).read_bytes())
        target = out / experiment.name
        target.write_text(experiment.read_text(encoding="utf-8"), encoding="utf-8")
        experiment = target
    ok = step(f"{name}: prepare", [sys.executable, str(folder / "prepare.py"), "--out", str(out)], env, out)
    if not ok:
        return False
    run = bonsai("run", str(experiment), "--workspace", str(out))
    if device:
        run += ["--device", device]
    ran = step(f"{name}: bonsai run {experiment.name}", run, env, out)
    step(f"{name}: lineage", bonsai("ls", "--workspace", str(out)), env, out)
    return ran


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=SAMPLES, default=list(SAMPLES))
    ap.add_argument("--small", action="store_true", help="reduced sizes (the test suite's mode)")
    ap.add_argument(
        "--out",
        type=Path,
        help="where small runs keep their models (default: a folder per "
        "sample under samples/<name>/cache/small)",
    )
    ap.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"))
    args = ap.parse_args()
    small = args.small or os.environ.get("BONSAI_SAMPLE_SMALL") == "1"
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if small:
        env["BONSAI_SAMPLE_SMALL"] = "1"
    out_root: Path | None = args.out.resolve() if args.out else None
    start = time.perf_counter()
    failed = [
        n for n in args.only if not run_sample(n, small=small, device=args.device, env=env, out_root=out_root)
    ]
    ran = [n for n in args.only if n not in failed]
    if ran and not small and out_root is None:
        # the numbers the READMEs quote, from the models just made (small runs are not the story)
        step(
            "sample READMEs: generated numbers",
            [sys.executable, str(HERE.parent / "scripts" / "sample_numbers.py"), "--only", *ran],
            env,
            HERE,
        )
    total = time.perf_counter() - start
    print(
        f"\n== demo finished in {total / 60:.1f} min" + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    if not failed:
        print(
            "Open a sample folder (samples/digits, samples/minilm, samples/charlm) in VS Code to explore "
            "its lineage, or run `bonsai ls --workspace samples/<name>`."
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
