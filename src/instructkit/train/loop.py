"""The training loop shared by the training workflows (SFT, the reward model, the demo via SFT).

``fit(model, FitData(train, eval, pad_id), cfg, run_dir=...)`` is one function that reads top
to bottom:

1. plan every optimizer step up front from the seed (packed bins via best-fit decreasing, or
   length-grouped padded batches), so a resumed run replays exactly the same batches;
2. resume from the newest checkpoint, or evaluate once before the first step (step 0: the
   baseline that early stopping and the best weights are measured against);
3. for each step: learning rate from the schedule; ``grad_accum`` micro-batches per process,
   forward, response-only loss, backward, each loss divided by the number of loss tokens in
   the whole step (token-weighted, so accumulation and data parallelism equal one large
   batch); clip; AdamW step; log; evaluate and early-stop; checkpoint atomically.
4. restore the weights of the best evaluation.

Data parallelism: under ``accelerate launch`` each process takes its share of every step's
micro-batches; gradients are averaged by DDP, hence the ``world`` factor on the loss.
"""

from __future__ import annotations

import hashlib
import math
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from instructkit.data.batching import length_grouped_batches, pad_batch
from instructkit.data.tokenize import TokenizedExample
from instructkit.errors import TrainingError
from instructkit.jobs import fingerprint
from instructkit.losses import response_only_loss
from instructkit.train.attention import use_varlen_attention
from instructkit.train.checkpoint import (
    check_resume,
    latest_checkpoint,
    load_checkpoint,
    load_extra,
    rng_state,
    save_checkpoint,
    set_rng_state,
    trainable_state,
)
from instructkit.train.packing import packed_batch, packed_batches

__all__ = [
    "TrainConfig",
    "FitData",
    "FitResult",
    "Processes",
    "fit",
    "lr_at",
    "plan_steps",
    "micro_batches",
    "collate",
    "ResponseLoss",
    "evaluate_loss",
    "accumulate_gradients",
    "window_means",
]

Batch = dict[str, Any]  # tensors from collate(), plus "max_len" (int) for packed rows


class TrainConfig(BaseModel):
    """Optimisation and run-control settings (the ``train:`` section of a config)."""

    model_config = ConfigDict(extra="forbid")

    lr: float = Field(default=2e-4, gt=0)
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, gt=0)
    packing: bool = True
    # attention for packed rows: varlen = causal attention per example (sum of L_i^2 work);
    # mask = the block-diagonal mask transformers builds from position_ids (T^2 work)
    packed_attention: Literal["varlen", "mask"] = "varlen"
    batch_tokens: int = Field(default=4096, gt=0)  # tokens per micro-batch (a packed row's budget)
    grad_accum: int = Field(default=1, gt=0)  # micro-batches per optimizer step and process
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(default=0.03, ge=0, le=1)
    weight_decay: float = Field(default=0.0, ge=0)
    grad_clip: float | None = Field(default=1.0, gt=0)
    grad_checkpointing: bool = False
    eval_every: int | None = Field(default=None, gt=0)  # steps; None: at step 0 and the end only
    early_stopping_patience: int | None = Field(default=None, gt=0)  # evals without improvement
    early_stopping_min_delta: float = Field(default=0.0, ge=0)
    save_every: int | None = Field(default=None, gt=0)  # steps between checkpoints (None: none)
    keep_checkpoints: int = Field(default=2, gt=0)
    resume: bool = True  # continue from the newest checkpoint in the run directory
    log_every: int = Field(default=1, gt=0)
    seed: int = 0


@dataclass(frozen=True)
class FitData:
    """What :func:`fit` trains on: tokenized examples, held-out examples, the padding id."""

    train: Sequence[TokenizedExample]
    eval: Sequence[TokenizedExample] = ()
    pad_id: int = 0


@dataclass
class FitResult:
    losses: list[float] = field(default_factory=list)  # per optimizer step (token-weighted)
    eval_losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss); 0 first
    steps: int = 0
    total_steps: int = 0
    epochs: float = 0.0  # passes over the training examples actually made
    tokens: int = 0  # non-padding tokens processed (all processes)
    trained_tokens: int = 0  # tokens that carried loss
    seconds: float = 0.0
    resumed_from: int | None = None
    stopped_early: bool = False
    best_eval_loss: float | None = None
    best_eval_step: int | None = None


def window_means(losses: Sequence[float], k: int | None = None) -> tuple[float, float, int]:
    """Mean of the first and of the last ``k`` step losses, and ``k``.

    One step's loss is one noisy batch; comparing window means is a fair start/end. ``k``
    defaults to a tenth of the steps, between 1 and 20. Raises ValueError when ``losses`` is empty.
    """
    if not losses:
        raise ValueError("no losses to average")
    k = max(1, min(len(losses), k if k is not None else min(20, len(losses) // 10)))
    return sum(losses[:k]) / k, sum(losses[-k:]) / k, k


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


def micro_batches(lengths: Sequence[int], cfg: TrainConfig, epoch: int) -> list[list[int]]:
    """One epoch of micro-batches (example indices), seeded by ``cfg.seed + epoch``."""
    if cfg.packing:
        return packed_batches(lengths, cfg.batch_tokens, seed=cfg.seed + epoch)
    per_batch = max(1, cfg.batch_tokens // max(lengths))
    return length_grouped_batches(lengths, per_batch, cfg.seed + epoch)


def plan_steps(
    lengths: Sequence[int], cfg: TrainConfig, world_size: int = 1
) -> list[list[list[int]]]:
    """Every optimizer step as ``world_size * grad_accum`` micro-batches of example indices."""
    per_step = cfg.grad_accum * world_size
    first = micro_batches(lengths, cfg, 0)
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * len(first) / per_step))
    micro: list[list[int]] = []
    epoch = 0
    while len(micro) < total * per_step:
        micro.extend(first if epoch == 0 else micro_batches(lengths, cfg, epoch))
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

    def forward(self, batch: Batch) -> tuple[torch.Tensor, int]:
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


def collate(
    examples: Sequence[TokenizedExample], packing: bool, pad_id: int, device: torch.device
) -> Batch:
    """One micro-batch on ``device``: a packed row (1, T) or right-padded rows (B, T)."""
    if packing:
        b = packed_batch(examples)
        batch = {k: b[k] for k in ("input_ids", "labels", "position_ids", "cu_seqlens")}
    else:
        batch = pad_batch(examples, pad_id)
    out: Batch = {k: v.to(device) for k, v in batch.items()}
    if packing:
        out["max_len"] = max(len(e.input_ids) for e in examples)
    return out


@dataclass(frozen=True)
class Processes:
    """This process's place in data parallelism: one process, or an ``accelerate`` group."""

    device: torch.device
    accelerator: Any = None

    @property
    def world(self) -> int:
        return self.accelerator.num_processes if self.accelerator is not None else 1

    @property
    def rank(self) -> int:
        return self.accelerator.process_index if self.accelerator is not None else 0

    def no_sync(self, module: torch.nn.Module, last: bool) -> AbstractContextManager[Any]:
        """Skip DDP's gradient all-reduce on every micro-batch but the step's last."""
        if self.accelerator is None or last:
            return nullcontext()
        context: AbstractContextManager[Any] = self.accelerator.no_sync(module)
        return context

    def backward(self, loss: torch.Tensor) -> None:
        if self.accelerator is not None:
            self.accelerator.backward(loss)
        else:
            loss.backward()  # type: ignore[no-untyped-call]

    def clip_grad_norm(self, params: list[torch.nn.Parameter], max_norm: float) -> None:
        if self.accelerator is not None:
            self.accelerator.clip_grad_norm_(params, max_norm)
        else:
            torch.nn.utils.clip_grad_norm_(params, max_norm)

    def sum(self, values: list[float]) -> list[float]:
        """Sum over processes (float64, so token counts stay exact)."""
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        if self.world > 1:
            t = self.accelerator.reduce(t, reduction="sum")
        return [float(x) for x in t.tolist()]


def accumulate_gradients(
    loss_fn: torch.nn.Module,
    batches: Sequence[Batch],
    n_step: int,
    procs: Processes | None = None,
) -> tuple[float, int]:
    """Backward over micro-batches, each loss scaled by ``world / n_step``.

    ``n_step`` is the number of loss tokens in the whole optimizer step (all processes), so
    the accumulated gradient is that of the token-weighted mean over the step. Returns the
    summed loss and the loss-token count of these micro-batches.
    """
    procs = procs or Processes(torch.device("cpu"))
    local_sum, trained = 0.0, 0
    for k, batch in enumerate(batches):
        with procs.no_sync(loss_fn, last=k == len(batches) - 1):
            loss_sum, n = loss_fn(batch)
            procs.backward(loss_sum * procs.world / max(n_step, 1))
        local_sum += float(loss_sum.detach())
        trained += n
    return local_sum, trained


@torch.no_grad()
def evaluate_loss(
    loss_fn: torch.nn.Module,
    examples: Sequence[TokenizedExample],
    cfg: TrainConfig,
    *,
    pad_id: int = 0,
    device: torch.device | None = None,
) -> float:
    """Token-weighted mean loss over ``examples`` (perplexity = exp of it)."""
    device = device or torch.device("cpu")
    was_training = loss_fn.training
    loss_fn.eval()
    total, count = 0.0, 0
    for idx in micro_batches([len(e.input_ids) for e in examples], cfg, 0):
        s, n = loss_fn(collate([examples[i] for i in idx], cfg.packing, pad_id, device))
        total += float(s)
        count += n
    loss_fn.train(was_training)
    return total / max(count, 1)


@dataclass
class _Best:
    """The best evaluation so far and its trainable weights (for early stopping and restore)."""

    loss: float | None = None
    step: int | None = None
    bad_evals: int = 0
    weights: dict[str, torch.Tensor] | None = None

    def update(self, loss: float, step: int, model: Any, min_delta: float) -> None:
        if self.loss is None or loss < self.loss - min_delta:
            self.loss, self.step, self.bad_evals = loss, step, 0
            self.weights = trainable_state(model)
        else:
            self.bad_evals += 1


def fit(
    model: Any,
    data: FitData,
    cfg: TrainConfig,
    *,
    run_dir: str | Path | None = None,
    accelerator: Any = None,
    log: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = True,
) -> FitResult:
    """Train ``model`` (its trainable parameters) in place; see the module docstring."""
    train = [e for e in data.train if e.n_trained > 0]
    _check_examples(train, cfg)
    procs = Processes(
        accelerator.device if accelerator else next(model.parameters()).device, accelerator
    )
    plan = plan_steps([len(e.input_ids) for e in train], cfg, procs.world)
    if cfg.grad_checkpointing:
        _enable_activation_checkpointing(model)
    loss_fn: torch.nn.Module = ResponseLoss(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=procs.device.type == "cuda"
    )
    if accelerator is not None:
        loss_fn, opt = accelerator.prepare(loss_fn, opt)
    emit = log or (lambda event: None)
    result, best = FitResult(total_steps=len(plan)), _Best()
    ckpt = latest_checkpoint(run_dir) if run_dir is not None and cfg.resume else None
    # hashing the data costs a pass over it: only for a run that checkpoints or resumes
    saves = run_dir is not None and (cfg.save_every is not None or ckpt is not None)
    fp = run_fingerprint(cfg, data, procs.world) if saves else {}
    if ckpt is not None:
        check_resume(ckpt, fp, fix=_RESUME_FIX)
        _restore(ckpt, model, opt, result, best)

    def evaluate(step: int) -> None:
        loss = evaluate_loss(loss_fn, data.eval, cfg, pad_id=data.pad_id, device=procs.device)
        result.eval_losses.append((step, loss))
        emit({"step": step, "eval_loss": loss, "eval_ppl": math.exp(min(loss, 50.0))})
        best.update(loss, step, model, cfg.early_stopping_min_delta)

    start = result.resumed_from or 0
    warmup = int(cfg.warmup_ratio * len(plan))
    started, tokens_before = time.perf_counter(), result.tokens  # a resumed run's speed: its own
    quiet = not progress or procs.rank != 0
    bar = tqdm(total=len(plan), initial=start, desc="train", unit="step", disable=quiet)
    loss_fn.train()
    with _packed_attention(model, cfg):
        if data.eval and start == 0:  # the baseline for early stopping and the best weights
            evaluate(0)
        for step in range(start, len(plan)):
            lr = lr_at(step, len(plan), cfg.lr, warmup, cfg.schedule)
            for group in opt.param_groups:
                group["lr"] = lr
            # this process's micro-batches -> forward -> masked loss -> backward
            n_step = sum(_n_labels(train, idx) for idx in plan[step])  # all processes
            mine = plan[step][procs.rank * cfg.grad_accum : (procs.rank + 1) * cfg.grad_accum]
            batches = [
                collate([train[i] for i in idx], cfg.packing, data.pad_id, procs.device)
                for idx in mine
            ]
            opt.zero_grad(set_to_none=True)
            local_sum, local_trained = accumulate_gradients(loss_fn, batches, n_step, procs)
            if cfg.grad_clip:
                procs.clip_grad_norm(params, cfg.grad_clip)
            opt.step()
            # log: sums over processes
            local_tokens = sum(len(train[i].input_ids) for idx in mine for i in idx)
            loss_sum, tokens, trained = procs.sum([local_sum, local_tokens, local_trained])
            loss = loss_sum / max(n_step, 1)
            if not math.isfinite(loss):
                raise TrainingError(
                    f"loss became {loss} at step {step}.",
                    fix="lower train.lr (e.g. --set train.lr=1e-4), keep train.grad_clip on, "
                    "check the data.",
                )
            result.losses.append(loss)
            result.tokens += int(tokens)
            result.trained_tokens += int(trained)
            done = step + 1
            if done % cfg.log_every == 0 or done == len(plan):
                elapsed = max(time.perf_counter() - started, 1e-9)
                tok_per_s = (result.tokens - tokens_before) / elapsed
                emit(
                    {
                        "step": done,
                        "loss": loss,
                        "lr": lr,
                        "tokens": result.tokens,
                        "tok_per_s": tok_per_s,
                    }
                )
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")
            # evaluate, early-stop, checkpoint
            if data.eval and ((cfg.eval_every and done % cfg.eval_every == 0) or done == len(plan)):
                evaluate(done)
            patience = cfg.early_stopping_patience
            result.stopped_early = bool(patience and best.bad_evals >= patience)
            if run_dir is not None and cfg.save_every and done % cfg.save_every == 0:
                if procs.rank == 0:
                    state = {"fingerprint": fp, **_state(result, best)}
                    _save(Path(run_dir), done, model, opt, state, best, cfg.keep_checkpoints)
            if result.stopped_early:
                break
    bar.close()
    if best.weights is not None:  # keep the weights of the best evaluation
        _load_trainable(model, best.weights)
    loss_fn.eval()
    result.steps = len(result.losses)
    result.epochs = _epochs(plan[: result.steps], len(train))
    result.seconds = time.perf_counter() - started
    result.best_eval_loss, result.best_eval_step = best.loss, best.step
    return result


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
            fix="raise train.batch_tokens to at least max_seq_len.",
        )


def _n_labels(examples: Sequence[TokenizedExample], idx: list[int]) -> int:
    # packed_batch forces each example's first label to -100; the loss also never uses it
    return sum(sum(1 for x in examples[i].labels[1:] if x != -100) for i in idx)


def _epochs(steps: Sequence[Sequence[Sequence[int]]], n_examples: int) -> float:
    """Passes over the training set made by these steps (examples drawn / examples)."""
    return sum(len(mb) for step in steps for mb in step) / max(n_examples, 1)


def _enable_activation_checkpointing(model: Any) -> None:
    """Recompute activations in backward; ``activation_checkpointing_enable`` is the name
    transformers 5.x keeps (``gradient_checkpointing_enable`` warns that it is deprecated)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # transformers releases before the rename
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


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


def _load_trainable(model: Any, weights: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)


# settings that may change between a run and its resumption: they do not change the updates
_RESUME_FREE = ("save_every", "keep_checkpoints", "resume", "log_every", "eval_every")
_RESUME_FIX = (
    "rerun with the original train settings and data, set train.resume=false to start over, "
    "or choose another output_dir."
)


def run_fingerprint(cfg: TrainConfig, data: FitData, world: int) -> dict[str, Any]:
    """What a resumed run must share with the run that wrote its checkpoint: the train
    settings that shape the updates, the number of processes, and the tokenized data."""
    h = hashlib.sha256()
    for part, examples in (("train", data.train), ("eval", data.eval)):
        h.update(f"{part}:{len(examples)}".encode())
        for e in examples:
            h.update(array("q", e.input_ids).tobytes() + b"|" + array("q", e.labels).tobytes())
    return fingerprint(cfg, exclude=_RESUME_FREE, data=h.hexdigest(), world=world)


def _state(result: FitResult, best: _Best) -> dict[str, Any]:
    return {
        "rng": rng_state(),
        "losses": result.losses,
        "eval_losses": result.eval_losses,
        "tokens": result.tokens,
        "trained_tokens": result.trained_tokens,
        "best_eval": best.loss,
        "best_step": best.step,
        "bad_evals": best.bad_evals,
    }


def _save(
    run_dir: Path,
    step: int,
    model: Any,
    opt: torch.optim.Optimizer,
    state: dict[str, Any],
    best: _Best,
    keep: int,
) -> None:
    extra = {"best": best.weights} if best.weights is not None else None
    save_checkpoint(run_dir, step, model, opt, state, keep=keep, extra_tensors=extra)


def _restore(
    ckpt: Path, model: Any, opt: torch.optim.Optimizer, result: FitResult, best: _Best
) -> None:
    """Load a checkpoint written by :func:`_save` into the model, optimizer, result, best."""
    saved = load_checkpoint(ckpt, model, opt)
    set_rng_state(saved["rng"])
    result.losses = list(saved["losses"])
    result.eval_losses = [(int(s), float(x)) for s, x in saved["eval_losses"]]
    result.tokens, result.trained_tokens = saved["tokens"], saved["trained_tokens"]
    result.resumed_from = int(saved["step"])
    best.loss, best.step = saved["best_eval"], saved.get("best_step")
    best.bad_evals = saved["bad_evals"]
    best.weights = load_extra(ckpt, "best")
