"""`text-classification`: a JSONL of {text, label} tokenized by a Hugging Face tokenizer."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
else:  # torch on first use: validating an experiment file's task: needs no torch
    from ..lazy import torch

from .base import Batch, RenderedInstance, TaskError
from .classification import ClassificationTask
from .common import endless_shuffle, fail, limit, option, read_jsonl, resolve_path
from .tokenize import TextTokenizer, resolve_tokenizer

KIND = "text-classification"


class _Rows:
    def __init__(self, ids: list[str], texts: list[str], labels: torch.Tensor, attrs: list[dict[str, str]]):
        self.ids, self.texts, self.labels, self.attrs = ids, texts, labels, attrs


class TextClassificationTask(ClassificationTask):
    """Each JSONL line is `{"text": ..., "label": ...}` (label: class index or class name), plus
    optional `id` and other string attributes, which become groupings in the Behaviors view."""

    kind = KIND
    options = {  # noqa: RUF012  (class-level option schema; instances hold the values)
        "data": ("path", 'evaluation JSONL, one {"text", "label"} object per line'),
        "train": ("path", "training JSONL (for finetune and calibration); default: the evaluation data"),
        "tokenizer": ("path", "tokenizer folder (default: the base model's folder)"),
        "classes": (
            "list[str]",
            "class names in label order (default: classes.json beside the data, or the labels)",
        ),
        "max_length": ("int", "longest input in tokens (default 128)"),
        "top_k": ("int", "k of the top-k accuracy (default 5)"),
    }

    @classmethod
    def trains_on_evaluation(cls, options: Mapping[str, Any]) -> bool:
        return options.get("train") is None  # without `train`, training batches are the evaluation rows

    def __init__(
        self,
        options: Mapping[str, Any],
        root: Path,
        *,
        max_instances: int | None = None,
        model_path: Path | None = None,
    ) -> None:
        super().__init__(options, root, max_instances=max_instances, model_path=model_path)
        self.data_path = resolve_path(
            KIND, root, option(KIND, self.options, "data", str, required=True), "data"
        )
        self.max_length = option(KIND, self.options, "max_length", int, 128)
        raw = read_jsonl(KIND, self.data_path)
        self._names = self._class_names(raw)
        rows = self._rows(raw, self.data_path.name)
        self.total_instances = len(rows.ids)
        n = limit(len(rows.ids), max_instances)
        self._eval = _Rows(rows.ids[:n], rows.texts[:n], rows.labels[:n], rows.attrs[:n])
        self._train: _Rows | None = None
        self._tok: TextTokenizer | None = None

    def _class_names(self, raw: list[dict[str, Any]]) -> list[str]:
        given = option(KIND, self.options, "classes", list)
        if given is not None:
            return [str(c) for c in given]
        beside = self.data_path.parent / "classes.json"
        if beside.exists():
            try:
                names = json.loads(beside.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise fail(KIND, f"{beside.name} is not valid JSON: {e.msg}") from None
            if not isinstance(names, list) or not names:
                raise fail(KIND, f"{beside.name} must be a non-empty list of class names")
            return [str(c) for c in names]
        labels = [r.get("label") for r in raw]
        ints = [x for x in labels if isinstance(x, int) and not isinstance(x, bool)]
        if ints and len(ints) == len(labels):
            return [str(i) for i in range(max(ints) + 1)]
        return sorted({str(x) for x in labels})

    def _rows(self, raw: list[dict[str, Any]], where: str) -> _Rows:
        if not raw:
            raise fail(KIND, f"{where} holds no instances")
        index = {n: i for i, n in enumerate(self._names)}
        ids, texts, labels, attrs = [], [], [], []
        for line, r in enumerate(raw, 1):
            text, label = r.get("text"), r.get("label")
            if not isinstance(text, str):
                raise fail(KIND, f"{where} line {line}: expected a string 'text' field")
            if isinstance(label, bool) or label is None:
                raise fail(KIND, f"{where} line {line}: expected a 'label' (class index or name)")
            if isinstance(label, int):
                if not 0 <= label < len(self._names):
                    raise fail(
                        KIND,
                        f"{where} line {line}: label {label} is out of range; expected "
                        f"0..{len(self._names) - 1} ({len(self._names)} classes)",
                    )
                li = label
            elif str(label) in index:
                li = index[str(label)]
            else:
                raise fail(
                    KIND,
                    f"{where} line {line}: unknown label {label!r}; expected one of {', '.join(self._names)}",
                )
            ids.append(str(r.get("id", line - 1)))
            texts.append(text)
            labels.append(li)
            attrs.append(
                {
                    k: str(v)
                    for k, v in r.items()
                    if k not in ("text", "label", "id") and isinstance(v, (str, int, bool))
                }
            )
        if len(set(ids)) != len(ids):
            raise fail(KIND, f"{where}: instance ids are not unique")
        return _Rows(ids, texts, torch.tensor(labels, dtype=torch.long), attrs)

    @property
    def tokenizer(self) -> TextTokenizer:
        if self._tok is None:
            self._tok = resolve_tokenizer(KIND, self.options, self.root, self.model_path)
        return self._tok

    def _batch(self, rows: _Rows, idx: list[int]) -> Batch:
        enc = self.tokenizer.batch([rows.texts[i] for i in idx], self.max_length)
        return Batch([rows.ids[i] for i in idx], enc, rows.labels[idx])

    # -- the contract -------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self._names)

    def class_names(self) -> list[str]:
        return list(self._names)

    def eval_targets(self) -> torch.Tensor:
        return self._eval.labels

    def eval_ids(self) -> list[str]:
        return list(self._eval.ids)

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        n = len(self._eval.ids)
        for start in range(0, n, batch_size):
            yield self._batch(self._eval, list(range(start, min(n, start + batch_size))))

    def training_batches(self, batch_size: int, seed: int) -> Iterator[Batch]:
        if self._train is None:
            given = option(KIND, self.options, "train", str)
            if given is None:
                self._train = self._eval
            else:
                path = resolve_path(KIND, self.root, given, "train")
                self._train = self._rows(read_jsonl(KIND, path), path.name)
        for idx in endless_shuffle(len(self._train.ids), batch_size, seed):
            yield self._batch(self._train, idx)

    def example_batch(self, batch_size: int) -> Batch:
        return self._batch(self._eval, list(range(min(batch_size, len(self._eval.ids)))))

    def groupings(self) -> dict[str, dict[str, str]]:
        groups = super().groupings()
        keys = sorted({k for a in self._eval.attrs for k in a})
        for key in keys:
            groups[key] = {i: a.get(key, "") for i, a in zip(self._eval.ids, self._eval.attrs, strict=True)}
        return groups

    def render(self, instance_id: str) -> RenderedInstance:
        try:
            i = self._eval.ids.index(instance_id)
        except ValueError:
            raise TaskError(f"task {KIND}: no instance '{instance_id}' in the evaluation split") from None
        return RenderedInstance(
            id=instance_id,
            kind="text",
            label=self._names[int(self._eval.labels[i])],
            text=self._eval.texts[i],
        )
