"""`bonsai export MODEL DIR`: a stored model written where other tools load it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import EXIT_OK, UserError, open_store, workspace


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    exp = sub.add_parser(
        "export",
        parents=[common],
        help="write a model as a Hugging Face folder, safetensors, ONNX (model.onnx, for ONNX Runtime) "
        "or an ExecuTorch program (model.pte)",
    )
    exp.add_argument("model", metavar="MODEL")
    exp.add_argument("dir", metavar="DIR")
    exp.add_argument("--format", choices=["hf", "safetensors", "onnx", "executorch"], default="hf")
    exp.add_argument(
        "--force",
        action="store_true",
        help="export into a folder that holds files: replaces its weight files (and, as hf, its "
        "configs), keeps the others (tokenizer, README)",
    )
    exp.add_argument(
        "--dequantize",
        action="store_true",
        help="hf: write quantized weights as the float values the model runs on (full size), for "
        "layers compressed-tensors cannot hold (GPT-2's Conv1D, convolutions, look-up tables)",
    )
    exp.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from ..artifacts import export_conflict
    from ..service import ExportJob, QuietReporter, handle

    with open_store(args) as store:
        m = store.get_model(args.model)
    # Refused before the job, with the flag that overrides it: the answer comes at once (the
    # runtime formats check their one file in the job itself).
    runtime = args.format in ("onnx", "executorch")
    conflict = None if args.force or runtime else export_conflict(Path(args.dir), args.format)
    if conflict is not None:
        raise UserError(f"{conflict}; add --force to export there anyway")
    job = ExportJob(
        folder=str(workspace(args)),
        model=m.id,
        dir=args.dir,
        format=args.format,
        force=args.force,
        dequantize=args.dequantize,
    )
    rep = QuietReporter()
    written = handle(job, rep)  # the language server's export job, here in process
    print(f"exported {m.name} ({m.id}) to {written} ({args.format})", file=sys.stderr)
    if runtime:  # the runtime's check of the export: the job's messages before its last
        for line in rep.messages[1:-1]:
            print(f"  {line}", file=sys.stderr)
    return EXIT_OK
