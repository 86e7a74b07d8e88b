"""Gradient-based instruction search on a local model: a soft prompt and a discrete instruction.

Two searches that read the task model's weights (a :class:`~instructkit.lm.local.LocalLM`),
both driven by the loss of the reference answer's tokens (the prompt carries no loss):

- **Soft prompt** (prompt tuning, Lester et al. 2021, "The Power of Scale for Parameter-Efficient
  Prompt Tuning"): ``soft_tokens`` trainable embeddings prepended to the input, initialised from
  the initial instruction's token embeddings (PEFT's ``PromptTuningInit.TEXT``), trained with
  AdamW on the train items; :func:`train_soft_prompt`. The result is a PEFT adapter directory
  (``LocalLM.load(name, adapter=DIR)``, ``instructkit serve --adapter``, ``instructkit eval``).
- **Discrete search** (AutoPrompt, Shin et al. 2020; GCG, Zou et al. 2023): the gradient of the
  answer loss with respect to the one-hot tokens of the instruction ranks, per position, the
  ``top_k`` token swaps that the linearised loss says lower it most
  (:func:`token_gradient`, :func:`top_k_tokens`); ``candidates`` single swaps drawn from them
  (:func:`sample_swaps`, seeded) are scored by the exact loss in batched forward passes
  (:func:`candidate_losses`), and the best replaces the instruction when it lowers the
  objective. The objective adds ``fluency`` times the model's own mean negative log-likelihood
  of the instruction text (:func:`fluency_nll`; AutoDAN-style readability, Zhu et al. 2023), and
  swaps come from readable word tokens only (:func:`readable_token_mask`), with GCG's filter
  that the new instruction decodes and re-tokenizes to the same tokens, so the result is text.
  :func:`discrete_search`.

Use::

    lm = LocalLM.load("smollm2-135m-instruct")
    items = prompt_items(lm, task, "Classify the sentiment.", train_examples)
    found = discrete_search(lm, items, "Classify the sentiment.", GradientSettings(), seed=0)
    soft = train_soft_prompt(lm, items, "Classify the sentiment.", GradientSettings(), seed=0)
    soft.model.save_pretrained("soft_prompt")        # a PEFT prompt-tuning adapter

In ``instructkit optimize prompt --method gradient`` (:func:`search_gradient`) the discrete
instruction is then scored on val like any candidate, and the soft prompt on test. Forward and
backward passes are not task calls: the call budget counts only the val calls.
"""

from __future__ import annotations

import random
import re
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from instructkit.data.batching import pad_batch
from instructkit.data.records import Conversation, Message
from instructkit.data.tokenize import TokenizedExample, tokenize_conversation
from instructkit.errors import ConfigError
from instructkit.evaluate.stats import compare_paired
from instructkit.lm.base import LM
from instructkit.lm.cache import CachedLM
from instructkit.lm.local import LocalLM
from instructkit.losses import IGNORE_INDEX, response_only_loss
from instructkit.models import mark_adapter_portable
from instructkit.optimize.adapter import PlainAdapter
from instructkit.optimize.bridge import CallCounter, bridge_lm
from instructkit.optimize.search import TEST, Evaluator, Search, mean
from instructkit.optimize.task import InstructionTask

__all__ = [
    "DiscreteResult",
    "GradientSettings",
    "PromptItem",
    "SoftPrompt",
    "candidate_losses",
    "discrete_search",
    "fluency_nll",
    "local_model",
    "one_hot_objective",
    "prompt_items",
    "readable_token_mask",
    "search_gradient",
    "sample_swaps",
    "soft_prompt_loss",
    "token_gradient",
    "top_k_tokens",
    "train_soft_prompt",
]


class GradientSettings(BaseModel):
    """Settings of the gradient searches (the ``gradient:`` key of ``optimize prompt``)."""

    model_config = ConfigDict(extra="forbid")

    train_items: int = Field(default=16, ge=1)  # train items the losses are computed on
    steps: int = Field(default=8, ge=0)  # discrete search steps (one gradient each)
    top_k: int = Field(default=32, ge=1)  # token swaps kept per position
    candidates: int = Field(default=16, ge=1)  # swaps scored by exact loss per step
    fluency: float = Field(default=0.1, ge=0.0)  # weight of the instruction's own NLL
    soft_tokens: int = Field(default=8, ge=1)  # virtual tokens of the soft prompt
    soft_steps: int = Field(default=30, ge=0)  # optimizer steps (0: no soft prompt)
    soft_lr: float = Field(default=0.03, gt=0.0)
    soft_batch: int = Field(default=8, ge=1)  # items per soft-prompt step
    rows_per_pass: int = Field(default=64, ge=1)  # sequences per forward pass


@dataclass(frozen=True)
class PromptItem:
    """One item's prompt and answer as tokens, cut around the instruction: ``before`` (the chat
    head up to the instruction), ``after`` (the rest of the prompt and the answer) and
    ``after_labels`` (the answer's tokens, IGNORE_INDEX on the prompt)."""

    before: tuple[int, ...]
    after: tuple[int, ...]
    after_labels: tuple[int, ...]


def local_model(lm: LM) -> LocalLM:
    """The :class:`LocalLM` behind ``lm`` (through a :class:`CachedLM`), else ConfigError."""
    inner = lm.lm if isinstance(lm, CachedLM) else lm
    if not isinstance(inner, LocalLM):
        raise ConfigError(
            f"the method 'gradient' needs the weights of the task model, and '{lm.name}' is "
            "not a local model.",
            fix="use --lm local (or local:MODEL), or another --method.",
        )
    return inner


# ------------------------------------------------------------------------------ the token data


def _conversation(task: InstructionTask, instruction: str, example: Any) -> Conversation:
    """The PlainAdapter prompt of ``example`` with ``instruction``, and its reference answer."""
    adapter, signature = PlainAdapter(), task.signature(instruction)
    user = adapter.user_text(signature, dict(example.inputs().items()))
    answer = adapter.answer_text(signature, {task.target: example[task.target]})
    return Conversation([Message("user", user), Message("assistant", answer)])


def prompt_items(
    lm: LocalLM, task: InstructionTask, instruction: str, examples: Sequence[Any]
) -> list[PromptItem]:
    """Each example's tokens (as the task model sees them through PlainAdapter), cut around
    ``instruction``, whose tokens are ``tokenizer(instruction)``."""
    tok, ids = lm.tokenizer, _ids(lm.tokenizer, instruction)
    out = []
    for example in examples:
        conv = _conversation(task, instruction, example)
        tokens = tokenize_conversation(conv, lm.template, tok)
        head = lm.template.render([{"role": "user", "content": conv.messages[0].content}], True)
        n = len(_ids(tok, head[: head.rindex(conv.messages[0].content)]))
        if tokens.input_ids[n : n + len(ids)] != ids:
            raise ConfigError(
                f"the instruction {instruction!r} does not tokenize the same inside the prompt.",
                fix="end the instruction with a word or a full stop.",
            )
        rest = slice(n + len(ids), None)
        out.append(
            PromptItem(
                tuple(tokens.input_ids[:n]),
                tuple(tokens.input_ids[rest]),
                tuple(tokens.labels[rest]),
            )
        )
    return out


def _ids(tokenizer: Any, text: str) -> list[int]:
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids


def _rows(items: Sequence[PromptItem], instruction: Sequence[int]) -> list[TokenizedExample]:
    """Each item with ``instruction``'s tokens in place, loss on the answer only."""
    ins = list(instruction)
    return [
        TokenizedExample(
            [*it.before, *ins, *it.after],
            [IGNORE_INDEX] * (len(it.before) + len(ins)) + list(it.after_labels),
        )
        for it in items
    ]


def _fluency_rows(before: Sequence[int], instructions: Sequence[Sequence[int]]) -> list[Any]:
    """The chat head then each instruction, loss on the instruction's tokens."""
    return [
        TokenizedExample([*before, *ins], [IGNORE_INDEX] * len(before) + list(ins))
        for ins in instructions
    ]


# ------------------------------------------------------------------------------- the model math


def _parts(model: Any) -> tuple[Any, Any, torch.Tensor]:
    """(decoder, LM head, input embedding matrix (V, H)) of a causal LM or a PEFT model."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return (
        getattr(base, base.base_model_prefix),
        base.get_output_embeddings(),
        base.get_input_embeddings().weight,
    )


def _row_losses(model: Any, rows: Sequence[TokenizedExample], pad_id: int) -> torch.Tensor:
    """Mean loss per row over its labelled tokens, (R,), one forward pass, no gradient."""
    decoder, head, _ = _parts(model)
    device = head.weight.device
    b = {k: v.to(device) for k, v in pad_batch(rows, pad_id).items()}
    with torch.no_grad():
        hidden = decoder(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
        hidden = hidden.last_hidden_state  # (R, T, H)
        out = []
        for r in range(len(rows)):
            s, n = response_only_loss(hidden[r : r + 1], b["labels"][r : r + 1], head)
            out.append(float(s) / max(n, 1))
    return torch.tensor(out)


def fluency_nll(
    model: Any, before: Sequence[int], instructions: Sequence[Sequence[int]], pad_id: int = 0
) -> torch.Tensor:
    """Mean negative log-likelihood per token of each instruction after the chat head, (C,)."""
    return _row_losses(model, _fluency_rows(before, instructions), pad_id)


def candidate_losses(
    model: Any,
    items: Sequence[PromptItem],
    candidates: Sequence[Sequence[int]],
    fluency: float,
    *,
    pad_id: int = 0,
    rows_per_pass: int = 64,
) -> torch.Tensor:
    """The exact objective of each candidate instruction, (C,): its mean answer loss over
    ``items`` plus ``fluency`` times :func:`fluency_nll`. Rows go through in batches."""
    rows = [row for c in candidates for row in _rows(items, c)]
    losses = torch.cat(
        [
            _row_losses(model, rows[i : i + rows_per_pass], pad_id)
            for i in range(0, len(rows), rows_per_pass)
        ]
    ).view(len(candidates), len(items))  # (C, N)
    total = losses.mean(-1)
    if fluency > 0:
        total = total + fluency * fluency_nll(model, items[0].before, candidates, pad_id)
    return total


@contextmanager
def _frozen(model: Any) -> Iterator[None]:
    """Parameters without gradients inside the block (only the one-hot gets one)."""
    was = [(p, p.requires_grad) for p in model.parameters()]
    model.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in was:
            p.requires_grad_(flag)


def token_gradient(
    model: Any, items: Sequence[PromptItem], instruction: Sequence[int], fluency: float = 0.0
) -> torch.Tensor:
    """d objective / d one-hot of each instruction token, (L, V) (AutoPrompt / GCG): the
    gradient of :func:`one_hot_objective` at the instruction's one-hot tokens."""
    _, _, emb = _parts(model)
    ids = torch.tensor(list(instruction), device=emb.device)
    one_hot = torch.zeros(len(ids), emb.shape[0], device=emb.device, dtype=emb.dtype)  # (L, V)
    one_hot.scatter_(1, ids[:, None], 1.0)
    one_hot.requires_grad_(True)
    with _frozen(model):
        one_hot_objective(model, items, one_hot, fluency).backward()  # type: ignore[no-untyped-call]
    assert one_hot.grad is not None
    return one_hot.grad.detach()


def one_hot_objective(
    model: Any, items: Sequence[PromptItem], one_hot: torch.Tensor, fluency: float = 0.0
) -> torch.Tensor:
    """The objective of :func:`candidate_losses` as a differentiable function of the
    instruction's one-hot tokens (L, V), whose embeddings are ``one_hot @ E``."""
    decoder, head, emb = _parts(model)
    ins = one_hot @ emb  # (L, H)
    ids = [int(t) for t in one_hot.argmax(-1)]
    skip = [IGNORE_INDEX] * len(ids)
    seqs = [(list(it.before), list(it.after), skip + list(it.after_labels)) for it in items]
    loss = _embedded_loss(decoder, head, emb, ins, seqs) / len(items)
    if fluency > 0:  # the chat head then the instruction, loss on the instruction
        loss = loss + fluency * _embedded_loss(decoder, head, emb, ins, [(seqs[0][0], [], ids)])
    return loss


def _embedded_loss(
    decoder: Any,
    head: Any,
    emb: torch.Tensor,
    ins: torch.Tensor,
    seqs: Sequence[tuple[list[int], list[int], list[int]]],
) -> torch.Tensor:
    """Sum over sequences ``(before, after, labels)`` of the mean loss of each row
    ``before + ins + after`` (right-padded); ``labels`` cover ``ins + after``."""
    width = max(len(b) + len(ins) + len(a) for b, a, _ in seqs)
    rows, masks, labels = [], [], []
    for before, after, own in seqs:
        body = torch.cat([emb[before], ins, emb[after]])  # (T_i, H)
        pad = width - len(body)
        rows.append(torch.cat([body, body.new_zeros(pad, body.shape[1])]))
        masks.append([1] * len(body) + [0] * pad)
        labels.append([IGNORE_INDEX] * len(before) + own + [IGNORE_INDEX] * pad)
    hidden = decoder(
        inputs_embeds=torch.stack(rows), attention_mask=torch.tensor(masks, device=emb.device)
    ).last_hidden_state  # (B, T, H)
    target = torch.tensor(labels, device=emb.device)  # (B, T)
    total = emb.new_zeros(())
    for r in range(len(seqs)):
        s, n = response_only_loss(hidden[r : r + 1], target[r : r + 1], head)
        total = total + s / max(n, 1)
    return total


# ----------------------------------------------------------------------- candidates and tokens


def readable_token_mask(tokenizer: Any) -> torch.Tensor:
    """(V,) True for tokens that are a plain word: ASCII letters only, after at most one
    leading space, not special, and re-tokenized alone to the same single token."""
    size = len(tokenizer)
    texts = tokenizer.batch_decode([[i] for i in range(size)])
    special = set(tokenizer.all_special_ids)
    mask = torch.zeros(size, dtype=torch.bool)
    words = [
        i
        for i, t in enumerate(texts)
        if i not in special and (w := t[1:] if t.startswith(" ") else t).isascii() and w.isalpha()
    ]
    encoded = tokenizer([texts[i] for i in words], add_special_tokens=False)["input_ids"]
    for i, ids in zip(words, encoded, strict=True):
        mask[i] = ids == [i]
    return mask


def top_k_tokens(grad: torch.Tensor, allowed: torch.Tensor, k: int) -> torch.Tensor:
    """Per position, the ``k`` allowed tokens with the most negative gradient, (L, k)."""
    scores = (-grad).masked_fill(~allowed.to(grad.device), float("-inf"))  # (L, V)
    return scores.topk(min(k, int(allowed.sum())), dim=-1).indices


def _word_spans(text: str, words: Sequence[str]) -> list[tuple[int, int]]:
    """Where each of ``words`` stands in ``text`` as a whole word, case-insensitive."""
    return [
        (m.start(), m.end())
        for w in words
        if w.strip()
        for m in re.finditer(rf"(?<!\w){re.escape(w.lower())}(?!\w)", text.lower())
    ]


def protected_positions(tokenizer: Any, ids: Sequence[int], words: Sequence[str]) -> set[int]:
    """Positions of the tokens that spell any of ``words`` (case-insensitive, whole words) in
    the instruction ``ids``: the label words and field names a swap must not change."""
    spans = _word_spans(tokenizer.decode(list(ids)), words)
    out, start = set(), 0
    for i in range(len(ids)):
        end = len(tokenizer.decode(list(ids[: i + 1])))
        if any(start < b and a < end for a, b in spans):
            out.add(i)
        start = end
    return out


def sample_swaps(
    instruction: Sequence[int],
    top: torch.Tensor,
    n: int,
    rng: random.Random,
    protected: Collection[int] = (),
) -> list[list[int]]:
    """``n`` candidates, each ``instruction`` with one token swapped (GCG): positions (all but
    ``protected``) taken in a shuffled round robin, the token drawn from that position's
    ``top`` list."""
    positions = [i for i in range(len(instruction)) if i not in protected]
    if not positions:
        return []
    rng.shuffle(positions)
    out = []
    for j in range(n):
        pos = positions[j % len(positions)]
        cand = list(instruction)
        cand[pos] = int(top[pos, rng.randrange(top.shape[1])])
        out.append(cand)
    return out


def _round_trips(tokenizer: Any, ids: Sequence[int]) -> bool:
    """The tokens decode to a text that tokenizes back to them (GCG's filter)."""
    return _ids(tokenizer, tokenizer.decode(list(ids))) == list(ids)


# --------------------------------------------------------------------------- the two searches


@dataclass(frozen=True)
class DiscreteResult:
    """The instruction found, and the objective at the start and after each step."""

    instruction: str
    objective: list[float] = field(default_factory=list)


def discrete_search(
    lm: LocalLM,
    items: Sequence[PromptItem],
    instruction: str,
    s: GradientSettings,
    seed: int,
    protect: Sequence[str] = (),
) -> DiscreteResult:
    """Greedy coordinate gradient search from ``instruction`` (module doc), ``s.steps`` steps.
    The tokens spelling a word of ``protect`` (labels, field names) are never swapped."""
    model, tok = lm.model, lm.tokenizer
    pad = lm.tokenizer.pad_token_id or 0
    allowed = readable_token_mask(tok).to(lm.model.device)
    rng = random.Random(seed)
    ids = _ids(tok, instruction)
    frozen = protected_positions(tok, ids, protect)
    counts = {w: len(_word_spans(instruction, [w])) for w in protect}  # whole words stay whole
    model.eval()
    best = float(candidate_losses(model, items, [ids], s.fluency, pad_id=pad)[0])
    history = [best]
    for _ in range(s.steps):
        top = top_k_tokens(token_gradient(model, items, ids, s.fluency), allowed, s.top_k)
        swaps = dict.fromkeys(tuple(c) for c in sample_swaps(ids, top, s.candidates, rng, frozen))
        pool = [
            list(c)
            for c in swaps
            if list(c) != ids
            and _round_trips(tok, c)
            and all(len(_word_spans(tok.decode(list(c)), [w])) >= n for w, n in counts.items())
        ]
        if pool:
            losses = candidate_losses(
                model, items, pool, s.fluency, pad_id=pad, rows_per_pass=s.rows_per_pass
            )
            j = int(losses.argmin())
            if float(losses[j]) < best:
                ids, best = list(pool[j]), float(losses[j])
        history.append(best)
    return DiscreteResult(tok.decode(ids), history)


@dataclass
class SoftPrompt:
    """A trained soft prompt: the PEFT model (base + prompt) and the loss of each step."""

    model: Any
    losses: list[float]


def soft_prompt_loss(peft_model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean answer-token loss of a padded batch with the soft prompt prepended (as PEFT's
    prompt tuning does at generation: virtual tokens first, attended to by every token)."""
    decoder, head, emb = _parts(peft_model)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]  # (B, T)
    prompt = peft_model.get_prompt(ids.shape[0]).to(emb.dtype)  # (B, P, H)
    p = prompt.shape[1]
    hidden = decoder(
        inputs_embeds=torch.cat([prompt, emb[ids]], 1),
        attention_mask=torch.cat([mask.new_ones(ids.shape[0], p), mask], 1),
    ).last_hidden_state  # (B, P + T, H)
    s, n = response_only_loss(
        hidden, torch.cat([labels.new_full((len(ids), p), IGNORE_INDEX), labels], 1), head
    )
    return s / max(n, 1)


def train_soft_prompt(
    lm: LocalLM, items: Sequence[PromptItem], instruction: str, s: GradientSettings, seed: int
) -> SoftPrompt:
    """Prompt tuning on ``items`` with ``instruction`` in the prompt, ``s.soft_steps`` AdamW
    steps on ``s.soft_batch`` items each (seeded), the prompt initialised from the
    instruction's token embeddings (repeated to ``s.soft_tokens``, as PEFT's TEXT init)."""
    from peft import PromptTuningConfig, TaskType, get_peft_model

    from instructkit.models import peft_checkpointing_warning_ignored

    config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=s.soft_tokens)
    with peft_checkpointing_warning_ignored():
        peft_model = get_peft_model(lm.model, config)
    _, _, emb = _parts(peft_model)
    init = _ids(lm.tokenizer, instruction) or [0]
    init = (init * s.soft_tokens)[: s.soft_tokens]
    encoder: Any = peft_model.prompt_encoder["default"]
    weight: torch.nn.Parameter = encoder.embedding.weight
    with torch.no_grad():
        weight.copy_(emb[init].to(weight.dtype))
    rows = _rows(items, _ids(lm.tokenizer, instruction))
    pad, rng = lm.tokenizer.pad_token_id or 0, random.Random(seed)
    opt = torch.optim.AdamW([weight], lr=s.soft_lr, weight_decay=0.0)
    peft_model.train()
    losses = []
    for _ in range(s.soft_steps):
        batch = rng.sample(rows, min(s.soft_batch, len(rows)))
        loss = soft_prompt_loss(
            peft_model, {k: v.to(emb.device) for k, v in pad_batch(batch, pad).items()}
        )
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        losses.append(float(loss.detach()))
    peft_model.eval()
    return SoftPrompt(peft_model, losses)


# ---------------------------------------------------------------- the optimize prompt method

SOFT_PROMPT = "soft_prompt"  # the journal phase (and output folder) of the soft prompt's test


def search_gradient(search: Search) -> str:
    """``optimize prompt --method gradient``: the discrete search on train items (from the
    initial instruction), its instruction scored on val (n_val calls, when the budget has
    them) and test; then the soft prompt trained, saved to ``OUT/soft_prompt/`` and scored on
    test. Reads ``search.extra``: ``lm`` (the task LM, a LocalLM), ``gradient``
    (:class:`GradientSettings`), ``train`` (examples), ``out`` (folder), ``max_tokens``;
    leaves ``search.extra["result"] = {"gradient": {...}}`` for ``result.json``."""
    lm, s = local_model(search.extra["lm"]), search.extra.get("gradient") or GradientSettings()
    ev, n_test = search.evaluator, range(len(search.evaluator.examples[TEST]))
    train = list(search.extra.get("train") or ev.examples["val"])
    picked = random.Random(search.seed).sample(train, min(s.train_items, len(train)))
    items = prompt_items(lm, search.task, search.initial, picked)
    words = [*search.task.labels, *search.task.inputs, search.task.target]
    found = discrete_search(lm, items, search.initial, s, search.seed, protect=words)
    fits = search.budget_left >= search.n_val
    chosen = found.instruction if fits else search.initial
    initial_test = ev.scores(search.initial, n_test, TEST)
    test = ev.scores(chosen, n_test, TEST)
    report: dict[str, Any] = {
        "discrete": {
            "instruction": chosen,
            "found": found.instruction,
            "objective": found.objective,
            "val": ev.mean(chosen),
            "test": mean(test),
            "test_comparison": _comparison(initial_test, test, search.seed),
        }
    }
    if s.soft_steps:
        report[SOFT_PROMPT] = _soft_prompt(search, lm, items, s, initial_test)
    search.extra["result"] = {"gradient": report}
    return chosen


def _soft_prompt(
    search: Search,
    lm: LocalLM,
    items: Sequence[PromptItem],
    s: GradientSettings,
    initial_test: Sequence[float],
) -> dict[str, Any]:
    """Train, save and score the soft prompt on test (journal phase ``soft_prompt``; its
    calls are counted apart from the budget, like the test calls)."""
    soft = train_soft_prompt(lm, items, search.initial, s, search.seed)
    folder = Path(search.extra["out"]) / SOFT_PROMPT
    soft.model.save_pretrained(str(folder))
    if lm.name.startswith("local:"):  # LocalLM.load names it local:MODEL[+ADAPTER][@TEMPLATE]
        mark_adapter_portable(folder, re.split(r"[+@]", lm.name.removeprefix("local:"))[0])
    soft_lm = LocalLM(soft.model, lm.tokenizer, lm.template, lm.batch_size, f"{lm.name}+soft")
    counter = CallCounter()
    ev = search.evaluator
    bridged = bridge_lm(
        soft_lm, counter=counter, role=TEST, max_tokens=search.extra.get("max_tokens")
    )
    scorer = Evaluator(
        ev.job, ev.task, ev.metric, {SOFT_PROMPT: bridged}, {SOFT_PROMPT: ev.examples[TEST]}
    )
    test = scorer.scores(search.initial, range(len(ev.examples[TEST])), SOFT_PROMPT)
    return {
        "test": mean(test),
        "adapter": str(folder),
        "loss": {"first": soft.losses[0], "last": soft.losses[-1]},
        "test_comparison": _comparison(list(initial_test), test, search.seed),
    }


def _comparison(a: Sequence[float], b: Sequence[float], seed: int) -> dict[str, Any]:
    c = compare_paired(list(a), list(b), seed=seed)
    return {"delta": c.diff, "ci": [c.ci_low, c.ci_high], "p": c.p_permutation}
