"""The training loop shared by the SFT workflow and the demo.

``fit(model, train, eval, cfg, run_dir=...)`` reads top to bottom:

1. plan every optimizer step up front from the seed (packed bins via best-fit decreasing, or
   length-grouped padded batches), so a resumed run replays exactly the same batches;
2. for each step, run ``grad_accum`` micro-batches per process, each loss divided by the
   number of loss tokens in the whole step (token-weighted, so accumulation and data
   parallelism equal one large batch);
3. clip, step AdamW at the scheduled learning rate, log; evaluate, early-stop, and checkpoint
   atomically at the configured intervals.

Data parallelism: under ``accelerate launch`` each process takes its share of every step's
micro-batches; gradients are averaged by DDP, hence the ``world_size`` factor on the loss.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from instructkit.data.batching import length_grouped_batches, pad_batch
from instructkit.data.tokenize import TokenizedExample
from instructkit.errors import TrainingError
from instructkit.losses import response_only_loss
from instructkit.train.attention import use_varlen_attention
from instructkit.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    load_extra,
    rng_state,
    save_checkpoint,
    set_rng_state,
    trainable_state,
)
from instructkit.train.packing import pack_bfd, packed_batch

__all__ = [
    "TrainConfig",
    "FitResult",
    "fit",
    "lr_at",
    "plan_steps",
    "ResponseLoss",
    "evaluate_loss",
    "accumulate_gradients",
]


class TrainConfig(BaseModel):
    """Optimisation and run-control settings (the ``train:`` section of a config)."""

    model_config = ConfigDict(extra="forbid")

    lr: float = Field(2e-4, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, gt=0)
    packing: bool = True
    # attention for packed rows: varlen = causal attention per example (sum of L_i^2 work);
    # mask = the block-diagonal mask transformers builds from position_ids (T^2 work)
    packed_attention: Literal["varlen", "mask"] = "varlen"
    batch_tokens: int = Field(4096, gt=0)  # tokens per micro-batch (a packed row's budget)
    grad_accum: int = Field(1, gt=0)  # micro-batches per optimizer step and process
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)
    grad_checkpointing: bool = False
    eval_every: int | None = Field(None, gt=0)  # steps; None: once at the end
    early_stopping_patience: int | None = Field(None, gt=0)  # evals without improvement
    early_stopping_min_delta: float = Field(0.0, ge=0)
    save_every: int | None = Field(None, gt=0)  # steps between checkpoints (None: none)
    keep_checkpoints: int = Field(2, gt=0)
    resume: bool = True  # continue from the newest checkpoint in the run directory
    log_every: int = Field(1, gt=0)
    seed: int = 0


@dataclass
class FitResult:
    losses: list[float] = field(default_factory=list)  # per optimizer step (token-weighted)
    eval_losses: list[tuple[int, float]] = field(default_factory=list)
    steps: int = 0
    total_steps: int = 0
    tokens: int = 0  # non-padding tokens processed (all processes)
    trained_tokens: int = 0  # tokens that carried loss
    seconds: float = 0.0
    resumed_from: int | None = None
    stopped_early: bool = False
    best_eval_loss: float | None = None


def lr_at(step: int, total: int, base: float, warmup: int, schedule: str = "cosine") -> float:
    """Linear warm-up over ``warmup`` steps, then cosine/linear decay to 0 or constant."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "constant":
        return base
    if schedule == "linear":
        return base * (1.0 - progress)
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))


def _micro_batches(lengths: Sequence[int], cfg: TrainConfig, epoch: int) -> list[list[int]]:
    if cfg.packing:
        bins = pack_bfd(lengths, cfg.batch_tokens)
        random.Random(cfg.seed + epoch).shuffle(bins)
        return bins
    per_batch = max(1, cfg.batch_tokens // max(lengths))
    return length_grouped_batches(lengths, per_batch, cfg.seed + epoch)


def plan_steps(
    lengths: Sequence[int], cfg: TrainConfig, world_size: int = 1
) -> list[list[list[int]]]:
    """Every optimizer step as ``world_size * grad_accum`` micro-batches of example indices."""
    per_step = cfg.grad_accum * world_size
    first = _micro_batches(lengths, cfg, 0)
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * len(first) / per_step))
    micro: list[list[int]] = []
    epoch = 0
    while len(micro) < total * per_step:
        micro.extend(first if epoch == 0 else _micro_batches(lengths, cfg, epoch))
        epoch += 1
    return [micro[s * per_step : (s + 1) * per_step] for s in range(total)]


class ResponseLoss(torch.nn.Module):
    """Wraps a causal LM so that forward returns (summed response-token loss, token count).

    Calling it (rather than the decoder directly) keeps DDP's hooks in the path.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self._decoder = getattr(base, base.base_model_prefix)
        self._head = base.get_output_embeddings()

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        extra = {}
        if "cu_seqlens" in batch:  # read by the varlen attention, ignored by the others
            extra = {"cu_seq_lens_q": batch["cu_seqlens"], "max_length_q": batch["max_len"]}
        hidden = self._decoder(
            input_ids=batch["input_ids"],
            position_ids=batch.get("position_ids"),
            attention_mask=batch.get("attention_mask"),
            use_cache=False,  # with a cache object, packed examples would attend to each other
            **extra,
        ).last_hidden_state  # (B, T, H)
        return response_only_loss(hidden, batch["labels"], self._head)


def _collate(
    examples: list[TokenizedExample], packing: bool, pad_id: int, device: torch.device
) -> dict[str, torch.Tensor]:
    if packing:
        b = packed_batch(examples)
        batch = {k: b[k] for k in ("input_ids", "labels", "position_ids", "cu_seqlens")}
    else:
        batch = pad_batch(examples, pad_id)
    out: dict[str, Any] = {k: v.to(device) for k, v in batch.items()}
    if packing:
        out["max_len"] = max(len(e.input_ids) for e in examples)
    return out


def _n_labels(examples: Sequence[TokenizedExample], idx: list[int]) -> int:
    # packed_batch forces each example's first label to -100; the loss also never uses it
    return sum(sum(1 for x in examples[i].labels[1:] if x != -100) for i in idx)


@torch.no_grad()
def evaluate_loss(
    loss_fn: torch.nn.Module,
    examples: Sequence[TokenizedExample],
    cfg: TrainConfig,
    pad_id: int,
    device: torch.device,
) -> float:
    """Token-weighted mean loss over ``examples`` (perplexity = exp of it)."""
    was_training = loss_fn.training
    loss_fn.eval()
    total, count = 0.0, 0
    for idx in _micro_batches([len(e.input_ids) for e in examples], cfg, 0):
        s, n = loss_fn(_collate([examples[i] for i in idx], cfg.packing, pad_id, device))
        total += float(s)
        count += n
    loss_fn.train(was_training)
    return total / max(count, 1)


def _check_examples(examples: Sequence[TokenizedExample], cfg: TrainConfig) -> None:
    if not examples or all(e.n_trained == 0 for e in examples):
        raise TrainingError(
            "no example has a token that carries loss after masking and truncation.",
            fix="check that the data has assistant responses and that max_seq_len fits them.",
        )
    too_long = max(len(e.input_ids) for e in examples)
    if too_long > cfg.batch_tokens:
        raise TrainingError(
            f"an example has {too_long} tokens but train.batch_tokens is {cfg.batch_tokens}.",
            fix="raise train.batch_tokens to at least data.max_seq_len.",
        )


def fit(
    model: Any,
    train: Sequence[TokenizedExample],
    eval_examples: Sequence[TokenizedExample] = (),
    cfg: TrainConfig | None = None,
    *,
    pad_id: int = 0,
    run_dir: str | Path | None = None,
    accelerator: Any = None,
    log: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = True,
) -> FitResult:
    """Train ``model`` (its trainable parameters) in place; see the module docstring."""
    cfg = cfg or TrainConfig()
    train = [e for e in train if e.n_trained > 0]
    _check_examples(train, cfg)
    world = accelerator.num_processes if accelerator else 1
    rank = accelerator.process_index if accelerator else 0
    device = accelerator.device if accelerator else next(model.parameters()).device
    plan = plan_steps([len(e.input_ids) for e in train], cfg, world)
    if cfg.grad_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    with _packed_attention(model, cfg):
        return _fit(
            model,
            train,
            eval_examples,
            cfg,
            pad_id,
            run_dir,
            accelerator,
            log,
            progress,
            plan,
            (world, rank, device),
        )


@contextmanager
def _packed_attention(model: Any, cfg: TrainConfig) -> Iterator[None]:
    """Switch to per-example attention for packed rows; restore the previous one afterwards
    (generation needs the padding-aware implementation back)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    previous = base.config._attn_implementation
    if cfg.packing and cfg.packed_attention == "varlen":
        use_varlen_attention(model)
    try:
        yield
    finally:
        base.set_attn_implementation(previous)


def _fit(
    model, train, eval_examples, cfg, pad_id, run_dir, accelerator, log, progress, plan, where
) -> FitResult:
    world, rank, device = where
    loss_fn: torch.nn.Module = ResponseLoss(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=device.type == "cuda"
    )
    if accelerator:
        loss_fn, opt = accelerator.prepare(loss_fn, opt)
    result = FitResult(total_steps=len(plan))
    state: dict[str, Any] = {"best_eval": None, "bad_evals": 0, "best_state": None}
    start_step = _maybe_resume(run_dir, cfg, model, opt, result, state)
    emit = log or (lambda event: None)
    warmup = int(cfg.warmup_ratio * len(plan))
    started = time.perf_counter()
    loss_fn.train()
    bar = tqdm(
        total=len(plan),
        initial=start_step,
        desc="train",
        unit="step",
        disable=not progress or rank != 0,
    )
    for step in range(start_step, len(plan)):
        lr = lr_at(step, len(plan), cfg.lr, warmup, cfg.schedule)
        for g in opt.param_groups:
            g["lr"] = lr
        step_loss, step_tokens = _train_step(
            loss_fn, opt, train, plan[step], cfg, pad_id, device, rank, world, accelerator, params
        )
        if not math.isfinite(step_loss):
            raise TrainingError(
                f"loss became {step_loss} at step {step}.",
                fix="lower train.lr (e.g. --set train.lr=1e-4), keep grad_clip on, check data.",
            )
        result.losses.append(step_loss)
        result.tokens += step_tokens[0]
        result.trained_tokens += step_tokens[1]
        done = step + 1
        if done % cfg.log_every == 0 or done == len(plan):
            emit(
                {
                    "step": done,
                    "loss": step_loss,
                    "lr": lr,
                    "tokens": result.tokens,
                    "tok_per_s": result.tokens / max(time.perf_counter() - started, 1e-9),
                }
            )
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.3f}")
        stop = False
        if eval_examples and ((cfg.eval_every and done % cfg.eval_every == 0) or done == len(plan)):
            stop = _eval_and_track(
                loss_fn, model, eval_examples, cfg, pad_id, device, done, result, state, emit
            )
        if run_dir is not None and cfg.save_every and (done % cfg.save_every == 0) and rank == 0:
            _save(run_dir, done, model, opt, cfg, result, state)
        if stop:
            result.stopped_early = True
            break
    bar.close()
    if state["best_state"] is not None:  # keep the weights of the best evaluation
        _load_trainable(model, state["best_state"])
    loss_fn.eval()
    result.steps = len(result.losses)
    result.seconds = time.perf_counter() - started
    result.best_eval_loss = state["best_eval"]
    return result


def accumulate_gradients(
    loss_fn, train, micro, n_step, cfg, pad_id, device, world=1, accelerator=None
) -> tuple[float, int, int]:
    """Backward over micro-batches, each loss scaled by ``world / n_step``.

    ``n_step`` is the number of loss tokens in the whole optimizer step (all processes), so
    the accumulated gradient is that of the token-weighted mean over the step. Returns (summed
    loss, tokens, loss tokens) of these micro-batches.
    """
    local_sum, tokens, trained = 0.0, 0, 0
    for k, idx in enumerate(micro):
        batch = _collate([train[i] for i in idx], cfg.packing, pad_id, device)
        sync = accelerator is None or k == len(micro) - 1
        with accelerator.no_sync(loss_fn) if not sync else _null():
            loss_sum, n = loss_fn(batch)
            scaled = loss_sum * world / max(n_step, 1)
            accelerator.backward(scaled) if accelerator else scaled.backward()
        local_sum += float(loss_sum.detach())
        tokens += sum(len(train[i].input_ids) for i in idx)
        trained += n
    return local_sum, tokens, trained


def _train_step(
    loss_fn, opt, train, micro, cfg, pad_id, device, rank, world, accelerator, params
) -> tuple[float, tuple[int, int]]:
    """One optimizer step over this process's micro-batches; returns (step loss, token counts)."""
    n_step = sum(_n_labels(train, idx) for idx in micro)
    mine = micro[rank * cfg.grad_accum : (rank + 1) * cfg.grad_accum]
    opt.zero_grad(set_to_none=True)
    local_sum, tokens, trained = accumulate_gradients(
        loss_fn, train, mine, n_step, cfg, pad_id, device, world, accelerator
    )
    if cfg.grad_clip and accelerator:
        accelerator.clip_grad_norm_(params, cfg.grad_clip)
    elif cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    opt.step()
    totals = torch.tensor([local_sum, tokens, trained], dtype=torch.float64, device=device)
    if accelerator and world > 1:
        totals = accelerator.reduce(totals, reduction="sum")
    loss_sum, tokens, trained = totals.tolist()
    return loss_sum / max(n_step, 1), (int(tokens), int(trained))


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None


def _eval_and_track(
    loss_fn, model, eval_examples, cfg, pad_id, device, step, result, state, emit
) -> bool:
    """Evaluate, remember the best weights; True when early stopping says stop."""
    loss = evaluate_loss(loss_fn, eval_examples, cfg, pad_id, device)
    result.eval_losses.append((step, loss))
    emit({"step": step, "eval_loss": loss, "eval_ppl": math.exp(min(loss, 50.0))})
    best = state["best_eval"]
    if best is None or loss < best - cfg.early_stopping_min_delta:
        state.update(best_eval=loss, bad_evals=0, best_state=trainable_state(model))
        return False
    state["bad_evals"] += 1
    return bool(cfg.early_stopping_patience and state["bad_evals"] >= cfg.early_stopping_patience)


def _load_trainable(model: Any, weights: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)


def _save(run_dir, step, model, opt, cfg, result, state) -> None:
    save_checkpoint(
        run_dir,
        step,
        model,
        opt,
        {
            "rng": rng_state(),
            "losses": result.losses,
            "eval_losses": result.eval_losses,
            "tokens": result.tokens,
            "trained_tokens": result.trained_tokens,
            "best_eval": state["best_eval"],
            "bad_evals": state["bad_evals"],
        },
        keep=cfg.keep_checkpoints,
        extra_tensors={"best": state["best_state"]} if state["best_state"] else None,
    )


def _maybe_resume(run_dir, cfg, model, opt, result, state) -> int:
    if run_dir is None or not cfg.resume:
        return 0
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        return 0
    saved = load_checkpoint(ckpt, model, opt)
    set_rng_state(saved["rng"])
    result.losses = list(saved["losses"])
    result.eval_losses = [tuple(x) for x in saved["eval_losses"]]
    result.tokens, result.trained_tokens = saved["tokens"], saved["trained_tokens"]
    result.resumed_from = saved["step"]
    state.update(
        best_eval=saved["best_eval"],
        bad_evals=saved["bad_evals"],
        best_state=load_extra(ckpt, "best"),
    )
    return int(saved["step"])
