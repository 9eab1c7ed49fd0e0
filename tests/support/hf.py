"""A tiny Hugging Face text classifier saved as a user's model folder is (config.json,
model.safetensors and its tokenizer beside them), and JSONL data for it: no hub downloads."""

from __future__ import annotations

import json
from pathlib import Path

WORDS = ["good", "great", "fine", "bad", "awful", "poor", "movie", "food", "it", "was", "the"]


def save_text_classifier(folder: Path) -> None:
    """A 1-layer BERT classifier and a word-piece tokenizer over :data:`WORDS`."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder.mkdir(parents=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(str(folder))
    config = BertConfig(
        vocab_size=len(WORDS) + 5,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        BertForSequenceClassification(config).save_pretrained(str(folder), safe_serialization=True)


def write_text_data(folder: Path, names: tuple[str, ...] = ("eval.jsonl", "train.jsonl"), n: int = 8) -> None:
    """`n` rows of {text, label} per file: "the good movie" (label 0) ... "the poor food" (label 1)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        rows = [
            {"text": f"the {WORDS[i % 6]} {WORDS[6 + i % 2]}", "label": int(i % 6 >= 3)} for i in range(n)
        ]
        (folder / name).write_text("\n".join(json.dumps(r) for r in rows) + "\n")
