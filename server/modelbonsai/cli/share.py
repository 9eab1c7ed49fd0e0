"""Sharing a lineage: `bonsai import-cc FILE` brings a Compress and Compare lineage (its models.json)
into the store; `bonsai log-mlflow` logs each model as an MLflow run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import EXIT_OK, open_store


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    imp = sub.add_parser(
        "import-cc",
        parents=[common],
        help="import a Compress and Compare lineage (models.json): models with their recipe and "
        "metrics, no weights",
    )
    imp.add_argument("file", metavar="FILE", help="the models.json of a Compress and Compare model server")
    imp.set_defaults(handler=cmd_import_cc)

    ml = sub.add_parser(
        "log-mlflow",
        parents=[common],
        help="log each model as an MLflow run: recipe as params, metrics, parent as a tag",
    )
    ml.add_argument("models", nargs="*", metavar="MODEL", help="only these models (and their ancestors)")
    ml.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="an MLflow server (http://...) or a folder (default: $MLFLOW_TRACKING_URI, else ./mlruns)",
    )
    ml.add_argument(
        "--experiment", metavar="NAME", help="MLflow experiment (default: the workspace folder's name)"
    )
    ml.add_argument(
        "--artifacts",
        action="store_true",
        help="also log each model's weights (a safetensors export) with its run",
    )
    ml.set_defaults(handler=cmd_log_mlflow)


def cmd_import_cc(args: argparse.Namespace) -> int:
    from ..share.cc_import import import_cc_lineage

    file = Path(args.file)
    with open_store(args) as store:
        result = import_cc_lineage(store, file)
        for rec in result.added:
            print(f"imported {rec.name} ({rec.id})", file=sys.stderr)
        n, old = len(result.added), len(result.already)
        print(
            f"{file}: {n} model{'s' if n != 1 else ''} imported into {store.root}"
            + (f", {old} already there" if old else "")
            + " (recipes and metrics; no weights, so weight and activation comparisons do not apply)",
            file=sys.stderr,
        )
    return EXIT_OK


def cmd_log_mlflow(args: argparse.Namespace) -> int:
    from ..service.export import safetensors_writer
    from ..share.mlflow_log import log_lineage

    with open_store(args) as store:
        result = log_lineage(
            store,
            tracking_uri=args.tracking_uri,
            experiment=args.experiment,
            models=list(args.models) or None,
            artifacts=safetensors_writer(store) if args.artifacts else None,
            progress=lambda line: print(line, file=sys.stderr),
        )
    n = len(result.created) + len(result.updated)
    print(
        f"logged {n} model{'s' if n != 1 else ''} to MLflow at {result.tracking_uri} "
        f"(experiment {result.experiment_id}: {len(result.created)} new runs, {len(result.updated)} updated)",
        file=sys.stderr,
    )
    return EXIT_OK
