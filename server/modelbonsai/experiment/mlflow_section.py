"""The experiment file's `mlflow:` section: after each run, log its models to MLflow.

```yaml
mlflow:
  tracking_uri: http://127.0.0.1:5000   # default: $MLFLOW_TRACKING_URI, else ./mlruns beside the file
  experiment: digits                    # default: the workspace folder's name
  artifacts: false                      # true: each model's weights (a safetensors export) too
```

`mlflow: {}` (or `mlflow: true`) logs with the defaults. What MLflow answers never fails the run:
an unreachable server is a warning, and `bonsai log-mlflow` logs the stored models later.
"""

from __future__ import annotations

from dataclasses import dataclass

from .problems import Collector
from .yamlnodes import MappingNode, Node, ScalarNode, is_null, to_value, type_name

MLFLOW_KEYS = ("tracking_uri", "experiment", "artifacts")


@dataclass(frozen=True)
class MlflowSpec:
    tracking_uri: str | None = None
    experiment: str | None = None
    artifacts: bool = False


def parse_mlflow(c: Collector, entry: tuple[Node, Node]) -> MlflowSpec | None:
    node = entry[1]
    if is_null(node) or (isinstance(node, ScalarNode) and to_value(node) is True):
        return MlflowSpec()
    if isinstance(node, ScalarNode) and to_value(node) is False:
        return None
    if not isinstance(node, MappingNode):
        c.add(
            node,
            f"'mlflow' is a mapping (tracking_uri, experiment, artifacts) or true, got {type_name(node)}",
            "wrong-type",
        )
        return None
    items = c.mapping_items(node, MLFLOW_KEYS, "mlflow")
    out: dict[str, str | None] = {}
    for key in ("tracking_uri", "experiment"):
        if key in items:
            v = to_value(items[key][1])
            if isinstance(v, str) and v.strip():
                out[key] = v
            else:
                c.add(
                    items[key][1],
                    f"'{key}' is a non-empty string, got {type_name(items[key][1])}",
                    "wrong-type",
                )
    artifacts = False
    if "artifacts" in items:
        v = to_value(items["artifacts"][1])
        if isinstance(v, bool):
            artifacts = v
        else:
            c.add(
                items["artifacts"][1],
                f"'artifacts' is true or false, got {type_name(items['artifacts'][1])}",
                "wrong-type",
            )
    return MlflowSpec(out.get("tracking_uri"), out.get("experiment"), artifacts)
