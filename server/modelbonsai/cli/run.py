"""`bonsai run FILE`: the variants of an experiment file that are not up to date, with a progress bar
per variant."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UserError, err, open_store, print_models, workspace

if TYPE_CHECKING:
    from ..runner import RunEvent
    from ..service import RunPlanned


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    run = sub.add_parser(
        "run", parents=[common], help="run the variants of an experiment file that are not up to date"
    )
    run.add_argument("file", metavar="FILE", help="a *.bonsai.yaml experiment file")
    run.add_argument(
        "--only", nargs="+", metavar="NAME", help="run only these variants (and missing ancestors)"
    )
    run.add_argument(
        "--device",
        metavar="auto|cpu|cuda|mps",
        help="where to run (default: the file's `device`, else auto; cuda:N picks a GPU)",
    )
    run.add_argument(
        "--force", action="store_true", help="re-make the selected variants even when up to date"
    )
    run.add_argument(
        "--max-instances",
        type=int,
        metavar="N",
        help="evaluate on at most N instances where the experiment file's task sets no "
        "max_instances (the file's own wins)",
    )
    run.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow loading pytorch_model.bin (weights_only) when there are no safetensors",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="only check the file and list the variants it makes; nothing is loaded, run or stored",
    )
    run.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from ..experiment import load_experiment

    file = Path(args.file)
    try:
        found = file.is_file()
    except (OSError, ValueError) as e:  # a name too long for the OS, a NUL character
        raise UserError(
            f"{str(file)[:80]}…: not a usable file name ({getattr(e, 'strerror', None) or e})"
        ) from None
    if not found:
        raise UserError(f"{file}: no such experiment file")
    parsed = load_experiment(file)
    for problem in parsed.problems:
        r = problem.range
        print(
            f"{problem.path}:{r.start_line + 1}:{r.start_col + 1}: {problem.severity}: {problem.message}",
            file=sys.stderr,
        )
    if parsed.errors or parsed.experiment is None:
        n = len(parsed.errors)
        err(f"{file}: {n} error{'s' if n != 1 else ''}; nothing was run")
        return EXIT_USAGE
    exp = parsed.experiment
    if args.dry_run:
        for v in exp.variants:
            print(f"{v.name} <- {exp.parent_name(v)}: {', '.join(call.name for call in v.ops)}")
        err(
            f"{file}: {len(exp.variants)} variant{'s' if len(exp.variants) != 1 else ''}, no errors (dry run: "
            "nothing was loaded or run)"
        )
        return EXIT_OK
    from ..device import resolve_device
    from ..ops.registry import Cancelled
    from ..runner import summary
    from ..service import RunJob, handle

    device = args.device or getattr(exp, "device", None) or "auto"
    resolve_device(device)  # a missing device is a usage error before anything is loaded
    own = getattr(getattr(exp, "task", None), "max_instances", None)
    if args.max_instances is not None and own is not None and own != args.max_instances:
        err(f"--max-instances {args.max_instances} ignored: {file.name} sets max_instances: {own}")
    job = RunJob(
        file=str(file),
        folder=str(workspace(args, file)),
        device=device,
        variants=tuple(args.only) if args.only else None,
        force=args.force,
        max_instances=args.max_instances,
        allow_pickle=args.allow_pickle,
    )
    rep = _RunReporter()
    try:
        result = handle(job, rep)  # the language server's run job, here in process
    except Cancelled:
        err("run cancelled")
        return EXIT_FAILED
    finally:
        rep.close()
    with open_store(args, file) as store:
        shown = list(dict.fromkeys(result.models[s].id for s in rep.steps if s in result.models))
        # re-read: a model the run matched by fingerprint now answers to more names
        print_models(store, [store.get_model(mid) for mid in shown], title=f"{file.name}")
    for step, warning in result.warnings.items():
        err(f"warning: {step}: {warning}")  # layers an op skipped (also in `bonsai show`)
    for variant, message in result.failed.items():
        err(f"{variant} failed: {message}")
    for variant, why in result.skipped.items():
        err(f"{variant} skipped ({why})")
    print(summary(result) + (f", {len(result.failed)} failed" if result.failed else ""), file=sys.stderr)
    return EXIT_FAILED if result.failed else EXIT_OK


class _RunReporter:
    """The service's Reporter for `bonsai run`: the plan in words, then a bar per variant. (The
    protocol, not QuietReporter's subclass: `bonsai --help` and `ls` need not import the service.)"""

    def __init__(self) -> None:
        self.display: _RunDisplay | None = None
        self.steps: tuple[str, ...] = ()

    def cancelled(self) -> bool:
        return False  # Ctrl+C stops the process

    def check_cancelled(self) -> None:
        pass

    def lineage_changed(self) -> None:
        pass

    def page(self, data: bytes) -> None:
        pass

    def planned(self, plan: RunPlanned) -> None:
        # What will be made or re-evaluated, and why, before anything starts (models the user
        # did not name among them are said so).
        for line in plan.lines:
            print(f"plan: {line}", file=sys.stderr)
        self.steps = plan.steps
        self.display = _RunDisplay(plan.bars)
        self.display.progress.start()

    def progress(self, fraction: float | None, message: str | None = None) -> None:
        if self.display is not None and fraction is not None:
            self.display.on_progress(fraction, message or "")

    def run_event(self, event: RunEvent) -> None:
        if self.display is not None:
            self.display.on_event(event)

    def close(self) -> None:
        if self.display is not None:
            self.display.progress.stop()


class _RunDisplay:
    """A rich progress bar per variant (on stderr, so stdout stays for tables and JSON)."""

    def __init__(self, bars: Sequence[str]):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.fields[variant]:<24}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.tasks: dict[str, Any] = {}
        for v in bars:
            self.tasks[v] = self.progress.add_task("", total=1.0, variant=v, status="waiting")
        # the whole run, in proportion to its work, with a time estimate once a tenth is done
        self.overall = self.progress.add_task("", total=1.0, variant="(whole run)", status="")
        self.started = time.monotonic()

    def on_progress(self, fraction: float, message: str) -> None:
        from ..eta import remaining_text

        left = remaining_text(time.monotonic() - self.started, fraction)
        self.progress.update(self.overall, completed=fraction, status=left or "")

    def on_event(self, e: Any) -> None:
        task = self.tasks.get(e.variant)
        if task is None:
            return
        if e.kind in ("start", "progress"):
            self.progress.update(task, completed=e.fraction, status=f"{e.model}: {e.message}"[:48])
        elif e.kind == "stored" and "/" not in e.model:
            self.progress.update(task, completed=1.0, status="[green]done")
        elif e.kind == "re-evaluated" and "/" not in e.model:
            self.progress.update(task, completed=1.0, status="[cyan]re-evaluated")
        elif e.kind == "up-to-date":
            self.progress.update(task, completed=1.0, status=f"[dim]{e.message or 'up to date'}"[:48])
        elif e.kind == "failed":
            self.progress.update(task, status="[red]failed")
        elif e.kind == "skipped":
            self.progress.update(task, status="[yellow]skipped")
