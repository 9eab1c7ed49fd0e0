"""Classification tasks: metrics on hand-made predictions, data validation, rendering."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from modelbonsai.tasks import Evaluation, ImageClassificationTask, TaskError, TextClassificationTask
from modelbonsai.tasks.classification import classification_metrics
from modelbonsai.tasks.tokenize import CharTokenizer


def by_name(metrics: list) -> dict:  # type: ignore[type-arg]
    return {m.name: m.value for m in metrics}


def test_classification_metrics_exact() -> None:
    probs = torch.tensor(
        [
            [0.7, 0.2, 0.1],  # true 0, pred 0
            [0.1, 0.6, 0.3],  # true 2, pred 1 (2 is second)
            [0.2, 0.3, 0.5],  # true 2, pred 2
            [0.5, 0.1, 0.4],  # true 1, pred 0 (1 is last)
        ]
    )
    targets = torch.tensor([0, 2, 2, 1])
    ref = Evaluation(metrics=[], ids=[], outputs=probs, predictions=torch.tensor([0, 1, 1, 1]))
    m = by_name(classification_metrics(probs, targets, ["a", "b", "c"], top_k=2, reference=ref))
    assert m["accuracy"] == 50.0
    assert m["top2_accuracy"] == 75.0
    assert m["class_accuracy/a"] == 100.0
    assert m["class_accuracy/b"] == 0.0
    assert m["class_accuracy/c"] == 50.0
    assert m["agreement"] == 50.0  # predictions 0,1,2,0 vs 0,1,1,1
    assert m["cross_entropy"] == pytest.approx(
        -(math.log(0.7) + math.log(0.3) + math.log(0.5) + math.log(0.1)) / 4
    )
    own = by_name(classification_metrics(probs, targets, ["a", "b", "c"]))
    assert own["agreement"] == 100.0  # the base model is its own reference
    assert "top3_accuracy" in own  # top_k is capped at the number of classes


class Passthrough(nn.Module):
    """Returns the image's pixels as logits: images hold hand-made logits."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) + self.dummy


def write_images(folder: Path, logits: torch.Tensor, labels: torch.Tensor, split: str = "eval") -> None:
    save_file(
        {"images": logits.reshape(len(logits), 1, 1, -1).float().contiguous(), "labels": labels},
        str(folder / f"{split}.safetensors"),
    )


def test_image_task_evaluates_hand_made_logits(tmp_path: Path) -> None:
    logits = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0], [5.0, 0, 0], [0, 5.0, 0]])
    labels = torch.tensor([0, 1, 2, 1, 1])
    write_images(tmp_path, logits, labels)
    (tmp_path / "classes.json").write_text(json.dumps(["zero", "one", "two"]))
    task = ImageClassificationTask({"data": "."}, tmp_path)
    ev = task.evaluate(Passthrough(), torch.device("cpu"))
    m = by_name(ev.metrics)
    assert m["accuracy"] == 80.0
    assert m["class_accuracy/one"] == pytest.approx(200 / 3)
    assert m["class_accuracy/zero"] == 100.0
    assert ev.ids == ["0", "1", "2", "3", "4"]
    assert ev.predictions is not None and ev.predictions.tolist() == [0, 1, 2, 0, 1]
    assert torch.allclose(ev.outputs.sum(dim=1), torch.ones(5))
    assert ev.extras["confusion"][1] == [1, 2, 0]  # a "one" seen as "zero" once
    assert task.groupings()["label"]["3"] == "one"
    assert task.class_names() == ["zero", "one", "two"]
    limited = ImageClassificationTask({"data": "."}, tmp_path, max_instances=2)
    assert limited.evaluate(Passthrough(), torch.device("cpu")).ids == ["0", "1"]


def test_image_render_is_a_png_with_label(tmp_path: Path) -> None:
    save_file(
        {"images": torch.rand(2, 1, 8, 8), "labels": torch.tensor([0, 1])}, str(tmp_path / "eval.safetensors")
    )
    r = ImageClassificationTask({"data": "."}, tmp_path).render("1")
    assert r.kind == "image" and r.label == "1" and r.png is not None
    img = Image.open(io.BytesIO(r.png))
    assert img.size == (96, 96)  # 8x8 upscaled by 12 (nearest)
    with pytest.raises(TaskError, match="no instance '9'"):
        ImageClassificationTask({"data": "."}, tmp_path).render("9")


def test_image_training_batches_are_seeded(tmp_path: Path) -> None:
    write_images(tmp_path, torch.rand(4, 3), torch.tensor([0, 1, 2, 0]))
    write_images(tmp_path, torch.rand(10, 3), torch.arange(10) % 3, split="train")
    task = ImageClassificationTask({"data": "."}, tmp_path)
    a = [b.ids for _, b in zip(range(3), task.training_batches(4, seed=1), strict=False)]
    b = [b.ids for _, b in zip(range(3), task.training_batches(4, seed=1), strict=False)]
    assert a == b and all(len(x) == 4 for x in a)
    loss = task.loss(Passthrough(), next(task.training_batches(4, seed=0)))
    assert loss.requires_grad


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ({"images": torch.rand(3, 8, 8), "labels": torch.zeros(3, dtype=torch.int64)}, r"\[N, C, H, W\]"),
        (
            {"images": torch.rand(3, 1, 8, 8), "labels": torch.zeros(2, dtype=torch.int64)},
            "3 images but 2 labels",
        ),
        ({"images": torch.rand(3, 1, 8, 8)}, "lacks tensor"),
        ({"images": torch.rand(3, 1, 8, 8), "labels": torch.zeros(3)}, "integer tensor"),
        ({"images": torch.rand(2, 1, 8, 8), "labels": torch.tensor([0, -1])}, "label -1 is out of range"),
    ],
)
def test_image_data_errors(tmp_path: Path, tensors: dict, message: str) -> None:  # type: ignore[type-arg]
    save_file(tensors, str(tmp_path / "eval.safetensors"))
    with pytest.raises(TaskError, match=message) as e:
        ImageClassificationTask({"data": "."}, tmp_path)
    assert "image-classification" in str(e.value)


def test_labels_beyond_classes_json(tmp_path: Path) -> None:
    write_images(tmp_path, torch.rand(2, 3), torch.tensor([0, 3]))
    (tmp_path / "classes.json").write_text(json.dumps(["a", "b", "c"]))
    with pytest.raises(
        TaskError, match=r"label 3 is out of range; expected 0..2 \(3 classes from classes.json\)"
    ):
        ImageClassificationTask({"data": "."}, tmp_path)


def test_missing_data_and_wrong_model_output(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="needs option 'data'"):
        ImageClassificationTask({}, tmp_path)
    with pytest.raises(TaskError, match="does not exist"):
        ImageClassificationTask({"data": "nowhere"}, tmp_path)
    with pytest.raises(TaskError, match=r"no eval\.safetensors"):
        ImageClassificationTask({"data": "."}, tmp_path)
    write_images(tmp_path, torch.rand(2, 2), torch.tensor([0, 2]))
    task = ImageClassificationTask({"data": "."}, tmp_path)
    with pytest.raises(TaskError, match=r"expected \[batch, 3\] class scores"):
        task.evaluate(Passthrough(), torch.device("cpu"))


class FirstCharModel(nn.Module):
    """Logits from the first token of the text: 'x...' -> class 0, 'y...' -> class 1, else class 2."""

    def __init__(self, tok: CharTokenizer):
        super().__init__()
        table = torch.full((tok.vocab_size, 3), 0.0)
        table[tok.encode("x")[0]] = torch.tensor([4.0, 0, 0])
        table[tok.encode("y")[0]] = torch.tensor([0, 4.0, 0])
        table[tok.encode("z")[0]] = torch.tensor([0, 0, 4.0])
        self.table = nn.Parameter(table)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.table[input_ids[:, 0]]}


def test_text_task_exact(tmp_path: Path) -> None:
    rows = [
        {"text": "xa", "label": "pos", "source": "web"},
        {"text": "yb", "label": "neg", "source": "web"},
        {"text": "zc", "label": "neutral", "source": "book"},
        {"text": "xd", "label": "neg", "source": "book"},
    ]
    (tmp_path / "eval.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    tok = CharTokenizer.build("abcdxyz")
    tok.save(tmp_path)
    task = TextClassificationTask(
        {"data": "eval.jsonl", "tokenizer": ".", "classes": ["pos", "neg", "neutral"]}, tmp_path
    )
    ev = task.evaluate(FirstCharModel(tok), torch.device("cpu"))
    m = by_name(ev.metrics)
    assert m["accuracy"] == 75.0
    assert m["class_accuracy/neg"] == 50.0
    assert ev.predictions is not None and ev.predictions.tolist() == [0, 1, 2, 0]
    assert task.groupings()["source"] == {"0": "web", "1": "web", "2": "book", "3": "book"}
    r = task.render("2")
    assert r.kind == "text" and r.text == "zc" and r.label == "neutral"


def test_text_task_errors(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "x", "label": 5}) + "\n")
    with pytest.raises(TaskError, match="label 5 is out of range"):
        TextClassificationTask({"data": "a.jsonl", "classes": ["p", "n"]}, tmp_path)
    (tmp_path / "b.jsonl").write_text(json.dumps({"txt": "x", "label": 0}) + "\n")
    with pytest.raises(TaskError, match="line 1: expected a string 'text'"):
        TextClassificationTask({"data": "b.jsonl"}, tmp_path)
    (tmp_path / "c.jsonl").write_text("{not json\n")
    with pytest.raises(TaskError, match="line 1 is not valid JSON"):
        TextClassificationTask({"data": "c.jsonl"}, tmp_path)
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": "x", "label": 0}) + "\n")
    task = TextClassificationTask({"data": "d.jsonl"}, tmp_path)
    with pytest.raises(TaskError, match="needs option 'tokenizer'"):
        task.example_batch(1)


def test_bad_option_types_are_task_errors(tmp_path: Path) -> None:
    write_images(tmp_path, torch.rand(2, 3), torch.tensor([0, 2]))
    task = ImageClassificationTask({"data": ".", "top_k": "five"}, tmp_path)
    with pytest.raises(TaskError, match="option 'top_k' must be int, got 'five'"):
        task.evaluate(Passthrough(), torch.device("cpu"))
    (tmp_path / "t.jsonl").write_text(json.dumps({"text": "x", "label": 0}) + "\n")
    (tmp_path / "classes.json").write_text("[not json")
    with pytest.raises(TaskError, match=r"classes\.json is not valid JSON"):
        TextClassificationTask({"data": "t.jsonl"}, tmp_path)
