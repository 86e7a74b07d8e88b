"""Task metrics: per-item scores plus a corpus score, and response loss/perplexity under a model.

Every text metric takes ``predictions`` (one string per item) and ``references`` (per item, one
reference string or a list of them; an item scores against its best reference) and returns a
:class:`MetricResult` whose ``per_item`` list feeds the paired tests in
:mod:`instructkit.evaluate.stats`. Look metrics up by name::

    result = compute_metric("f1", ["Broncos won"], [["Denver Broncos", "Broncos"]])
    result.score, result.per_item                        # corpus score, per-item scores
    METRICS["bleu"](predictions, references)             # the registry is a plain dict

* ``exact_match``: SQuAD exact match (Rajpurkar et al. 2016) after
  :func:`~instructkit.evaluate.checks.normalize_answer` (first line, lowercase, no punctuation,
  articles or "Answer:" prefix). Two empty normalized strings match, as in the SQuAD script.
* ``accuracy``: label match, insensitive to case and whitespace only ("Positive " = "positive").
* ``f1``: SQuAD bag-of-tokens F1 over the same normalized tokens (so also first line only).
* ``bleu``, ``chrf``: sacrebleu (Post 2018) with its default settings, on sacrebleu's 0-100
  scale. The score is *corpus* BLEU (Papineni et al. 2002) / corpus chrF (Popovic 2015), computed
  from statistics summed over items, which is not the mean of the per-item scores. ``per_item``
  holds sentence BLEU (exponential smoothing, effective order) and sentence chrF.
* ``rouge_l``: ROUGE-L F1 (Lin 2004) on ``rouge_score``-style tokens; the score is the mean.

:func:`response_loss` scores a model instead of predictions: the token-weighted NLL of the
assistant responses of each conversation given its prompt, and :func:`perplexity` combines them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import sacrebleu

from instructkit.data.records import Conversation
from instructkit.data.similarity import rouge_l_f, rouge_tokens
from instructkit.data.templates import ChatTemplate, get_template
from instructkit.data.tokenize import TrainOn, tokenize_conversation
from instructkit.errors import ConfigError
from instructkit.evaluate.checks import normalize_answer

__all__ = [
    "References",
    "MetricResult",
    "Metric",
    "METRICS",
    "get_metric",
    "compute_metric",
    "exact_match",
    "label_match",
    "token_f1",
    "rouge_l",
    "sentence_bleu",
    "sentence_chrf",
    "corpus_bleu",
    "corpus_chrf",
    "response_loss",
    "perplexity",
]

References = Sequence[str | Sequence[str]]  # per item: one reference or several


@dataclass(frozen=True)
class MetricResult:
    """A corpus ``score`` and the per-item scores behind it (None where a metric has none)."""

    name: str
    score: float
    per_item: list[float] | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "score": self.score, "per_item": self.per_item}


Metric = Callable[[Sequence[str], References], MetricResult]


# --- per-item scores -------------------------------------------------------------------------


def _refs(references: str | Sequence[str]) -> list[str]:
    refs = [references] if isinstance(references, str) else list(references)
    if not refs:
        raise ValueError("an item has no reference: give at least one reference string per item")
    return refs


def exact_match(prediction: str, references: str | Sequence[str]) -> float:
    """1.0 if the normalized prediction equals a normalized reference (SQuAD EM), else 0.0."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(r) for r in _refs(references)))


def _label(text: str) -> str:
    return " ".join(text.split()).casefold()


def label_match(prediction: str, references: str | Sequence[str]) -> float:
    """1.0 if the prediction equals a reference label up to case and whitespace, else 0.0."""
    pred = _label(prediction)
    return float(any(pred == _label(r) for r in _refs(references)))


def _f1_tokens(pred: list[str], gold: list[str]) -> float:
    if not pred or not gold:  # SQuAD: an empty answer only matches an empty one
        return float(pred == gold)
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, references: str | Sequence[str]) -> float:
    """SQuAD token F1 of the normalized bags of tokens, best over the references."""
    pred = normalize_answer(prediction).split()
    return max(_f1_tokens(pred, normalize_answer(r).split()) for r in _refs(references))


def rouge_l(prediction: str, references: str | Sequence[str]) -> float:
    """ROUGE-L F1 (LCS-based), best over the references."""
    pred = rouge_tokens(prediction)
    return max(rouge_l_f(rouge_tokens(r), pred) for r in _refs(references))


def sentence_bleu(prediction: str, references: str | Sequence[str]) -> float:
    """sacrebleu sentence BLEU (0-100; exponential smoothing, effective n-gram order)."""
    return float(sacrebleu.sentence_bleu(prediction, _refs(references)).score)


def sentence_chrf(prediction: str, references: str | Sequence[str]) -> float:
    """sacrebleu sentence chrF (0-100; the best-scoring reference counts)."""
    return float(sacrebleu.sentence_chrf(prediction, _refs(references)).score)


# --- corpus scores and the registry ----------------------------------------------------------


def _check_lengths(predictions: Sequence[str], references: References) -> None:
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references: "
            "give one reference (or list of references) per prediction"
        )
    if not predictions:
        raise ValueError("no predictions to score")


def _ref_streams(references: References) -> Sequence[Sequence[str]]:
    """Per-item reference lists as sacrebleu's reference streams (None pads missing ones;
    sacrebleu accepts None there, although its annotations say str)."""
    refs = [_refs(r) for r in references]
    width = max(len(r) for r in refs)
    streams = [[r[k] if k < len(r) else None for r in refs] for k in range(width)]
    return cast(Sequence[Sequence[str]], streams)


def corpus_bleu(predictions: Sequence[str], references: References) -> float:
    """sacrebleu corpus BLEU (0-100) with default settings (13a tokenizer, no smoothing)."""
    _check_lengths(predictions, references)
    return float(sacrebleu.corpus_bleu(list(predictions), _ref_streams(references)).score)


def corpus_chrf(predictions: Sequence[str], references: References) -> float:
    """sacrebleu corpus chrF (0-100) with default settings (chrF2, character 6-grams)."""
    _check_lengths(predictions, references)
    return float(sacrebleu.corpus_chrf(list(predictions), _ref_streams(references)).score)


def _mean_metric(name: str, item: Callable[[str, str | Sequence[str]], float]) -> Metric:
    """A metric whose corpus score is the mean of its per-item scores."""

    def metric(predictions: Sequence[str], references: References) -> MetricResult:
        _check_lengths(predictions, references)
        scores = [item(p, r) for p, r in zip(predictions, references, strict=True)]
        return MetricResult(name, sum(scores) / len(scores), scores)

    metric.__doc__ = f"Mean of ``{item.__name__}`` over items."
    return metric


def _corpus_metric(
    name: str,
    item: Callable[[str, str | Sequence[str]], float],
    corpus: Callable[[Sequence[str], References], float],
) -> Metric:
    """A metric whose corpus score is computed over the whole corpus, not averaged."""

    def metric(predictions: Sequence[str], references: References) -> MetricResult:
        score = corpus(predictions, references)  # checks the lengths first
        scores = [item(p, r) for p, r in zip(predictions, references, strict=True)]
        return MetricResult(name, score, scores)

    metric.__doc__ = f"``{corpus.__name__}`` as the score, ``{item.__name__}`` per item."
    return metric


METRICS: dict[str, Metric] = {
    "exact_match": _mean_metric("exact_match", exact_match),
    "accuracy": _mean_metric("accuracy", label_match),
    "f1": _mean_metric("f1", token_f1),
    "bleu": _corpus_metric("bleu", sentence_bleu, corpus_bleu),
    "chrf": _corpus_metric("chrf", sentence_chrf, corpus_chrf),
    "rouge_l": _mean_metric("rouge_l", rouge_l),
}


def get_metric(name: str) -> Metric:
    """The registered metric ``name``; :class:`ConfigError` listing the valid names otherwise."""
    if name not in METRICS:
        raise ConfigError(f"unknown metric '{name}'.", fix=f"use one of: {', '.join(METRICS)}.")
    return METRICS[name]


def compute_metric(name: str, predictions: Sequence[str], references: References) -> MetricResult:
    """Score ``predictions`` against ``references`` with the metric registered as ``name``."""
    return get_metric(name)(predictions, references)


# --- response loss and perplexity ------------------------------------------------------------


def _decoder_and_head(model: Any) -> tuple[Any, Any]:
    """The decoder stack (returns hidden states) and LM head of a causal LM, PEFT or not."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, base.base_model_prefix), base.get_output_embeddings()


def response_loss(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[Conversation],
    template: str | ChatTemplate = "tokenizer",
    *,
    max_seq_len: int = 1024,
    train_on: TrainOn = "all",
    batch_size: int = 8,
) -> list[tuple[float, int]]:
    """Per conversation, (mean NLL of its response tokens given the prompt, number of tokens).

    Tokens and masks are exactly those SFT trains on (:func:`tokenize_conversation`: the
    responses plus their end-of-turn marker, the same truncation to ``max_seq_len``). A
    conversation with no scored token gives ``(nan, 0)``. Batched by length, without gradients;
    the model's train/eval mode is restored afterwards.
    """
    import torch  # here, so that text metrics do not pay for importing torch

    from instructkit.data.batching import pad_batch

    tpl = get_template(template, tokenizer) if isinstance(template, str) else template
    examples = [
        tokenize_conversation(c, tpl, tokenizer, max_seq_len=max_seq_len, train_on=train_on)
        for c in conversations
    ]
    decoder, head = _decoder_and_head(model)
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    out: list[tuple[float, int]] = [(math.nan, 0)] * len(examples)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                batch = pad_batch([examples[i] for i in idx], pad_id)
                batch = {k: v.to(device) for k, v in batch.items()}
                for i, scored in zip(idx, _batch_losses(decoder, head, batch), strict=True):
                    out[i] = scored
    finally:
        model.train(was_training)
    return out


def _batch_losses(decoder: Any, head: Any, batch: dict[str, Any]) -> list[tuple[float, int]]:
    """(mean NLL, token count) of each row of a right-padded batch: one forward, per-row loss."""
    from instructkit.losses import response_only_loss

    hidden = decoder(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    ).last_hidden_state  # (B, T, H)
    out = []
    for row in range(hidden.shape[0]):
        total, n = response_only_loss(hidden[row : row + 1], batch["labels"][row : row + 1], head)
        out.append((float(total) / n if n else math.nan, n))
    return out


def perplexity(losses: Sequence[tuple[float, int]]) -> float:
    """exp of the token-weighted mean NLL over ``(mean_nll, n_tokens)`` pairs (n = 0 skipped)."""
    total = sum(nll * n for nll, n in losses if n)
    count = sum(n for _, n in losses)
    if count == 0:
        raise ValueError("no scored tokens: perplexity needs at least one response token")
    return math.exp(total / count)
