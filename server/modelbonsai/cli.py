"""`bonsai`: the engine headless. Thin over the engine; all output formatting lives here.

Exit codes: 0 success, 1 a run failed (or an unexpected internal error), 2 a usage or user error
(bad experiment file, unknown model, refused delete). Messages go to stderr; a user's mistake
never shows a traceback (set BONSAI_DEBUG=1 to see one anyway).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# UserError: the CLI's own "a mistake the user can fix" (printed as one line, exit code 2)
from .errors import BonsaiError, UserError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


# -- argument parsing ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--workspace",
        "-w",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="workspace folder holding .bonsai/ (default: the experiment file's folder, else cwd)",
    )
    p = argparse.ArgumentParser(
        prog="bonsai",
        parents=[common],
        description="Bonsai: compress models, record their lineage, compare them.",
    )
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

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

    ls = sub.add_parser("ls", parents=[common], help="list the models in the lineage")
    ls.add_argument("--json", action="store_true", help="machine-readable output")

    show = sub.add_parser("show", parents=[common], help="show one model: lineage, op, parameters, metrics")
    show.add_argument("model", metavar="MODEL", help="model name or id (prefix)")
    show.add_argument("--json", action="store_true", help="machine-readable output")

    rm = sub.add_parser("rm", parents=[common], help="delete a model (refused if it has children)")
    rm.add_argument("model", metavar="MODEL")
    rm.add_argument("--recursive", "-r", action="store_true", help="also delete every model derived from it")

    exp = sub.add_parser(
        "export", parents=[common], help="write a model as a Hugging Face folder or safetensors"
    )
    exp.add_argument("model", metavar="MODEL")
    exp.add_argument("dir", metavar="DIR")
    exp.add_argument("--format", choices=["hf", "safetensors"], default="hf")
    exp.add_argument(
        "--force",
        action="store_true",
        help="export into a folder that holds files: replaces its weight files (and, as hf, its "
        "configs), keeps the others (tokenizer, README)",
    )

    sub.add_parser("ops", parents=[common], help="list the registered compression ops")
    sub.add_parser(
        "serve", parents=[common], help="the language server over stdio (started by the VS Code extension)"
    )

    cmp_ = sub.add_parser("compare", parents=[common], help="compare models with a base model")
    cmp_.add_argument("models", nargs="+", metavar="MODEL", help="the base model first, then the others")
    cmp_.add_argument("--json", action="store_true")
    meas = sub.add_parser(
        "measure",
        parents=[common],
        help="measure the latency of models again, each with its base in turn (the ratio stays fair)",
    )
    meas.add_argument(
        "models", nargs="+", metavar="MODEL", help="model names or ids (their bases are measured too)"
    )
    meas.add_argument(
        "--device", metavar="auto|cpu|cuda|mps", default="auto", help="where to measure (default: auto)"
    )
    meas.add_argument("--json", action="store_true", help="machine-readable output")
    meas.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow loading pytorch_model.bin (weights_only) when there are no safetensors",
    )
    rep = sub.add_parser("report", parents=[common], help="a Markdown report of the lineage and its metrics")
    rep.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help
        return int(e.code or 0)
    if args.version:
        from . import __version__

        print(f"bonsai {__version__}")
        return EXIT_OK
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    handler: Callable[[argparse.Namespace], int] = COMMANDS[args.command]
    from .quiet import quiet_libraries

    quiet_libraries()  # before torch/transformers are imported: their chatter is not Bonsai's output
    if args.command != "serve":  # the server sets up its own log
        _plain_logging()
    if args.command != "serve":  # the server's heavy work happens in its worker process, which does this
        from .allocator import keep_freed_memory

        keep_freed_memory()  # runs and comparisons free and allocate the same memory again: keep it
    try:
        return handler(args)
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        # `bonsai ls | head`: the reader went away; not an error worth a message.
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), sys.stdout.fileno())
        return EXIT_OK
    except Exception as e:
        if _is_user_error(e):
            _err(str(e))
            if _debug():
                traceback.print_exc()
            return EXIT_USAGE
        _err(f"internal error: {type(e).__name__}: {e}")
        if _debug():
            traceback.print_exc()
        else:
            _err("(set BONSAI_DEBUG=1 to see the traceback)")
        return EXIT_FAILED


class _NoTraceback(logging.Formatter):
    """A log record as one line: a logged exception's traceback only under BONSAI_DEBUG (the
    message already says what failed; a user who reports it can set the variable)."""

    def formatException(self, ei: Any) -> str:
        return super().formatException(ei) if _debug() else ""

    def format(self, record: logging.LogRecord) -> str:
        record.exc_text = None  # formatted per handler: another may want the traceback
        return super().format(record).rstrip("\n")


def _plain_logging() -> None:
    """Warnings and errors logged by the engine reach stderr as `bonsai: message` (without a
    handler Python's last resort prints them with their tracebacks)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_NoTraceback("bonsai: %(message)s"))
    handler.setLevel(logging.WARNING)
    root.addHandler(handler)


def _is_user_error(e: BaseException) -> bool:
    # By class (errors.py): every error the user can fix is a BonsaiError that says so.
    return isinstance(e, BonsaiError) and e.user


def _debug() -> bool:
    return os.environ.get("BONSAI_DEBUG", "") not in ("", "0")


def _err(message: str) -> None:
    print(f"bonsai: {message}", file=sys.stderr)


def _workspace(args: argparse.Namespace, file: Path | None = None) -> Path:
    ws = getattr(args, "workspace", None)
    if ws:
        path = Path(ws).expanduser()
        if not path.is_dir():
            raise UserError(f"--workspace {ws}: no such folder")
        return path.resolve()
    if file is not None:
        return file.resolve().parent
    return Path.cwd()


def _open_store(args: argparse.Namespace, file: Path | None = None) -> Any:
    from .store import LineageStore

    return LineageStore.open(_workspace(args, file))


# -- run ----------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from .experiment import load_experiment

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
        _err(f"{file}: {n} error{'s' if n != 1 else ''}; nothing was run")
        return EXIT_USAGE
    exp = parsed.experiment
    if args.dry_run:
        for v in exp.variants:
            print(f"{v.name} <- {exp.parent_name(v)}: {', '.join(call.name for call in v.ops)}")
        _err(
            f"{file}: {len(exp.variants)} variant{'s' if len(exp.variants) != 1 else ''}, no errors (dry run: "
            "nothing was loaded or run)"
        )
        return EXIT_OK
    from .device import resolve_device
    from .runner import Runner, describe_plan, make_plan, summary

    device = args.device or getattr(exp, "device", None) or "auto"
    resolve_device(device)  # a missing device is a usage error before anything is loaded
    with _open_store(args, file) as store:
        plan = make_plan(exp, store, only=args.only, force=args.force, max_instances=args.max_instances)
        own = getattr(getattr(exp, "task", None), "max_instances", None)
        if args.max_instances is not None and own is not None and own != args.max_instances:
            _err(f"--max-instances {args.max_instances} ignored: {file.name} sets max_instances: {own}")
        # What will be made or re-evaluated, and why, before anything starts (models the user
        # did not name among them are said so).
        for line in describe_plan(plan):
            print(f"plan: {line}", file=sys.stderr)
        display = _RunDisplay(plan)
        runner = Runner(
            store,
            device=device,
            events=display.on_event,
            progress=display.on_progress,
            allow_pickle=args.allow_pickle,
        )
        with display:
            result = runner.run(plan)
        shown = {
            result.models[s.name].id: result.models[s.name] for s in plan.steps if s.name in result.models
        }
        # re-read: a model the run matched by fingerprint now answers to more names
        _print_models(store, [store.get_model(mid) for mid in shown], title=f"{file.name}")
        for step, warning in result.warnings.items():
            _err(f"warning: {step}: {warning}")  # layers an op skipped (also in `bonsai show`)
        for variant, message in result.failed.items():
            _err(f"{variant} failed: {message}")
        for variant, why in result.skipped.items():
            _err(f"{variant} skipped ({why})")
        if result.status == "cancelled":
            _err("run cancelled")
            return EXIT_FAILED
        print(summary(result) + (f", {len(result.failed)} failed" if result.failed else ""), file=sys.stderr)
        return EXIT_FAILED if result.failed else EXIT_OK


class _RunDisplay:
    """A rich progress bar per variant (on stderr, so stdout stays for tables and JSON)."""

    def __init__(self, plan: Any):
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
        for v in [plan.steps[0].name, *plan.variants()]:
            self.tasks[v] = self.progress.add_task("", total=1.0, variant=v, status="waiting")
        # the whole run, in proportion to its work, with a time estimate once a tenth is done
        self.overall = self.progress.add_task("", total=1.0, variant="(whole run)", status="")
        self.started = time.monotonic()

    def __enter__(self) -> _RunDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def on_progress(self, fraction: float, message: str) -> None:
        from .eta import remaining_text

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


# -- tables -------------------------------------------------------------------------------------


def format_value(value: float, unit: str) -> str:
    if unit == "B":
        v = float(value)
        for u in ("B", "KiB", "MiB", "GiB"):
            if abs(v) < 1024 or u == "GiB":
                return f"{v:.0f} {u}" if u == "B" else f"{v:.1f} {u}"
            v /= 1024
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "%":
        return f"{value:.1f}%"
    if float(value).is_integer() and abs(value) >= 1:
        return f"{int(value):,}" + (f" {unit}" if unit else "")
    return f"{value:.4g}" + (f" {unit}" if unit else "")


def model_label(name: str, aliases: list[str]) -> str:
    """A model's name in a table, with the other variants that are this same model (their recipe
    matched): `int8 (= twin)`. Intermediate steps' names (`twin/1`) are left to `bonsai show`, and
    more than two variants are counted, so the name column does not crowd out the metrics."""
    finals = [a for a in aliases if "/" not in a]
    if not finals:
        return name
    shown = ", ".join(finals[:2]) + (f", +{len(finals) - 2}" if len(finals) > 2 else "")
    return f"{name} (= {shown})"


def _print_models(store: Any, models: list[Any], *, title: str = "", failed: Sequence[Any] = ()) -> None:
    from rich.console import Console
    from rich.table import Table

    metrics = store.all_metrics()
    names = {m.id: m.name for m in store.list_models()}
    columns: list[str] = []
    for m in models:
        for x in metrics.get(m.id, []):
            if x.headline and x.name not in columns:
                columns.append(x.name)
    table = Table(title=title or None)
    for col in ("id", "model", "parent", "op", "status", *columns):
        table.add_column(col, no_wrap=col in ("id", "model"))
    for m in models:
        by_name = {x.name: x for x in metrics.get(m.id, [])}
        row = [
            m.id,
            model_label(m.name, getattr(m, "aliases", None) or []),
            names.get(m.parent_id or "", "") if m.parent_id else "",
            m.op or "(base)",
            m.status if m.status == "ok" else f"[red]{m.status}",
        ]
        for col in columns:
            x = by_name.get(col)
            # ~: a noisy measurement (its rounds disagreed; `bonsai measure` measures it again)
            row.append(("~" if x.noisy else "") + format_value(x.value, x.unit) if x else "")
        table.add_row(*row)
    for f in failed:  # no model was stored: no id, no metrics
        table.add_row("", f.variant, f.parent or "", f.op or "", "[red]failed", *[""] * len(columns))
    Console(width=max(120, Console().width)).print(table)
    for m in models:
        if m.status != "ok":
            _err(f"{m.name} ({m.id}) is broken: {m.status_reason}")
    for f in failed:
        _err(f"{f.variant} failed in its latest run ({f.experiment_file}): {f.message}")


def cmd_ls(args: argparse.Namespace) -> int:
    from .store.failures import failed_variants

    with _open_store(args) as store:
        models = store.list_models()
        # A variant whose latest run failed is listed (as the editor's Lineage shows it) until a
        # run makes it: its failure is not only in the output of the run that met it.
        failed = failed_variants(store)
        if args.json:
            metrics = store.all_metrics()
            out = [{**m.to_json(), "metrics": [x.to_json() for x in metrics.get(m.id, [])]} for m in models]
            out += [_failed_json(f) for f in failed]
            print(json.dumps(out, indent=2))
            return EXIT_OK
        if not models and not failed:
            _err(f"no models yet in {store.root}; run an experiment with `bonsai run FILE`")
            return EXIT_OK
        _print_models(store, models, failed=failed)
    return EXIT_OK


def _failed_json(f: Any) -> dict[str, Any]:
    """A failed variant in `ls --json`: the keys of a model, no id (nothing was stored)."""
    return {
        "name": f.variant,
        "id": None,
        "parent_id": None,
        "parent": f.parent,
        "op": f.op,
        "params": {},
        "status": "failed",
        "status_reason": f.message,
        "experiment_file": f.experiment_file,
        "variant": f.variant,
        "created": f.finished or f.started,
        "metrics": [],
    }


def cmd_show(args: argparse.Namespace) -> int:
    with _open_store(args) as store:
        m = store.get_model(args.model)
        metrics = store.metrics(m.id)
        children = store.children(m.id)
        parent = store.get_model(m.parent_id) if m.parent_id and _exists(store, m.parent_id) else None
        if args.json:
            print(
                json.dumps(
                    {
                        **m.to_json(),
                        "metrics": [x.to_json() for x in metrics],
                        "children": [c.id for c in children],
                    },
                    indent=2,
                )
            )
            return EXIT_OK
        lines = [
            f"model      {m.name}  ({m.id})",
            *([f"also       {', '.join(m.aliases)}  (same fingerprint: one model)"] if m.aliases else []),
            f"status     {m.status}" + (f": {m.status_reason}" if m.status_reason else ""),
            f"parent     {parent.name + '  (' + parent.id + ')' if parent else '(none: a base model)'}",
        ]
        if m.op:
            lines.append(f"op         {m.op} {json.dumps(m.params, sort_keys=True)}")
        if m.base_spec:
            lines.append(f"loaded     {json.dumps(m.base_spec, sort_keys=True)}")
        if m.experiment_file:
            where = m.experiment_file + (f"  variant {m.variant}, step {m.step + 1}" if m.variant else "")
            lines.append(f"from       {where}")
        lines += [
            f"seed       {m.seed}",
            f"versions   {', '.join(f'{k} {v}' for k, v in sorted(m.versions.items()))}",
            f"artifact   {store.artifact_path(m)}",
            f"created    {_when(m.created)}",
            f"children   {', '.join(c.name for c in children) or '(none)'}",
        ]
        print("\n".join(lines))
        if metrics:
            print("metrics")
            width = max(len(x.name) for x in metrics)
            for x in metrics:
                star = "*" if x.headline else " "
                spread = "" if x.spread is None else f" (spread {format_value(x.spread, x.unit)})"
                print(
                    f"  {star} {x.name:<{width}}  {'~' if x.noisy else ''}{format_value(x.value, x.unit)}{spread}"
                    + (f"   ({x.detail})" if x.detail else "")
                )
    return EXIT_OK


def _exists(store: Any, model_id: str) -> bool:
    try:
        store.get_model(model_id)
    except Exception:
        return False
    return True


def _when(ts: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def cmd_rm(args: argparse.Namespace) -> int:
    with _open_store(args) as store:
        target = store.get_model(args.model)
        below = store.descendants(target.id)
        if below and not args.recursive:
            raise UserError(
                f"model '{target.name}' has {len(below)} derived model(s) ({', '.join(m.name for m in below[:5])}"
                f"{' …' if len(below) > 5 else ''}); use `bonsai rm {args.model} --recursive` to delete them too"
            )
        gone = store.delete_model(target.id, recursive=args.recursive)
        for m in gone:
            print(f"deleted {m.name} ({m.id})", file=sys.stderr)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from .artifacts import export_conflict, export_model

    with _open_store(args) as store:
        m = store.get_model(args.model)
        if m.status != "ok":
            raise UserError(f"model '{m.name}' is broken: {m.status_reason}")
        # Refused before the model is rebuilt: the answer comes at once, and nothing is written.
        conflict = None if args.force else export_conflict(Path(args.dir), args.format)
        if conflict is not None:
            raise UserError(f"{conflict}; add --force to export there anyway")
        cm = load_model(store, m)
        written = export_model(cm, Path(args.dir), format=args.format, force=args.force)
        print(f"exported {m.name} ({m.id}) to {written} ({args.format})", file=sys.stderr)
    return EXIT_OK


def load_model(store: Any, m: Any) -> Any:
    """A stored model as a runnable CompressedModel (base: loaded; others: rebuilt from artifacts)."""
    from .artifacts import load_artifact
    from .load import load_base, load_skeleton
    from .ops.registry import CompressedModel

    root = store.root_of(m)
    if not root.base_spec:
        raise UserError(f"model '{m.name}': its base model is not in the store, so it cannot be rebuilt")
    spec, spec_root = root.base_spec, _spec_root(store, root)
    if m.parent_id is None:
        return CompressedModel(module=load_base(spec, spec_root))
    return load_artifact(store.artifact_path(m), lambda: load_skeleton(spec, spec_root))


def _spec_root(store: Any, root_model: Any) -> Path:
    """Paths in a base spec are relative to the experiment file's folder."""
    if root_model.experiment_file:
        from .store import experiment_path

        return experiment_path(root_model.experiment_file, store.workspace).parent
    return Path(store.workspace)


def cmd_ops(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from .ops.registry import all_ops

    table = Table()
    for col in ("op", "family", "parameters", "summary"):
        table.add_column(col)
    for op in all_ops():
        table.add_row(op.name, op.family, ", ".join(p.name for p in op.params), op.summary)
    Console(width=max(120, Console().width)).print(table)
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from .startpath import leave_start_folder_off_sys_path

    leave_start_folder_off_sys_path()  # first: before anything imports what a workspace could shadow
    from .lsp.server import main as serve_main

    return int(serve_main([]) or 0)


def cmd_compare(args: argparse.Namespace) -> int:
    """Weights (whole-model roll-up) and behaviour (stored evaluation outputs) against a base."""
    from .compare.sources import artifact_source
    from .compare.weights import compare_weights

    if len(args.models) < 2:
        raise UserError("compare needs a base model and at least one other: bonsai compare BASE OTHER...")
    with _open_store(args) as store:
        models = [store.get_model(name) for name in args.models]
        for m in models:
            if m.status != "ok":
                raise UserError(f"model '{m.name}' is broken: {m.status_reason}")
        base, others = models[0], models[1:]
        kept = {m.name: _kept_indices(store.artifact_path(m)) for m in others}
        weights = compare_weights(
            artifact_source(store.artifact_path(base)),
            {m.name: artifact_source(store.artifact_path(m)) for m in others},
            base_id=base.name,
            kept_indices=kept,
        )
        behavior: dict[str, Any] = {}
        # Behaviour needs stored evaluation outputs on both sides, and torch to read them: a
        # comparison of models without them (weights only) never imports torch.
        if _has_outputs(store, base) and any(_has_outputs(store, m) for m in others):
            from .compare.behavior import compare_behavior
            from .runner import load_evaluation

            base_ev = load_evaluation(store, base)
            evs = {m.name: ev for m in others if (ev := load_evaluation(store, m)) is not None}
            behavior = (
                compare_behavior(base_ev, evs, base_id=base.name) if base_ev is not None and evs else {}
            )
        out: dict[str, Any] = {}
        for m in others:
            root = next((n for n in weights[m.name].tree if n.parent is None), None)
            tensors = weights[m.name].tensors
            out[m.name] = {
                "id": m.id,
                "weights": root.to_json() if root is not None else None,
                "behavior": behavior[m.name].summary if m.name in behavior else None,
                # lowrank: tensors compared as the product of their factors (name -> rank)
                "factorised": {t.name: t.factorised for t in tensors if t.factorised is not None},
                # what the roll-up does not cover (never called identical while any is listed)
                "not_compared": [
                    {"name": t.name, "status": t.status, "message": t.message}
                    for t in tensors
                    if t.stats is None
                ],
            }
        if args.json:
            print(
                json.dumps({"base": {"name": base.name, "id": base.id}, "others": out}, indent=2, default=str)
            )
            return EXIT_OK
        _print_comparison(base.name, out)
    return EXIT_OK


#: the per-instance evaluation outputs beside a model's artifact (runner.OUTPUTS_FILE, named here
#: so that looking for them does not import the runner, and torch with it)
OUTPUTS_FILE = "outputs.safetensors"


def _has_outputs(store: Any, m: Any) -> bool:
    return bool((store.artifact_path(m) / OUTPUTS_FILE).is_file())


def _kept_indices(folder: Path) -> dict[str, dict[int, list[int]]]:
    from .artifacts import read_manifest

    raw = read_manifest(folder).get("kept_indices") or {}
    return {name: {int(d): list(idx) for d, idx in dims.items()} for name, dims in raw.items()}


def _print_comparison(base: str, out: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"compared with {base}")
    for col in ("model", "rel. L2", "SQNR dB", "cosine", "sparsity", "agreement", "mean KL", "accuracy Δ"):
        table.add_column(col)

    def num(v: Any, fmt: str = "{:.4g}") -> str:
        return "" if v is None else fmt.format(v)

    for name, r in out.items():
        w = (r["weights"] or {}).get("metrics", {})
        b = r["behavior"] or {}
        agree = b.get("agreement", {})
        delta = b.get("accuracy_delta", {})
        table.add_row(
            name,
            num(w.get("rel_l2")),
            "identical" if w.get("identical") else num(w.get("sqnr_db"), "{:.1f}"),
            num(w.get("cosine"), "{:.5f}"),
            num(w.get("sparsity_other"), "{:.1%}"),
            num(agree.get("value") if isinstance(agree, dict) else agree, "{:.1%}"),
            num(b.get("mean_kl")),
            num(delta.get("value") if isinstance(delta, dict) else None, "{:+.1%}"),
        )
    console = Console(width=max(120, Console().width))
    console.print(table)
    for name, r in out.items():
        factorised = r.get("factorised") or {}
        if factorised:
            ranks = ", ".join(str(k) for k in sorted(set(factorised.values())))
            console.print(
                f"{name}: {len(factorised)} tensor(s) factorised (rank {ranks}), compared as the product "
                f"of their factors: {', '.join(factorised)}",
                highlight=False,
                soft_wrap=True,
            )
        missed = r.get("not_compared") or []
        if missed:
            console.print(
                f"{name}: {len(missed)} tensor(s) not compared (not in the figures above): "
                + "; ".join(f"{t['name']} ({t['message'] or t['status']})" for t in missed),
                highlight=False,
                soft_wrap=True,
            )


def cmd_measure(args: argparse.Namespace) -> int:
    """Latency of the given models and their bases, measured in turn; each joins its model's
    history, and the stored figure is the most trustworthy of that history."""
    from .measure import measure_models

    with _open_store(args) as store:

        def progress(fraction: float, message: str) -> None:
            print(f"{100 * fraction:3.0f}%  {message}", file=sys.stderr)

        results = measure_models(
            store, list(args.models), device=args.device, progress=progress, allow_pickle=args.allow_pickle
        )
        base_of = {r.model.id: r for r in results if r.model.id == r.base}
        rows: list[dict[str, Any]] = []
        for r in results:
            lat, shown = r.latency, r.shown
            base = base_of.get(r.base)
            rows.append(
                {
                    "id": r.model.id,
                    "name": r.model.name,
                    "base": r.base,
                    "measured": {
                        "value": lat.value_s * 1000,
                        "spread": lat.spread_s * 1000,
                        "noisy": lat.noisy,
                        "rounds": len(lat.rounds_s),
                        "calls": lat.calls,
                        "batchSize": lat.batch_size,
                        "device": lat.device,
                        "method": lat.method,
                        "load": lat.load,
                    },
                    "stored": None
                    if shown is None
                    else {
                        "value": shown.value,
                        "spread": shown.spread,
                        "noisy": shown.noisy,
                        "detail": shown.detail,
                    },
                    "ratioToBase": None
                    if base is None or base.latency.value_s <= 0
                    else lat.value_s / base.latency.value_s,
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        m, s = row["measured"], row["stored"]
        line = (
            f"{row['name']:<{width}}  {_latency_text(m['value'], m['spread'], m['noisy'])} "
            f"({m['rounds']} rounds, batch {m['batchSize']}, {m['device']})"
        )
        if row["ratioToBase"] is not None and row["id"] != row["base"]:
            line += f"  {row['ratioToBase']:.2f}x the base"
        if s is not None and abs(s["value"] - m["value"]) > 1e-9:
            line += f"  stored: {_latency_text(s['value'], s['spread'] or 0.0, s['noisy'])} (a more trustworthy one)"
        print(line)
    return EXIT_OK


def _latency_text(value: float, spread: float, noisy: bool) -> str:
    """`3.16 ms (spread 0.05)`: the spread is how far above the figure the rounds' medians reach
    (one-sided: interference only adds time); noisy ones start with `~` (the rounds disagreed
    too much to trust)."""
    return f"{'~' if noisy else ''}{value:.3g} ms (spread {spread:.2g})"


def cmd_report(args: argparse.Namespace) -> int:
    """The lineage as Markdown: every model, its parent and op, and its metrics."""
    with _open_store(args) as store:
        models = store.list_models()
        metrics = store.all_metrics()
        names = {m.id: m.name for m in models}
        cols: list[str] = []
        for m in models:
            for x in metrics.get(m.id, []):
                if x.name not in cols:
                    cols.append(x.name)
        lines = [
            f"# Bonsai report: {store.workspace.name}",
            "",
            f"{len(models)} model(s) in `{store.root}`.",
            "",
            "| model | parent | op | params | status | " + " | ".join(cols) + " |",
            "|" + "---|" * (5 + len(cols)),
        ]
        for m in models:
            by = {x.name: x for x in metrics.get(m.id, [])}
            cells = [
                m.name,
                names.get(m.parent_id or "", ""),
                m.op or "(base)",
                json.dumps(m.params, sort_keys=True) if m.params else "",
                m.status,
            ]
            cells += [format_value(by[c].value, by[c].unit) if c in by else "" for c in cols]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        text = "\n".join(lines) + "\n"
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
            print(f"wrote {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(text)
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "ls": cmd_ls,
    "show": cmd_show,
    "rm": cmd_rm,
    "export": cmd_export,
    "ops": cmd_ops,
    "serve": cmd_serve,
    "compare": cmd_compare,
    "measure": cmd_measure,
    "report": cmd_report,
}

if __name__ == "__main__":
    sys.exit(main())
