"""`image-classification`: images and labels in safetensors files, scored by accuracy."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
else:  # torch on first use: validating an experiment file's task: needs no torch
    from ..lazy import torch
from safetensors import SafetensorError

from .base import Batch, RenderedInstance, TaskError
from .classification import ClassificationTask
from .common import endless_shuffle, fail, limit, option, resolve_path

KIND = "image-classification"


class _Split:
    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images = images
        self.labels = labels


class ImageClassificationTask(ClassificationTask):
    """Images [N, C, H, W] (float) and labels [N] (int64) from `eval.safetensors` / `train.safetensors`.

    The data folder may hold `classes.json` (a list of class names); without it classes are
    numbered from 0 to the largest label.
    """

    kind = KIND
    options = {  # noqa: RUF012  (class-level option schema; instances hold the values)
        "data": (
            "path",
            "folder with eval.safetensors (and train.safetensors) holding 'images' and 'labels'",
        ),
        "top_k": ("int", "k of the top-k accuracy (default 5)"),
        "thumbnail": ("int", "size in pixels of rendered thumbnails (default 96)"),
    }

    def __init__(
        self,
        options: Mapping[str, Any],
        root: Path,
        *,
        max_instances: int | None = None,
        model_path: Path | None = None,
    ) -> None:
        super().__init__(options, root, max_instances=max_instances, model_path=model_path)
        data = option(KIND, self.options, "data", str, required=True)
        self.folder = resolve_path(KIND, root, data, "data folder")
        if not self.folder.is_dir():
            raise fail(KIND, f"data '{data}' must be a folder holding eval.safetensors, not a file")
        self._names = self._read_classes()
        full = self._read_split("eval", required=True)
        assert full is not None
        self.total_instances = len(full.labels)
        n = limit(len(full.labels), max_instances)
        self._eval = _Split(full.images[:n], full.labels[:n])
        self._train: _Split | None = None
        self._num_classes = len(self._names) if self._names else int(full.labels.max()) + 1
        self._check_labels(self._eval.labels, "eval.safetensors")

    # -- data files -----------------------------------------------------------------------------
    def _read_classes(self) -> list[str] | None:
        path = self.folder / "classes.json"
        if not path.exists():
            return None
        try:
            names = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise fail(KIND, f"{path.name} is not valid JSON: {e.msg}") from None
        if not isinstance(names, list) or not names or not all(isinstance(x, (str, int)) for x in names):
            raise fail(KIND, f"{path.name} must be a non-empty list of class names")
        return [str(x) for x in names]

    def _read_split(self, split: str, *, required: bool) -> _Split | None:
        path = self.folder / f"{split}.safetensors"
        if not path.exists():
            if required:
                raise fail(KIND, f"the data folder {self.folder} has no {split}.safetensors")
            return None
        try:
            from safetensors.torch import load_file  # (imports torch: on first use)

            tensors = load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise fail(KIND, f"cannot read {path.name}: {e}") from None
        missing = [k for k in ("images", "labels") if k not in tensors]
        if missing:
            raise fail(
                KIND,
                f"{path.name} lacks tensor(s) {', '.join(missing)}; expected 'images' "
                f"[N, C, H, W] float and 'labels' [N] int64 (found: {', '.join(sorted(tensors))})",
            )
        images, labels = tensors["images"], tensors["labels"]
        if images.dim() != 4 or not images.is_floating_point():
            raise fail(
                KIND,
                f"{path.name}: 'images' must be a float tensor [N, C, H, W], "
                f"got {str(images.dtype).replace('torch.', '')} {list(images.shape)}",
            )
        if labels.dim() != 1 or labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise fail(
                KIND,
                f"{path.name}: 'labels' must be an integer tensor [N], "
                f"got {str(labels.dtype).replace('torch.', '')} {list(labels.shape)}",
            )
        if len(labels) != len(images):
            raise fail(KIND, f"{path.name}: {len(images)} images but {len(labels)} labels")
        if len(labels) == 0:
            raise fail(KIND, f"{path.name} holds no instances")
        return _Split(images.float(), labels.long())

    def _check_labels(self, labels: torch.Tensor, where: str) -> None:
        if labels.numel() == 0:
            return
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= self._num_classes:
            bad = lo if lo < 0 else hi
            src = "classes.json" if self._names else "the labels"
            raise fail(
                KIND,
                f"{where}: label {bad} is out of range; expected 0..{self._num_classes - 1} "
                f"({self._num_classes} classes from {src})",
            )

    def _training(self) -> _Split:
        if self._train is None:
            train = self._read_split("train", required=False)
            if train is None:
                raise fail(KIND, f"fine-tuning and calibration need {self.folder / 'train.safetensors'}")
            self._check_labels(train.labels, "train.safetensors")
            if train.images.shape[1:] != self._eval.images.shape[1:]:
                raise fail(
                    KIND,
                    f"train images are {list(train.images.shape[1:])}, eval images "
                    f"{list(self._eval.images.shape[1:])}; expected the same [C, H, W]",
                )
            self._train = train
        return self._train

    # -- the contract -------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self._num_classes

    def class_names(self) -> list[str]:
        return self._names or [str(i) for i in range(self._num_classes)]

    def eval_targets(self) -> torch.Tensor:
        return self._eval.labels

    def eval_ids(self) -> list[str]:
        return [str(i) for i in range(len(self._eval.labels))]

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        ids = self.eval_ids()
        for start in range(0, len(ids), batch_size):
            end = start + batch_size
            yield Batch(ids[start:end], self._eval.images[start:end], self._eval.labels[start:end])

    def training_batches(self, batch_size: int, seed: int) -> Iterator[Batch]:
        train = self._training()
        for idx in endless_shuffle(len(train.labels), batch_size, seed):
            yield Batch([f"train/{i}" for i in idx], train.images[idx], train.labels[idx])

    def example_batch(self, batch_size: int) -> Batch:
        n = min(batch_size, len(self._eval.labels))
        return Batch(self.eval_ids()[:n], self._eval.images[:n], self._eval.labels[:n])

    def render(self, instance_id: str) -> RenderedInstance:
        try:
            i = int(instance_id)
            image = self._eval.images[i]
        except (ValueError, IndexError):
            raise TaskError(f"task {KIND}: no instance '{instance_id}' in the evaluation split") from None
        size = option(KIND, self.options, "thumbnail", int, 96)
        label = self.class_names()[int(self._eval.labels[i])]
        return RenderedInstance(id=instance_id, kind="image", label=label, png=to_png(image, size))


def to_png(image: torch.Tensor, size: int) -> bytes:
    """A [C, H, W] float image as PNG, scaled to 0..255 by its own range, upscaled to `size`."""
    from PIL import Image  # on first use: reading the task's options needs no imaging library

    x = image.detach().float().cpu()
    lo, hi = float(x.min()), float(x.max())
    x = (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)
    pixels = (x * 255).round().clamp(0, 255).to(torch.uint8)
    c = pixels.shape[0]
    if c == 1:
        img = Image.fromarray(pixels[0].numpy(), mode="L")
    elif c >= 3:
        img = Image.fromarray(pixels[:3].permute(1, 2, 0).contiguous().numpy(), mode="RGB")
    else:  # two channels: show the first
        img = Image.fromarray(pixels[0].numpy(), mode="L")
    h, w = img.height, img.width
    scale = max(1, size // max(h, w))
    if scale > 1:
        # nearest keeps small images (8x8 digits) crisp instead of blurred
        img = img.resize((w * scale, h * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
