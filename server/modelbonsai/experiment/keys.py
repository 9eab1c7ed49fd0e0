"""Every key of the experiment file format, documented once.

This table drives unknown-key checks, completion of keys, hover on keys, the JSON Schema and the
reference in the README (:func:`format_reference`).

| section | key | type | required | meaning |
|---|---|---|---|---|
| (top) | `seed` | int | no (0) | Seed for every op and evaluation; recorded with each model. |
| (top) | `device` | auto\\|cpu\\|cuda\\|mps | no (auto) | Where ops and evaluation run; `auto` picks CUDA, then MPS, then CPU. `cuda:N` picks one GPU. |
| (top) | `base` | mapping | yes | The base model every variant derives from. |
| (top) | `task` | mapping | no | How models are evaluated (without it only efficiency metrics are measured). |
| (top) | `ops_from` | path or list of paths | no | Python files that register more ops with `@register_op`. |
| (top) | `variants` | list | yes | The compressed models to make, each from a parent. |
| (top) | `scan` | mapping | no | A sensitivity scan of the base model: `settings` (ops) applied to one layer at a time (`bonsai scan FILE`). |
| scan | `settings` | list | yes | Ops, each `- op.name: {param: value}`, applied to one layer (or block) at a time; a list value makes one setting per value. |
| scan | `fidelity` | proxy\\|full\\|both | no (proxy) | `proxy`: each layer's isolated output error on cached base activations; `full`: the headline metric's loss on `max_instances` instances. |
| scan | `granularity` | layer\\|block | no (layer) | One layer at a time, or one block (the layers under a numbered container such as `encoder.layer.3`). |
| scan | `include`, `exclude` | patterns | no | Which weights are scanned (globs over parameter names; default: every weight an op targets). |
| scan | `batches`, `batch_size` | int | no (2, 8) | The proxy's calibration batches. |
| scan | `max_instances` | int | no (64) | The full fidelity's instance subset. |
| (top) | `mlflow` | mapping or true | no | Log each run's models to MLflow (`tracking_uri`, `experiment`, `artifacts`), as `bonsai log-mlflow` does. |
| (top) | `deploy` | list of targets, or mapping | no | Runtimes each model is exported to and measured in (`onnxruntime`, `executorch`): size, latency, parity. |
| base | `name` | string | no (folder/file name) | The base model's name in the lineage. |
| base | `load` | string | yes | A Hugging Face folder, a `.safetensors` file (with `factory`), `file.py:function` or `package.module:function` returning an `nn.Module`. |
| base | `factory` | string | with `.safetensors` | `file.py:function` or `package.module:function` building the empty model the weights load into. |
| base | `args` | mapping | no | Keyword arguments for the `load`/`factory` function. |
| base | `dtype` | float32\\|float16\\|bfloat16 | no (float32) | The precision the base model is loaded in. |
| base | `deploy` | list of targets, or mapping | no (the file's) | Overrides the file's `deploy` for the base model. |
| task | `kind` | string | yes | A built-in task kind or `my_tasks.py:MyTask`. |
| task | `data` | path | depends on the task | The task's data folder or file. |
| task | `max_instances` | int | no | Evaluate on at most this many instances. |
| task | (others) | | | Options of the task kind (completion lists them). |
| variant | `name` | string | yes | The variant's name; unique. May hold `{param}` placeholders for swept parameters. |
| variant | `from` | string | no (base) | The parent: `base`, the base's name, or another variant's name. |
| variant | `ops` | list | yes | Ops applied in order; each `- op.name: {param: value, ...}` or just `- op.name`. |
| variant | `description` | string | no | A note shown with the model. |
| variant | `seed` | int | no | Overrides the file's seed for this variant. |
| variant | `deploy` | list of targets, or mapping | no (the file's) | Overrides the file's `deploy` for this variant's model (`[]`: none). |

Paths are relative to the experiment file's folder.

**Deploy.** `deploy: [onnxruntime, executorch]` (or `deploy: {targets: [...], tolerance: 0.001}`)
exports the base model and every variant's model to each target after it is made, and adds the
target's metrics: `<target>_size` (bytes of the exported file), `<target>_latency` (timed in the
same rounds as the eager latency, one thread), `<target>_speedup` (eager / runtime, same rounds),
`<target>_max_abs_diff` and `<target>_agreement` (the runtime's outputs against the evaluated
model's, on up to 256 evaluation instances). Outputs further apart than `tolerance` (relative to
the largest output, default 0.001) or a top-1 agreement under 99% give the model the
`deploy_parity_flags` metric. A variant's own `deploy:` (and the base's) replaces the file's for its model.

**Scan.** `bonsai scan FILE` (or the Layers panel) measures every scanned layer under every
setting and stores the scan in the lineage (the same scan of the same base is read back). With
`--max-size 300KiB` or `--max-loss 1.0` it solves the best per-layer recipe under that budget (an
exact knapsack over the scan: which layers take which setting, which stay as in the base), and
`--write` appends it to the file as a variant, ready to run.

**MLflow.** `mlflow: {tracking_uri: http://127.0.0.1:5000, experiment: study}` (or `mlflow: true`
for the defaults: `$MLFLOW_TRACKING_URI`, else `mlruns/` beside the file; the workspace folder's
name) logs the models of every run to MLflow after it: each model one run, its recipe as params,
its metrics, its parent as a tag; `artifacts: true` adds its weights. A server that does not
answer is a warning of the run, never its failure (`bonsai log-mlflow` logs them later).

**Sweeps.** A list given for a sweepable parameter (`sparsity: [0.3, 0.5]`) makes one sibling
per value; several swept parameters make their cartesian product (in the order written). For a
parameter whose value is itself a list (include/exclude patterns, integer lists) a list is the
value; a list of lists sweeps it. Each sibling is named by filling the `{param}` placeholders of
the variant's name (`name: "prune-{sparsity}"` gives `prune-0.3`); swept parameters without a
placeholder are appended as `-<param><value>` (`name: prune` gives `prune-sparsity0.3`). When a
parameter's name is already taken as a key (swept by an earlier op of the variant, or inherited
from a swept parent) it is keyed `<op>.<param>`, then `<op>.<param>2`, `<op>.<param>3`, ...
A file expands to at most 2000 variants.
Values are written as in YAML (`0.3`, `8`, `true`), lists joined by `_`, and any character other
than letters, digits, `.`, `_` and `-` becomes `_`.

**Families.** A variant whose `from` names a swept variant (its declared name) is made once per
sibling, inheriting the sibling's swept values: with `prune` swept over `sparsity`,
`{name: int8, from: prune}` gives `int8-sparsity0.3`, `int8-sparsity0.5`, each from the matching
sibling (placeholders may name inherited parameters too: `int8-{sparsity}`). Naming one sibling
(`from: prune-sparsity0.3`) derives from that sibling only.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..deploy.targets import target_names


@dataclass(frozen=True)
class KeyDoc:
    section: str  # "top" | "base" | "task" | "variant"
    key: str
    type: str
    required: str  # "yes" | "no" | a condition
    doc: str
    default: str | None = None

    def markdown(self) -> str:
        where = "" if self.section == "top" else f"{self.section}."
        default = f" (default `{self.default}`)" if self.default is not None else ""
        return f"**{where}{self.key}** — {self.type}{default}\n\n{self.doc}"


DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("float32", "float16", "bfloat16")

KEYS: tuple[KeyDoc, ...] = (
    KeyDoc("top", "seed", "int", "no", "Seed for every op and evaluation; recorded with each model.", "0"),
    KeyDoc(
        "top",
        "device",
        "auto | cpu | cuda | mps",
        "no",
        "Where ops and evaluation run. `auto` picks CUDA, then MPS, then CPU; `cuda:N` picks one GPU.",
        "auto",
    ),
    KeyDoc(
        "top",
        "base",
        "mapping",
        "yes",
        "The base model every variant derives from (`name`, `load`, `factory`).",
    ),
    KeyDoc(
        "top",
        "task",
        "mapping",
        "no",
        "How models are evaluated: `kind` plus the task's options. Without it only efficiency metrics are measured.",
    ),
    KeyDoc(
        "top",
        "ops_from",
        "path or list of paths",
        "no",
        "Python files that register more ops with `@register_op`.",
    ),
    KeyDoc(
        "top",
        "variants",
        "list",
        "yes",
        "The compressed models to make, each derived from a parent by a list of ops.",
    ),
    KeyDoc(
        "top",
        "deploy",
        "list of targets, or mapping",
        "no",
        "Runtimes every model is exported to and measured in after it is made: "
        + ", ".join(f"`{t}`" for t in target_names())
        + ". Adds `<target>_size`, `_latency`, `_speedup`, `_max_abs_diff` and `_agreement`; a "
        "model whose runtime outputs differ beyond `tolerance` (default 0.001, relative) is "
        "flagged (`deploy_parity_flags`). Write a list, or `{targets: [...], tolerance: 0.001}`.",
    ),
    KeyDoc(
        "base",
        "name",
        "string",
        "no",
        "The base model's name in the lineage (default: the folder or file name).",
    ),
    KeyDoc(
        "base",
        "load",
        "string",
        "yes",
        "A Hugging Face folder, a `.safetensors` file (with `factory`), `file.py:function` or "
        "`package.module:function` returning an `nn.Module`. Relative to the experiment file.",
    ),
    KeyDoc(
        "base",
        "factory",
        "string",
        "with a .safetensors file",
        "`file.py:function` or `package.module:function` building the empty model the weights are loaded into.",
    ),
    KeyDoc("base", "args", "mapping", "no", "Keyword arguments passed to the `load` or `factory` function."),
    KeyDoc(
        "base",
        "dtype",
        "float32 | float16 | bfloat16",
        "no",
        "The precision the base model is loaded in.",
        "float32",
    ),
    KeyDoc(
        "base",
        "deploy",
        "list of targets, or mapping",
        "no",
        "Overrides the file's `deploy` for the base model: the targets it is exported to and measured in.",
    ),
    KeyDoc(
        "task",
        "kind",
        "string",
        "yes",
        "A built-in task kind, or `my_tasks.py:MyTask` for your own Task class.",
    ),
    KeyDoc(
        "task",
        "data",
        "path",
        "depends on the task",
        "The task's data folder or file, relative to the experiment file.",
    ),
    KeyDoc(
        "task",
        "max_instances",
        "int",
        "no",
        "Evaluate on at most this many instances (faster runs while exploring).",
    ),
    KeyDoc(
        "variant",
        "name",
        "string",
        "yes",
        "The variant's unique name. With swept parameters it may hold `{param}` placeholders, e.g. `prune-{sparsity}`.",
    ),
    KeyDoc(
        "variant",
        "from",
        "string",
        "no",
        "The parent: `base` (or the base model's name) or another variant's name. A swept variant's "
        "declared name makes this variant once per sibling.",
        "base",
    ),
    KeyDoc(
        "variant",
        "ops",
        "list",
        "yes",
        "Ops applied in order, each `- op.name: {param: value}` or just `- op.name`. A list for a "
        "parameter sweeps it.",
    ),
    KeyDoc("variant", "description", "string", "no", "A note shown with the model."),
    KeyDoc("variant", "seed", "int", "no", "Overrides the file's `seed` for this variant."),
    KeyDoc(
        "top",
        "scan",
        "mapping",
        "no",
        "A sensitivity scan of the base model (`bonsai scan FILE`): each of `settings` applied to one "
        "layer at a time, measured by a fast proxy and/or a full evaluation; a budget then picks the "
        "best per-layer recipe.",
    ),
    KeyDoc(
        "scan",
        "settings",
        "list",
        "yes",
        "Ops applied to one layer (or block) at a time, each `- op.name: {param: value}`; a list value makes one setting per value.",
    ),
    KeyDoc(
        "scan",
        "fidelity",
        "proxy | full | both",
        "no",
        "`proxy`: each layer's isolated output error on cached base activations (fast); `full`: the headline metric's loss on `max_instances` instances.",
        "proxy",
    ),
    KeyDoc(
        "scan",
        "granularity",
        "layer | block",
        "no",
        "One layer at a time, or one block (the layers under a numbered container such as `encoder.layer.3`).",
        "layer",
    ),
    KeyDoc(
        "scan",
        "include",
        "patterns",
        "no",
        "Globs over parameter names: the weights to scan (default: every weight an op targets).",
    ),
    KeyDoc("scan", "exclude", "patterns", "no", "Globs over parameter names left out of the scan."),
    KeyDoc("scan", "batches", "int", "no", "The proxy's calibration batches.", "2"),
    KeyDoc("scan", "batch_size", "int", "no", "The proxy's calibration batch size.", "8"),
    KeyDoc("scan", "max_instances", "int", "no", "The full fidelity's instance subset.", "64"),
    KeyDoc(
        "top",
        "mlflow",
        "mapping or true",
        "no",
        "Log the models of every run to MLflow afterwards: `tracking_uri` (default `$MLFLOW_TRACKING_URI`, "
        "else `mlruns/` beside the file), `experiment` (default: the workspace folder's name), `artifacts` "
        "(true: their weights too). An unreachable server is a warning, never a failed run.",
    ),
    KeyDoc("mlflow", "tracking_uri", "string", "no", "An MLflow server (`http://...`) or a folder."),
    KeyDoc(
        "mlflow",
        "experiment",
        "string",
        "no",
        "The MLflow experiment's name (default: the workspace folder's).",
    ),
    KeyDoc(
        "mlflow",
        "artifacts",
        "bool",
        "no",
        "Log each model's weights (a safetensors export) with its run.",
        "false",
    ),
    KeyDoc(
        "variant",
        "deploy",
        "list of targets, or mapping",
        "no",
        "Overrides the file's `deploy` for this variant's model: other targets, or `[]` for none.",
    ),
)

DEPLOY_KEYS = ("targets", "tolerance")


def keys_of(section: str) -> dict[str, KeyDoc]:
    return {k.key: k for k in KEYS if k.section == section}


def key_doc(section: str, key: str) -> KeyDoc | None:
    return keys_of(section).get(key)


def format_reference() -> str:
    """The format's reference as Markdown (this module's docstring): for the README and hover."""
    return (__doc__ or "").split("\n\n", 1)[1].strip()
