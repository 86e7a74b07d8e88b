"""PPO rollouts: sample responses from the policy and score them under the reference.

Used by :func:`instructkit.train.ppo.run_ppo`, one call each per step::

    picked = step_prompts(len(queries), cfg.batch_size, seed, step)   # (seed, step) only
    torch.manual_seed(...)                                            # the same rollouts on resume
    roll = generate_rollout(policy_lm, [queries[i] for i in picked], cfg, tokenizer, stop)
    ref_logp = reference_logprobs(policy_lm, ref_lm, roll, cfg.temperature)   # (B, R)

A :class:`Rollout` holds the left-padded prompts followed by the sampled responses; its
``mask`` is 1.0 on response tokens up to and including the first end-of-turn token
(:func:`stop_token_ids`: the template's end-of-turn markers and EOS), and ``ended`` says
whether that token was reached before ``max_new_tokens``. Log-probs and hidden states are
taken only at the positions that predict the response (:func:`response_hidden`), with the
position ids that ``generate`` used for the left padding.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from instructkit.data.templates import ChatTemplate
from instructkit.losses import token_logprobs
from instructkit.train.prompts import Query

__all__ = [
    "Query",
    "Rollout",
    "RolloutConfig",
    "causal_lm",
    "generate_rollout",
    "reference_logprobs",
    "response_hidden",
    "step_prompts",
    "stop_token_ids",
]


class RolloutConfig(BaseModel):
    """How responses are sampled (the ``rollout:`` section)."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(default=8, gt=0)  # prompts per step, one response each
    max_new_tokens: int = Field(default=64, gt=0)
    temperature: float = Field(default=1.0, gt=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    truncation_penalty: float = Field(default=0.0, ge=0)  # off the score when no end of turn


@dataclass
class Rollout:
    """Sampled responses; positions P.. of ``ids`` are the response (R tokens, padded)."""

    ids: torch.Tensor  # (B, P + R) left-padded prompt, then response
    attention: torch.Tensor  # (B, P + R)
    n_prompt: int  # P
    mask: torch.Tensor  # (B, R) 1.0 on response tokens (end-of-turn token included)
    ended: torch.Tensor  # (B,) True when the response reached an end-of-turn token
    texts: list[str]
    seconds: float


def causal_lm(lm: Any) -> Any:
    """The transformers model under a PEFT wrapper (LoRA layers are injected in place)."""
    return lm.get_base_model() if hasattr(lm, "get_base_model") else lm


def response_hidden(lm: Any, ids: torch.Tensor, attention: torch.Tensor, n_prompt: int) -> Any:
    """Last hidden states (B, R, H) at the positions that predict the response tokens."""
    positions = (attention.long().cumsum(-1) - 1).clamp(min=0)  # left padding, as generate does
    out = causal_lm(lm).get_decoder()(
        input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=False
    )
    return out.last_hidden_state[:, n_prompt - 1 : -1]


@torch.no_grad()
def reference_logprobs(
    policy_lm: Any, ref_lm: Any, roll: Rollout, temperature: float
) -> torch.Tensor:
    """Log-probs (B, R) of the response tokens under the reference: the policy LM with its
    adapters disabled (LoRA), or the frozen copy ``ref_lm`` (full weights)."""
    lm = policy_lm if ref_lm is None else ref_lm
    with policy_lm.disable_adapter() if ref_lm is None else nullcontext():
        hidden = response_hidden(lm, roll.ids, roll.attention, roll.n_prompt)
        logits = causal_lm(lm).get_output_embeddings()(hidden)
    return token_logprobs(logits, roll.ids[:, roll.n_prompt :], temperature)


def stop_token_ids(tokenizer: Any, template: ChatTemplate) -> list[int]:
    """Token ids that end a response: the template's end-of-turn markers and EOS."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    for marker in template.eot:
        enc = tokenizer(marker, add_special_tokens=False)["input_ids"]
        if len(enc) == 1:
            ids.add(enc[0])
    return sorted(ids)


def step_prompts(n: int, batch_size: int, seed: int, step: int) -> list[int]:
    """Indices of the prompts of ``step``: consecutive slices of a fixed shuffle per pass,
    a function of (seed, step) only, so that a resumed run takes the same prompts."""
    out = []
    for p in range(step * batch_size, (step + 1) * batch_size):
        epoch, i = divmod(p, n)
        order = list(range(n))
        random.Random(seed * 7919 + epoch).shuffle(order)
        out.append(order[i])
    return out


@torch.no_grad()
def generate_rollout(
    lm: Any, queries: Sequence[Query], cfg: RolloutConfig, tokenizer: Any, stop: list[int]
) -> Rollout:
    """Sample one response per query (left-padded batch); call with the torch seed set."""
    from transformers import GenerationConfig

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop[0]
    device = next(lm.parameters()).device
    p = max(len(q.ids) for q in queries)
    ids = torch.tensor([[pad] * (p - len(q.ids)) + q.ids for q in queries], device=device)
    attention = torch.tensor([[0] * (p - len(q.ids)) + [1] * len(q.ids) for q in queries])
    gen = GenerationConfig(  # type: ignore[no-untyped-call]
        do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p, top_k=0,
        max_new_tokens=cfg.max_new_tokens, eos_token_id=stop, pad_token_id=pad,
    )  # fmt: skip
    started = time.perf_counter()
    seq = lm.generate(input_ids=ids, attention_mask=attention.to(device), generation_config=gen)
    seconds = time.perf_counter() - started
    response = seq[:, p:]  # (B, R)
    is_stop = torch.isin(response, torch.tensor(stop, device=device))
    ended = is_stop.any(-1)
    last = torch.where(ended, is_stop.int().argmax(-1), response.shape[1] - 1)  # (B,)
    mask = (torch.arange(response.shape[1], device=device)[None] <= last[:, None]).float()
    response = response.masked_fill(mask == 0, pad)
    ends = [int(last[i]) + (0 if ended[i] else 1) for i in range(len(queries))]  # text stops
    texts = [
        tokenizer.decode(r[:e], skip_special_tokens=True)
        for r, e in zip(response, ends, strict=True)
    ]
    full = torch.cat([attention.to(device), mask.long()], dim=1)
    return Rollout(torch.cat([ids, response], 1), full, p, mask, ended, texts, seconds)
