"""`causal-lm`: next-token prediction on text windows; perplexity, agreement, greedy generations."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    import torch.nn.functional as F
    from torch import nn
else:  # torch on first use: validating an experiment file's task: needs no torch
    from ..lazy import F, nn, torch

from .base import Batch, Evaluation, Metric, RenderedInstance, Task, TaskError, no_grad
from .common import endless_shuffle, fail, limit, logits_of, option, resolve_path
from .tokenize import TextTokenizer, decoded_pieces, resolve_tokenizer

KIND = "causal-lm"
TEXT_SUFFIXES = (".txt", ".md", ".py", ".rst", ".json", ".jsonl")


@dataclass
class _Corpus:
    tokens: torch.Tensor  # [n] int64
    starts: list[tuple[int, str]]  # (token offset, source name), sorted by offset

    def source_at(self, offset: int) -> str:
        name = self.starts[0][1] if self.starts else ""
        for start, src in self.starts:
            if start > offset:
                break
            name = src
        return name


class CausalLMTask(Task):
    """Windows of `context` tokens from a text file or folder, scored token by token.

    Per-instance outputs are the log-probability of each actual next token ([N, context]);
    predictions are the model's top-1 next token at each position ([N, context]), which the
    behaviour comparison uses for per-token agreement.
    """

    kind = KIND
    options = {  # noqa: RUF012  (class-level option schema; instances hold the values)
        "data": ("path", "evaluation text: a file, or a folder of text files (read in name order)"),
        "train": ("path", "training text; default: the first `train_fraction` of `data`"),
        "train_fraction": ("float", "share of `data` used for training when `train` is not given (0.9)"),
        "tokenizer": (
            "path",
            "Hugging Face tokenizer folder or char_vocab.json (default: the model's folder)",
        ),
        "context": ("int", "tokens per evaluation window (default 128)"),
        "prompts": ("list[str]", "prompts for greedy generation (default: openings of evaluation windows)"),
        "num_prompts": ("int", "how many prompts to take from the data when `prompts` is not given (8)"),
        "prompt_length": ("int", "tokens per prompt taken from the data (32)"),
        "max_new_tokens": ("int", "tokens generated per prompt (48)"),
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
        o = self.options
        self.context = option(KIND, o, "context", int, 128)
        self.max_new_tokens = option(KIND, o, "max_new_tokens", int, 48)
        self.prompt_length = option(KIND, o, "prompt_length", int, 32)
        self.num_prompts = option(KIND, o, "num_prompts", int, 8)
        self.train_fraction = float(option(KIND, o, "train_fraction", (int, float), 0.9))
        if self.context < 2:
            raise fail(KIND, f"option 'context' must be at least 2 tokens, got {self.context}")
        if not 0.0 < self.train_fraction < 1.0:
            raise fail(KIND, f"option 'train_fraction' must be between 0 and 1, got {self.train_fraction}")
        self.data_path = resolve_path(KIND, root, option(KIND, o, "data", str, required=True), "data")
        self._tok: TextTokenizer | None = None
        self._eval: _Corpus | None = None
        self._train: _Corpus | None = None
        self._windows: list[int] | None = None

    # -- data -----------------------------------------------------------------------------------
    @property
    def tokenizer(self) -> TextTokenizer:
        if self._tok is None:
            self._tok = resolve_tokenizer(KIND, self.options, self.root, self.model_path)
        return self._tok

    def _read(self, path: Path) -> list[tuple[str, str]]:
        if path.is_file():
            return [(path.name, path.read_text(encoding="utf-8", errors="replace"))]
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
        if not files:
            raise fail(KIND, f"the data folder {path} holds no text files ({', '.join(TEXT_SUFFIXES)})")
        return [(str(p.relative_to(path)), p.read_text(encoding="utf-8", errors="replace")) for p in files]

    def _corpus(self, parts: list[tuple[str, str]]) -> _Corpus:
        ids: list[int] = []
        starts: list[tuple[int, str]] = []
        for name, text in parts:
            starts.append((len(ids), name))
            ids.extend(self.tokenizer.encode(text))
        return _Corpus(torch.tensor(ids, dtype=torch.long), starts)

    def _load(self) -> None:
        if self._eval is not None:
            return
        whole = self._corpus(self._read(self.data_path))
        train_opt = option(KIND, self.options, "train", str)
        if train_opt is not None:
            self._eval = whole
            self._train = self._corpus(self._read(resolve_path(KIND, self.root, train_opt, "train")))
        else:
            # hold out the tail of the data, so evaluation text was never trained on
            cut = int(len(whole.tokens) * self.train_fraction)
            self._train = _Corpus(whole.tokens[:cut], whole.starts)
            shifted = [(max(0, s - cut), n) for s, n in whole.starts if s >= cut]
            before = [n for s, n in whole.starts if s < cut]
            head = [(0, before[-1])] if before and (not shifted or shifted[0][0] > 0) else []
            self._eval = _Corpus(whole.tokens[cut:], head + shifted)
        span = self.context + 1
        n = max(0, (len(self._eval.tokens) - 1) // self.context)
        if n == 0 or len(self._eval.tokens) < span:
            raise fail(
                KIND,
                f"the evaluation text has {len(self._eval.tokens)} tokens; expected at least "
                f"{span} (one window of context {self.context} plus its next token)",
            )
        self.total_instances = n
        self._windows = [i * self.context for i in range(limit(n, self.max_instances))]

    def _window_batch(self, offsets: list[int], corpus: _Corpus, prefix: str) -> Batch:
        chunk = torch.stack([corpus.tokens[o : o + self.context + 1] for o in offsets])
        return Batch([f"{prefix}{o}" for o in offsets], chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous())

    @property
    def windows(self) -> list[int]:
        self._load()
        assert self._windows is not None
        return self._windows

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        self._load()
        assert self._eval is not None
        w = self.windows
        for start in range(0, len(w), batch_size):
            yield self._window_batch(w[start : start + batch_size], self._eval, "")

    def training_batches(self, batch_size: int, seed: int) -> Iterator[Batch]:
        self._load()
        assert self._train is not None
        train = self._train
        n = (len(train.tokens) - 1) // self.context
        if n < 1:
            raise fail(KIND, f"the training text has {len(train.tokens)} tokens, fewer than one window")
        for idx in endless_shuffle(n, batch_size, seed):
            yield self._window_batch([i * self.context for i in idx], train, "train/")

    def example_batch(self, batch_size: int) -> Batch:
        self._load()
        assert self._eval is not None
        return self._window_batch(self.windows[:batch_size], self._eval, "")

    # -- running --------------------------------------------------------------------------------
    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return logits_of(model(batch.inputs))

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return self.loss_of(self.forward(model, batch), batch)

    def loss_of(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        assert batch.targets is not None
        return F.cross_entropy(outputs.flatten(0, 1).float(), batch.targets.flatten())

    @no_grad
    def evaluate(
        self, model: nn.Module, device: torch.device, reference: Evaluation | None = None
    ) -> Evaluation:
        was_training = model.training
        model.eval()
        try:
            logp_parts, pred_parts, ids = [], [], []
            for batch in self.eval_batches(16):
                b = self.to_device(batch, device)
                logits = self.forward(model, b).float()
                if logits.dim() != 3 or logits.shape[:2] != b.inputs.shape:
                    raise fail(
                        KIND,
                        f"the model returned logits {tuple(logits.shape)} for input "
                        f"{tuple(b.inputs.shape)}; expected [batch, tokens, vocabulary]",
                    )
                logp = logits.log_softmax(dim=-1)
                assert b.targets is not None  # eval windows always carry their next tokens
                logp_parts.append(logp.gather(-1, b.targets[..., None])[..., 0].cpu())
                pred_parts.append(logits.argmax(dim=-1).cpu())
                ids.extend(batch.ids)
            generations = self.generate(model, device)
        finally:
            model.train(was_training)
        token_logp = torch.cat(logp_parts)
        pred = torch.cat(pred_parts)
        targets = torch.stack([self._eval.tokens[o + 1 : o + self.context + 1] for o in self.windows])  # type: ignore[union-attr]
        return Evaluation(
            metrics=lm_metrics(token_logp, pred, generations, reference),
            ids=ids,
            outputs=token_logp,
            predictions=pred,
            targets=targets,
            extras={"generations": generations},
        )

    def prompts(self) -> list[list[int]]:
        given = option(KIND, self.options, "prompts", list)
        if given is not None:
            if not all(isinstance(p, str) and p for p in given):
                raise fail(KIND, "option 'prompts' must be a list of non-empty strings")
            return [self.tokenizer.encode(p) for p in given]
        self._load()
        assert self._eval is not None
        step = max(1, len(self.windows) // max(1, self.num_prompts))
        offsets = self.windows[::step][: self.num_prompts]
        return [self._eval.tokens[o : o + self.prompt_length].tolist() for o in offsets]

    @no_grad
    def generate(self, model: nn.Module, device: torch.device) -> list[dict[str, Any]]:
        """Greedy continuations of every prompt; prompts of one length run as one batch."""
        prompts = self.prompts()
        window = _max_positions(model) or (self.context + self.max_new_tokens)
        out: list[dict[str, Any]] = [{} for _ in prompts]
        by_len: dict[int, list[int]] = {}
        for i, p in enumerate(prompts):
            by_len.setdefault(len(p), []).append(i)
        for members in by_len.values():
            ids = torch.tensor([prompts[i] for i in members], dtype=torch.long, device=device)
            new = greedy(model, ids, self.max_new_tokens, window)
            for row, i in enumerate(members):
                toks = new[row].tolist()
                out[i] = {
                    "prompt": self.tokenizer.decode(prompts[i]),
                    "text": self.tokenizer.decode(toks),
                    "tokens": toks,
                }
        return out

    # -- instances ------------------------------------------------------------------------------
    def groupings(self) -> dict[str, dict[str, str]]:
        self._load()
        assert self._eval is not None
        if len(self._eval.starts) <= 1:
            return {}
        return {"source": {str(o): self._eval.source_at(o) for o in self.windows}}

    def render(self, instance_id: str) -> RenderedInstance:
        self._load()
        assert self._eval is not None
        try:
            o = int(instance_id)
        except ValueError:
            o = -1
        if o not in self.windows:
            raise TaskError(f"task {KIND}: no instance '{instance_id}' in the evaluation split")
        ids = self._eval.tokens[o : o + self.context + 1].tolist()
        # the decoded text of each token, not its vocabulary piece: the panel shows the text with
        # each token's span shaded by its divergence
        return RenderedInstance(
            id=instance_id,
            kind="tokens",
            tokens=decoded_pieces(self.tokenizer, ids),
            text=self.tokenizer.decode(ids),
        )

    def render_prediction(self, value: Any) -> list[str] | None:
        """Predictions and targets are token ids, one per position of the window: their text."""
        if isinstance(value, list) and all(isinstance(v, int) for v in value):
            return decoded_pieces(self.tokenizer, value)
        return None


def _max_positions(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def greedy(model: nn.Module, ids: torch.Tensor, max_new_tokens: int, window: int) -> torch.Tensor:
    """Greedy decoding without a KV cache (compressed models need not support one); returns the new
    tokens [B, max_new_tokens]. The input is cropped to the last `window` tokens."""
    seq = ids
    for _ in range(max_new_tokens):
        logits = logits_of(model(seq[:, -window:]))
        seq = torch.cat([seq, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
    return seq[:, ids.shape[1] :].cpu()


def lm_metrics(
    token_logp: torch.Tensor,
    pred: torch.Tensor,
    generations: list[dict[str, Any]],
    reference: Evaluation | None,
) -> list[Metric]:
    """Perplexity, NLL, next-token top-1 agreement with the base, and generation agreement.

    Without a reference the model is the base itself: agreements are 100%.
    """
    nll = float(-token_logp.double().mean())
    ref_pred = reference.predictions if reference is not None and reference.predictions is not None else pred
    if ref_pred.shape != pred.shape:
        raise ValueError(f"reference has predictions {tuple(ref_pred.shape)}, this model {tuple(pred.shape)}")
    agree = 100.0 * int((pred == ref_pred).sum()) / max(1, pred.numel())
    ref_gen = reference.extras.get("generations") if reference is not None else None
    prefix, first_div = _generation_match(generations, ref_gen if isinstance(ref_gen, list) else generations)
    return [
        Metric("perplexity", math.exp(nll), "", False, headline=True),
        Metric("nll", nll, "nats/token", False),
        Metric(
            "token_agreement",
            agree,
            "%",
            True,
            headline=True,
            detail="next-token top-1 prediction equal to the base model's, over every position",
        ),
        Metric(
            "generation_match",
            prefix,
            "%",
            True,
            detail="greedy tokens generated identically to the base model before the first difference",
        ),
        Metric(
            "generation_first_divergence",
            first_div,
            "tokens",
            True,
            detail="mean index of the first generated token that differs from the base model's",
        ),
    ]


def _generation_match(mine: list[dict[str, Any]], ref: list[dict[str, Any]]) -> tuple[float, float]:
    if not mine or len(mine) != len(ref):
        return math.nan, math.nan
    shares, firsts = [], []
    for a, b in zip(mine, ref, strict=True):
        ta, tb = list(a.get("tokens", [])), list(b.get("tokens", []))
        n = min(len(ta), len(tb))
        k = next((i for i in range(n) if ta[i] != tb[i]), n)
        shares.append(k / max(1, max(len(ta), len(tb))))
        firsts.append(float(k))
    return 100.0 * sum(shares) / len(shares), sum(firsts) / len(firsts)
