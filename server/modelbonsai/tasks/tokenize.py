"""Tokenizers for the text tasks: a Hugging Face tokenizer folder, or Bonsai's char-level vocab.

The char-level vocabulary (`char_vocab.json`, `{"kind": "bonsai-char", "chars": [...], "unk": 0}`)
lets small models trained from scratch ship a tokenizer without any extra dependency; it sits in
the model folder next to `config.json`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch
else:  # torch on first use: validating an experiment file's task: needs no torch
    from ..lazy import torch

from .common import fail

CHAR_VOCAB = "char_vocab.json"
CHAR_KIND = "bonsai-char"


class TextTokenizer(Protocol):
    pad_id: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def tokens(self, ids: Sequence[int]) -> list[str]: ...

    def batch(self, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]: ...


@dataclass
class CharTokenizer:
    """One token per character; characters outside the vocabulary map to `unk`."""

    chars: list[str]
    unk: int = 0

    def __post_init__(self) -> None:
        self._index = {c: i for i, c in enumerate(self.chars)}
        self.pad_id = self.unk

    @classmethod
    def build(cls, text: str) -> CharTokenizer:
        """A vocabulary of every character in `text` (sorted, so it is deterministic) plus <unk>."""
        return cls(["\0", *sorted(set(text) - {"\0"})], unk=0)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        return [self._index.get(c, self.unk) for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[i] if 0 < i < len(self.chars) else "\ufffd" for i in ids)

    def tokens(self, ids: Sequence[int]) -> list[str]:
        return [self.chars[i] if 0 < i < len(self.chars) else "<unk>" for i in ids]

    def batch(self, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
        rows = [self.encode(t)[:max_length] for t in texts]
        width = max((len(r) for r in rows), default=0)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def save(self, folder: Path) -> Path:
        path = folder / CHAR_VOCAB
        path.write_text(
            json.dumps({"kind": CHAR_KIND, "chars": self.chars, "unk": self.unk}), encoding="utf-8"
        )
        return path

    @classmethod
    def load(cls, path: Path) -> CharTokenizer:
        data = json.loads(path.read_text(encoding="utf-8"))
        if (
            not isinstance(data, dict)
            or data.get("kind") != CHAR_KIND
            or not isinstance(data.get("chars"), list)
        ):
            raise ValueError(f"{path} is not a Bonsai char vocabulary (expected kind '{CHAR_KIND}')")
        return cls([str(c) for c in data["chars"]], unk=int(data.get("unk", 0)))


class HFTokenizer:
    """A Hugging Face tokenizer behind the same small interface."""

    def __init__(self, tok: Any):
        self.tok = tok
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.pad_id = int(pad) if pad is not None else 0

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tok.decode(list(ids)))

    def tokens(self, ids: Sequence[int]) -> list[str]:
        return [str(t) for t in self.tok.convert_ids_to_tokens(list(ids))]

    def batch(self, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        enc = self.tok(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def load_tokenizer(kind: str, path: Path) -> TextTokenizer:
    """A char vocab file, a folder holding one, or a Hugging Face tokenizer folder (offline)."""
    if path.is_file() and path.suffix == ".json":
        return _load_char(kind, path)
    folder = path if path.is_dir() else path.parent
    if (folder / CHAR_VOCAB).exists():
        return _load_char(kind, folder / CHAR_VOCAB)
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise fail(
            kind,
            f"no tokenizer in {folder}: expected a Hugging Face tokenizer folder "
            f"(tokenizer.json or vocab files) or {CHAR_VOCAB} ({first})",
        ) from None
    return HFTokenizer(tok)


def _load_char(kind: str, path: Path) -> CharTokenizer:
    try:
        return CharTokenizer.load(path)
    except (ValueError, json.JSONDecodeError) as e:
        raise fail(kind, str(e)) from None


def resolve_tokenizer(
    kind: str, options: dict[str, Any], root: Path, model_path: Path | None
) -> TextTokenizer:
    """The `tokenizer` option (relative to the experiment folder), else the base model's folder."""
    from .common import option, resolve_path

    given = option(kind, options, "tokenizer", str)
    if given is not None:
        return load_tokenizer(kind, resolve_path(kind, root, given, "tokenizer"))
    if model_path is not None:
        return load_tokenizer(kind, model_path if model_path.is_dir() else model_path.parent)
    raise fail(
        kind,
        "needs option 'tokenizer' (a Hugging Face tokenizer folder or a char_vocab.json); "
        "the base model's folder is not known here",
    )


def decoded_pieces(tok: TextTokenizer, ids: Sequence[int]) -> list[str]:
    """The text each token adds to the decoded sequence, one string per id: they join to
    `tok.decode(ids)`, so the UI shows the text itself with each token's span marked (a BPE piece
    such as `Ġthe` or `Ċ` is not what the reader sees). A token that ends inside a multi-byte
    character adds "" and the next one the whole character."""
    if isinstance(tok, CharTokenizer):
        return [tok.chars[i] if 0 < i < len(tok.chars) else "\ufffd" for i in ids]
    out: list[str] = []
    done = ""
    for k in range(len(ids)):
        text = tok.decode(ids[: k + 1])
        if text.endswith("\ufffd"):  # an incomplete character: wait for the rest of its bytes
            out.append("")
            continue
        out.append(text[len(done) :] if text.startswith(done) else text)
        done = text
    return out
