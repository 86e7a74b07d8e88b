"""Supervised fine-tuning (LoRA or full) with response-only loss.

``train_sft(model, tokenizer, examples, cfg)`` is a plain loop: length-grouped padded batches,
AdamW, linear warm-up then cosine decay, gradient clipping, and the LM head computed only at
positions that carry loss (:func:`~instructkit.train.losses.response_only_loss`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from instructkit.data.tokenize import TokenizedExample
from instructkit.errors import TrainingError
from instructkit.train.batching import length_grouped_batches, pad_batch
from instructkit.train.losses import response_only_loss

__all__ = ["SFTConfig", "SFTResult", "apply_lora", "train_sft", "lr_at"]


class SFTConfig(BaseModel):
    """Training hyper-parameters (one name per concept: YAML key = attribute = CLI flag)."""

    model_config = ConfigDict(extra="forbid")

    lora: bool = True
    lora_r: int = Field(16, gt=0)
    lora_alpha: float = Field(32, gt=0)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_target: str | list[str] = "all-linear"
    lr: float = Field(1e-3, gt=0)
    epochs: float = Field(2.0, gt=0)
    batch_size: int = Field(8, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    train_on: Literal["all", "last"] = "all"
    seed: int = 0


@dataclass
class SFTResult:
    losses: list[float] = field(default_factory=list)  # token-weighted mean loss per step
    steps: int = 0
    tokens: int = 0  # non-padding tokens processed
    trained_tokens: int = 0  # tokens that carried loss
    seconds: float = 0.0


def apply_lora(model: Any, cfg: SFTConfig) -> Any:
    """Wrap ``model`` with a PEFT LoRA adapter (r, alpha, dropout, target modules from cfg)."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_target,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _decoder_and_head(model: Any) -> tuple[Any, Any]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, base.base_model_prefix), base.get_output_embeddings()


def _plan(examples: list[TokenizedExample], cfg: SFTConfig) -> list[list[int]]:
    lengths = [len(e.input_ids) for e in examples]
    plan: list[list[int]] = []
    epoch = 0
    while len(plan) < math.ceil(cfg.epochs * math.ceil(len(examples) / cfg.batch_size)):
        plan.extend(length_grouped_batches(lengths, cfg.batch_size, cfg.seed + epoch))
        epoch += 1
    return plan[: math.ceil(cfg.epochs * math.ceil(len(examples) / cfg.batch_size))]


def train_sft(
    model: Any,
    tokenizer: Any,
    examples: list[TokenizedExample],
    cfg: SFTConfig,
    *,
    progress: bool = True,
) -> SFTResult:
    """Train ``model`` in place on tokenized examples; returns per-step losses and counts."""
    examples = [e for e in examples if e.n_trained > 0]
    if not examples:
        raise TrainingError(
            "no example has a token that carries loss after masking and truncation.",
            fix="check that the data has assistant responses and that max_seq_len fits them.",
        )
    torch.manual_seed(cfg.seed)
    decoder, head = _decoder_and_head(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    plan = _plan(examples, cfg)
    warmup = int(cfg.warmup_ratio * len(plan))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    result, start = SFTResult(), time.perf_counter()
    model.train()
    bar = tqdm(plan, desc="train", unit="step", disable=not progress)
    for step, idx in enumerate(bar):
        batch = pad_batch([examples[i] for i in idx], pad_id)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, len(plan), cfg.lr, warmup)
        hidden = decoder(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
        ).last_hidden_state  # (B, T, H)
        loss_sum, n = response_only_loss(hidden, batch["labels"], head)
        loss = loss_sum / max(n, 1)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"loss became {loss.item()} at step {step}.",
                fix="lower lr (e.g. --set lr=1e-4), keep grad_clip on, or check the data.",
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        result.losses.append(loss.item())
        result.tokens += int(batch["attention_mask"].sum())
        result.trained_tokens += n
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    result.steps = len(plan)
    result.seconds = time.perf_counter() - start
    return result
