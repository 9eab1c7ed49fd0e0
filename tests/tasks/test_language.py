"""causal-lm and sentence-embedding: exact metrics from hand-built models."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from modelbonsai.tasks import CausalLMTask, SentenceEmbeddingTask, TaskError
from modelbonsai.tasks.embedding import embedding_metrics
from modelbonsai.tasks.tokenize import CharTokenizer


class Bigram(nn.Module):
    """Next-token log-probabilities from a fixed table: row = current token."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table.log())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table[ids]


def lm_setup(tmp_path: Path) -> tuple[CausalLMTask, CharTokenizer]:
    tok = CharTokenizer.build("ab")  # ids: \0=0, a=1, b=2
    tok.save(tmp_path)
    (tmp_path / "eval.txt").write_text("ab" * 40)
    (tmp_path / "train.txt").write_text("ab" * 40)
    task = CausalLMTask(
        {
            "data": "eval.txt",
            "train": "train.txt",
            "tokenizer": ".",
            "context": 8,
            "prompts": ["ab", "ba"],
            "max_new_tokens": 4,
        },
        tmp_path,
    )
    return task, tok


def test_causal_lm_exact(tmp_path: Path) -> None:
    task, _ = lm_setup(tmp_path)
    # after 'a' the model gives 'b' probability 0.5; after 'b' it gives 'a' probability 0.6
    table = torch.tensor([[0.4, 0.3, 0.3], [0.25, 0.25, 0.5], [0.2, 0.6, 0.2]])
    ev = task.evaluate(Bigram(table), torch.device("cpu"))
    m = {x.name: x.value for x in ev.metrics}
    assert len(ev.ids) == (80 - 1) // 8 == 9
    assert ev.outputs.shape == (9, 8)
    assert m["perplexity"] == pytest.approx(1 / math.sqrt(0.5 * 0.6), rel=1e-5)
    assert m["nll"] == pytest.approx(-(math.log(0.5) + math.log(0.6)) / 2, rel=1e-5)
    assert m["token_agreement"] == 100.0
    gens = ev.extras["generations"]
    assert [g["text"] for g in gens] == ["abab", "baba"]
    assert m["generation_match"] == 100.0

    # a model that after 'b' prefers 'b': half the predictions change, generation diverges at once
    other = torch.tensor([[0.4, 0.3, 0.3], [0.25, 0.25, 0.5], [0.2, 0.3, 0.5]])
    ev2 = task.evaluate(Bigram(other), torch.device("cpu"), reference=ev)
    m2 = {x.name: x.value for x in ev2.metrics}
    assert m2["token_agreement"] == 50.0
    assert [g["text"] for g in ev2.extras["generations"]] == ["bbbb", "bbbb"]
    # "ab"+"bbbb" vs "abab": first difference at index 1; "ba"+"bbbb" vs "baba": at index 0
    assert m2["generation_first_divergence"] == 0.5
    assert m2["generation_match"] == pytest.approx(100 * (1 / 4 + 0) / 2)


def test_causal_lm_split_render_and_loss(tmp_path: Path) -> None:
    tok = CharTokenizer.build("abc")
    tok.save(tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "1.txt").write_text("abc" * 30)
    (tmp_path / "d" / "2.txt").write_text("cab" * 30)
    # 180 tokens; the training part is the first 72, so evaluation starts inside 1.txt
    task = CausalLMTask({"data": "d", "context": 4, "train_fraction": 0.4}, tmp_path, model_path=tmp_path)
    sources = task.groupings()["source"]
    assert sources["0"] == "1.txt" and sources["16"] == "1.txt" and sources["20"] == "2.txt"
    r = task.render("0")
    assert r.kind == "tokens" and r.tokens is not None and len(r.tokens) == 5
    batch = next(task.training_batches(2, seed=0))
    assert batch.inputs.shape == (2, 4) and batch.targets is not None
    assert task.loss(Bigram(torch.full((4, 4), 0.25)), batch).item() == pytest.approx(math.log(4))
    with pytest.raises(TaskError, match="at least 2 tokens"):
        CausalLMTask({"data": "d", "context": 1}, tmp_path)
    short = tmp_path / "short.txt"
    short.write_text("ab")
    with pytest.raises(TaskError, match="expected at least 5"):
        CausalLMTask(
            {"data": "short.txt", "train": "short.txt", "context": 4, "tokenizer": "."}, tmp_path
        ).example_batch(1)


class TableEncoder(nn.Module):
    """Token states from an embedding table, in the shape of a Hugging Face encoder output."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.emb = nn.Embedding.from_pretrained(table, freeze=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"last_hidden_state": self.emb(input_ids)}


def test_embedding_metrics_exact() -> None:
    ref = torch.tensor([[1.0, 0], [0.9, 0.1], [0, 1.0], [0.1, 0.9]])
    same = embedding_metrics(ref, ref, k=1)
    assert {m.name: m.value for m in same} == pytest.approx(
        {"cosine_agreement": 1.0, "cosine_agreement_min": 1.0, "neighbour_overlap@1": 100.0}
    )
    # turn row 2 from [0, 1] to [0.8, 0.6]: cosine 0.6; its nearest neighbour becomes row 1 (was 3)
    emb = ref.clone()
    emb[2] = torch.tensor([0.8, 0.6])
    m = {x.name: x.value for x in embedding_metrics(emb, ref, k=1)}
    assert m["cosine_agreement"] == pytest.approx((3 + 0.6) / 4)
    assert m["cosine_agreement_min"] == pytest.approx(0.6)
    assert m["neighbour_overlap@1"] == pytest.approx(75.0)


def test_sentence_embedding_task(tmp_path: Path) -> None:
    tok = CharTokenizer.build("abcd ")
    tok.save(tmp_path)
    (tmp_path / "s.txt").write_text("ab\nba\n\ncd\ndc\n")
    task = SentenceEmbeddingTask(
        {"data": "s.txt", "k": 1}, tmp_path, model_path=tmp_path / "model.safetensors"
    )
    torch.manual_seed(0)
    table = torch.randn(tok.vocab_size, 3)
    base = task.evaluate(TableEncoder(table), torch.device("cpu"))
    assert base.outputs.shape == (4, 3)
    assert torch.allclose(base.outputs.norm(dim=1), torch.ones(4))
    assert {m.name: m.value for m in base.metrics}["cosine_agreement"] == pytest.approx(1.0)
    # "ab" and "ba" pool to the same mean, so the embedding is order-free: exact equality
    assert torch.allclose(base.outputs[0], base.outputs[1])
    ev = task.evaluate(TableEncoder(-table), torch.device("cpu"), reference=base)
    assert {m.name: m.value for m in ev.metrics}["cosine_agreement"] == pytest.approx(-1.0)
    assert task.render("2").text == "cd"
    with pytest.raises(TaskError, match="no training loss"):
        task.loss(TableEncoder(table), task.example_batch(2))
    (tmp_path / "one.txt").write_text("only\n")
    with pytest.raises(TaskError, match="expected at least 2"):
        SentenceEmbeddingTask({"data": "one.txt"}, tmp_path)


def test_decoded_pieces_join_to_the_decoded_text() -> None:
    """Each token's text as the reader sees it (not its vocabulary piece), joined: the decoding."""
    from modelbonsai.tasks.tokenize import CharTokenizer, HFTokenizer, decoded_pieces

    tok = CharTokenizer.build("a \n\t")
    ids = tok.encode("a \n\ta")
    assert decoded_pieces(tok, ids) == ["a", " ", "\n", "\t", "a"]
    assert decoded_pieces(tok, [0]) == ["\ufffd"]

    class Bytes:
        """A byte-level tokenizer as GPT-2's decodes: `é` is two tokens, a space starts a word."""

        def decode(self, ids: list[int]) -> str:
            vocab = {0: b"Hello", 1: b" world", 2: b"\xc3", 3: b"\xa9", 4: b"\n"}
            return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")

        def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
            return ["Hello", "Ġworld", "Ã", "©", "Ċ"]

    hf = HFTokenizer.__new__(HFTokenizer)
    hf.tok = Bytes()  # type: ignore[attr-defined]
    pieces = decoded_pieces(hf, [0, 1, 4, 2, 3])
    assert pieces == ["Hello", " world", "\n", "", "é"]
    assert "".join(pieces) == hf.decode([0, 1, 4, 2, 3])
