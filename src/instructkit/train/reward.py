"""Reward-model training: ``instructkit train reward PAIRS.jsonl -o runs/rm``.

``run_reward(cfg)`` reads top to bottom: load the base model and put a one-scalar ``score``
head on its decoder (:func:`~instructkit.train.reward_model.with_score_head`); read every
preference file through the data layer's reader (:mod:`instructkit.train.reward_data`: the same
formats and rejects as SFT, plus pair checks); hold out pairs by prompt (no prompt is in both
splits); wrap in LoRA with the head trained in full (``modules_to_save``), or train all
weights; train on the Bradley–Terry loss (:func:`~instructkit.losses.pairwise_reward_loss`,
with per-pair margins and optional reward centering); write the adapter or model with its
head, ``reward_model.json``, the resolved config, ``metrics.jsonl``, ``metrics.json`` (held-out
pair accuracy, mean margin, calibration), ``calibration.png`` and ``loss_curve.png``.

Why our own loop and not TRL's ``RewardTrainer`` (1.16): it tokenizes with the tokenizer's own
chat template (our ``template`` choices and SFT's rendering would differ), drops pairs longer
than ``max_length`` without a rejects file, and checkpoints through ``transformers.Trainer``,
whose layout and resume differ from ``train sft``'s. The loop below is short and reuses
:func:`~instructkit.train.loop.plan_steps` (batches planned from the seed, so a resumed run
replays the same ones), :func:`~instructkit.train.loop.lr_at`, the atomic checkpoints of
:mod:`instructkit.train.checkpoint` and the metrics log of :mod:`instructkit.train.tracking`.
The loss equals TRL's (a test checks it).
"""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from instructkit.config import save_config
from instructkit.data.sources import SourceField, missing_source, source_name
from instructkit.data.templates import TemplateName, get_template
from instructkit.errors import ConfigError, TrainingError
from instructkit.io import write_atomic
from instructkit.losses import pairwise_reward_loss
from instructkit.models import DEFAULT_MODEL, load_model, mark_adapter_portable
from instructkit.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from instructkit.train.loop import TrainConfig, lr_at, micro_batches, plan_steps, window_means
from instructkit.train.reward_data import PairOptions, PairSet, TokenizedPair, load_pairs
from instructkit.train.reward_model import (
    pad_rows,
    save_reward_info,
    sequence_rewards,
    with_score_head,
)
from instructkit.train.sft import AdapterConfig, apply_lora, removed_on_failure, resolve_dtype
from instructkit.train.tracking import (
    MetricsLogger,
    check_backends,
    plot_losses,
    read_metrics,
    run_figures,
    truncate_metrics,
)

__all__ = [
    "RewardConfig",
    "RewardResult",
    "PairEval",
    "calibration_bins",
    "evaluate_pairs",
    "format_reward_summary",
    "pair_stats",
    "reward_config_problems",
    "run_reward",
]

# train: keys of SFT's loop that a pair loop does not use (pairs are padded rows)
UNUSED_TRAIN_KEYS = (
    "packing",
    "packed_attention",
    "grad_checkpointing",
    "early_stopping_patience",
    "early_stopping_min_delta",
)


class RewardConfig(BaseModel):
    """The whole ``train reward`` workflow; YAML keys, attributes and --set paths are the same."""

    model_config = ConfigDict(extra="forbid")

    model: str = DEFAULT_MODEL
    output_dir: str = "runs/reward"
    # preference data: a path or a dataset spec (path, split, subset, columns, format, file_type;
    # docs/data.md), or a list of them
    data: SourceField | list[SourceField] = Field(default_factory=list)
    format: str | None = None  # of every data source; auto-detected when None
    eval_path: SourceField | None = None
    eval_ratio: float = Field(default=0.1, ge=0, lt=1)  # share of prompts held out
    template: TemplateName = "tokenizer"
    max_seq_len: int = Field(default=512, gt=8)
    too_long: Literal["reject", "truncate"] = "reject"
    skip_invalid: bool = False
    center_rewards_coefficient: float = Field(default=0.0, ge=0)
    calibration_bins: int = Field(default=10, gt=1)
    lora: AdapterConfig = Field(default_factory=AdapterConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    report_to: list[str] = Field(default_factory=list)

    @property
    def data_paths(self) -> list[SourceField]:
        """The data sources as a list (each a path or a dataset spec)."""
        return list(self.data) if isinstance(self.data, list) else [self.data]


class RewardResult(BaseModel):
    output_dir: str
    n_train: int
    n_eval: int
    rejected: int
    truncated: int
    steps: int
    total_steps: int
    seconds: float
    resumed_from: int | None = None
    loss_start: float | None = None  # mean of the first steps' losses
    loss_end: float | None = None
    eval_accuracy_start: float | None = None  # held-out pair accuracy before training
    eval_accuracy: float | None = None  # after training
    eval_margin: float | None = None  # mean r_chosen - r_rejected on held-out pairs
    eval_loss: float | None = None
    ece: float | None = None  # expected calibration error of sigmoid(r_c - r_r)


@dataclass
class PairEval:
    """Held-out pairs scored: mean loss, accuracy (r_c > r_r), mean margin, every difference."""

    loss: float
    accuracy: float
    margin: float
    diffs: list[float] = field(default_factory=list)


def run_reward(cfg: RewardConfig, *, progress: bool = True) -> RewardResult:
    """Run the reward-model workflow described by ``cfg``; see the module docstring."""
    _check(cfg)
    out = Path(cfg.output_dir)
    wall = time.perf_counter()
    with removed_on_failure(out, enabled=True):
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        lm, tokenizer = load_model(cfg.model, dtype=resolve_dtype(cfg.dtype))
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        model = with_score_head(lm, pad_token_id=pad_id, seed=cfg.train.seed)
        template = get_template(cfg.template, tokenizer)

        train, held, loaded = _pairs(cfg, tokenizer, template)
        rejects = [r for s in loaded for r in s.rejects]
        truncated = sum(s.truncated for s in loaded)
        print(
            f"pairs: train {len(train)}, eval {len(held)}, rejected {len(rejects)}, "
            f"truncated {truncated} (too_long: {cfg.too_long})"
        )
        if rejects:
            rows = [json.dumps(r.to_dict(), default=str) + "\n" for r in rejects]
            write_atomic(out / "rejects.jsonl", rows)

        model = apply_lora(model, cfg.lora, task_type="SEQ_CLS", modules_to_save=["score"])
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model.to(device)
        ckpt = latest_checkpoint(out / "checkpoints") if cfg.train.resume else None
        if ckpt is not None:
            print(f"resuming from {ckpt}")
        last = int(ckpt.name.split("-")[-1]) if ckpt else -1
        truncate_metrics(out / "metrics.jsonl", last)
        purge = last + 1 if ckpt else None  # a resumed run logs the steps after `last` again
        logger = MetricsLogger(out, cfg.report_to, run_name=out.name, purge_step=purge)
        fit = fit_pairs(
            model, train, held, cfg, pad_id=pad_id, run_dir=out / "checkpoints",
            log=logger.log, progress=progress,
        )  # fmt: skip
        logger.close()
        final = evaluate_pairs(model, held, cfg, pad_id) if held else None
        result = _result(cfg, fit, final, n=(len(train), len(held)), bad=(rejects, truncated))
        _write_outputs(model, tokenizer, cfg, (result, final), wall)
    return result


def _check(cfg: RewardConfig) -> None:
    problems = reward_config_problems(cfg)
    if problems:
        raise ConfigError(
            f"{len(problems)} config problem(s): " + "; ".join(problems),
            fix="correct the keys above (docs/reward.md lists every key).",
        )
    check_backends(cfg.report_to)


def reward_config_problems(
    cfg: RewardConfig, *, exists: Callable[[Path], bool] = Path.exists
) -> list[str]:
    """What ``cfg``'s model cannot check alone (files, sizes, unused keys); ``exists`` says
    whether a file is there (a recipe counts the files earlier stages will write)."""
    problems = []
    if not cfg.data_paths:
        problems.append("data: at least one preference file is needed")
    for i, spec in enumerate(cfg.data_paths):
        problems.append(missing_source(f"data[{i}]", spec, exists=exists) or "")
    if cfg.eval_path:
        problems.append(missing_source("eval_path", cfg.eval_path, exists=exists) or "")
    problems = [p for p in problems if p]
    if cfg.train.batch_tokens < 2 * cfg.max_seq_len:
        problems.append(
            f"train.batch_tokens ({cfg.train.batch_tokens}) < 2 * max_seq_len "
            f"({cfg.max_seq_len}): a full-length pair would not fit"
        )
    defaults = TrainConfig()
    unused = [k for k in UNUSED_TRAIN_KEYS if getattr(cfg.train, k) != getattr(defaults, k)]
    if unused:
        problems.append(f"train.{', train.'.join(unused)}: not used by reward training")
    return problems


def _pairs(
    cfg: RewardConfig, tokenizer: Any, template: Any
) -> tuple[list[TokenizedPair], list[TokenizedPair], list[PairSet]]:
    """Training pairs, held-out pairs and every file's PairSet (rejects, truncation counts)."""
    opts = PairOptions(cfg.format, cfg.max_seq_len, cfg.too_long, cfg.skip_invalid)
    train: list[TokenizedPair] = []
    held: list[TokenizedPair] = []
    loaded = []
    for i, path in enumerate(cfg.data_paths):
        got = load_pairs(path, tokenizer, template, opts)
        loaded.append(got)
        _check_not_emptied(source_name(path), got)
        ratio = 0.0 if cfg.eval_path else cfg.eval_ratio
        kept, out = split_by_prompt(got.pairs, ratio, cfg.train.seed + i)
        train += kept
        held += out
    if cfg.eval_path:
        got = load_pairs(cfg.eval_path, tokenizer, template, opts)
        loaded.append(got)
        held = got.pairs
    if not train:
        raise TrainingError(
            f"no training pairs are left after holding out eval_ratio={cfg.eval_ratio}.",
            fix="give more pairs, or lower eval_ratio.",
        )
    return train, held, loaded


def _check_not_emptied(path: str, got: PairSet) -> None:
    if got.pairs:
        return
    first = got.rejects[0].reason if got.rejects else "the file has no rows"
    raise TrainingError(
        f"{path}: no pair left: {len(got.rejects)} of {got.n_rows} rows rejected (first: {first}).",
        fix="mend the rows listed in rejects.jsonl, raise max_seq_len, or set too_long: truncate.",
    )


def split_by_prompt(
    pairs: Sequence[TokenizedPair], ratio: float, seed: int
) -> tuple[list[TokenizedPair], list[TokenizedPair]]:
    """Hold out ``ratio`` of the distinct prompts (at least one when ratio > 0) with all their
    pairs, so that held-out accuracy is measured on prompts never trained on."""
    if ratio <= 0:
        return list(pairs), []
    prompts = sorted({p.prompt for p in pairs})
    random.Random(seed).shuffle(prompts)
    n_held = min(len(prompts) - 1, max(1, round(ratio * len(prompts))))
    held = set(prompts[:n_held])
    return [p for p in pairs if p.prompt not in held], [p for p in pairs if p.prompt in held]


def pair_rewards(
    model: Any, pairs: Sequence[TokenizedPair], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards of the chosen and of the rejected responses, each (B,), in one forward pass."""
    device = next(model.parameters()).device
    ids, mask = pad_rows([p.chosen for p in pairs] + [p.rejected for p in pairs], pad_id)
    rewards = sequence_rewards(model, ids.to(device), mask.to(device))  # (2B,)
    return rewards[: len(pairs)], rewards[len(pairs) :]


def _margins(pairs: Sequence[TokenizedPair], device: torch.device) -> torch.Tensor:
    return torch.tensor([p.margin for p in pairs], dtype=torch.float32, device=device)


@torch.no_grad()
def evaluate_pairs(
    model: Any, pairs: Sequence[TokenizedPair], cfg: RewardConfig, pad_id: int
) -> PairEval:
    """Score held-out pairs: loss as trained, accuracy (r_c > r_r), mean margin."""
    was_training = model.training
    model.eval()
    loss, diffs = 0.0, []
    train_cfg = cfg.train.model_copy(update={"packing": False})
    for idx in micro_batches([p.length for p in pairs], train_cfg, 0):
        batch = [pairs[i] for i in idx]
        r_c, r_r = pair_rewards(model, batch, pad_id)
        margin = _margins(batch, r_c.device)
        loss += float(pairwise_reward_loss(r_c, r_r, margin, cfg.center_rewards_coefficient).sum())
        diffs += (r_c - r_r).tolist()
    model.train(was_training)
    n = max(len(diffs), 1)
    return PairEval(loss / n, sum(d > 0 for d in diffs) / n, sum(diffs) / n, diffs)


@dataclass
class PairFit:
    losses: list[float] = field(default_factory=list)  # per optimizer step (mean over pairs)
    evals: list[dict[str, float]] = field(default_factory=list)  # {step, eval_*}
    total_steps: int = 0
    resumed_from: int | None = None
    seconds: float = 0.0


def fit_pairs(
    model: Any,
    train: Sequence[TokenizedPair],
    held: Sequence[TokenizedPair],
    cfg: RewardConfig,
    *,
    pad_id: int,
    run_dir: Path,
    log: Callable[[dict[str, Any]], None],
    progress: bool = True,
) -> PairFit:
    """Train the trainable weights of ``model`` on ``train`` pairs; checkpoint and resume as
    :func:`~instructkit.train.loop.fit` does (same plan from the seed, same RNG states)."""
    tc = cfg.train.model_copy(update={"packing": False})
    plan = plan_steps([p.length for p in train], tc)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    fit = PairFit(total_steps=len(plan))
    ckpt = latest_checkpoint(run_dir) if tc.resume else None
    if ckpt is not None:
        saved = load_checkpoint(ckpt, model, opt)
        set_rng_state(saved["rng"])
        fit.losses, fit.evals = list(saved["losses"]), list(saved["evals"])
        fit.resumed_from = int(saved["step"])

    def evaluate(step: int) -> None:
        e = evaluate_pairs(model, held, cfg, pad_id)
        event = {"eval_loss": e.loss, "eval_accuracy": e.accuracy, "eval_margin": e.margin}
        fit.evals.append({"step": step, **event})
        log({"step": step, **event})

    start, warmup = fit.resumed_from or 0, int(tc.warmup_ratio * len(plan))
    started = time.perf_counter()
    bar = tqdm(total=len(plan), initial=start, desc="train", unit="step", disable=not progress)
    model.train()
    if held and start == 0:
        evaluate(0)
    for step in range(start, len(plan)):
        lr = lr_at(step, len(plan), tc.lr, warmup, tc.schedule)
        for group in opt.param_groups:
            group["lr"] = lr
        n_pairs = sum(len(idx) for idx in plan[step])
        opt.zero_grad(set_to_none=True)
        loss_sum, chosen, rejected = 0.0, [], []
        for idx in plan[step]:  # grad_accum micro-batches, each loss / pairs in the step
            batch = [train[i] for i in idx]
            r_c, r_r = pair_rewards(model, batch, pad_id)
            margin = _margins(batch, r_c.device)
            loss = pairwise_reward_loss(r_c, r_r, margin, cfg.center_rewards_coefficient).sum()
            (loss / n_pairs).backward()  # type: ignore[no-untyped-call]
            loss_sum += float(loss.detach())
            chosen += r_c.detach().float().tolist()
            rejected += r_r.detach().float().tolist()
        if tc.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
        opt.step()
        loss_value = loss_sum / n_pairs
        if not math.isfinite(loss_value):
            raise TrainingError(
                f"loss became {loss_value} at step {step}.",
                fix="lower train.lr (e.g. --set train.lr=1e-5), keep train.grad_clip on.",
            )
        fit.losses.append(loss_value)
        done = step + 1
        if done % tc.log_every == 0 or done == len(plan):
            log({"step": done, "loss": loss_value, "lr": lr, **pair_stats(chosen, rejected)})
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.3f}")
        if held and ((tc.eval_every and done % tc.eval_every == 0) or done == len(plan)):
            evaluate(done)
        if tc.save_every and done % tc.save_every == 0:
            state = {"rng": rng_state(), "losses": fit.losses, "evals": fit.evals}
            save_checkpoint(run_dir, done, model, opt, state, keep=tc.keep_checkpoints)
    bar.close()
    model.eval()
    fit.seconds = time.perf_counter() - started
    return fit


def pair_stats(chosen: Sequence[float], rejected: Sequence[float]) -> dict[str, float]:
    """A step's pairs: accuracy (r_c > r_r), mean margin, mean chosen and rejected reward, and
    the mean and standard deviation of all their rewards (``reward_mean``, ``reward_std``)."""
    n = len(chosen)
    both = [*chosen, *rejected]
    return {
        "accuracy": sum(c > r for c, r in zip(chosen, rejected, strict=True)) / n,
        "margin": (sum(chosen) - sum(rejected)) / n,
        "reward_chosen": sum(chosen) / n,
        "reward_rejected": sum(rejected) / n,
        "reward_mean": statistics.fmean(both),
        "reward_std": statistics.stdev(both) if len(both) > 1 else 0.0,
    }


def calibration_bins(diffs: Sequence[float], n_bins: int = 10) -> list[dict[str, float]]:
    """Reliability of P(A preferred over B) = sigmoid(r_A - r_B) on held-out pairs.

    Every pair is counted in both orders, (chosen, rejected) with outcome 1 and (rejected,
    chosen) with outcome 0, so the predictions span [0, 1] and a calibrated model has, in each
    bin, an observed share of outcome 1 equal to its mean prediction. Empty bins are left out.
    """
    points = []
    for d in diffs:
        p = 1.0 / (1.0 + math.exp(-max(min(d, 50.0), -50.0)))
        points += [(p, 1.0), (1.0 - p, 0.0)]
    bins = []
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        inside = [(p, y) for p, y in points if lo <= p < hi or (b == n_bins - 1 and p == 1.0)]
        if inside:
            bins.append(
                {
                    "lo": lo,
                    "hi": hi,
                    "predicted": sum(p for p, _ in inside) / len(inside),
                    "observed": sum(y for _, y in inside) / len(inside),
                    "count": len(inside),
                }
            )
    return bins


def expected_calibration_error(bins: Sequence[dict[str, float]]) -> float:
    """Count-weighted mean |observed - predicted| over the bins."""
    total = sum(b["count"] for b in bins)
    return sum(b["count"] * abs(b["observed"] - b["predicted"]) for b in bins) / max(total, 1)


def plot_calibration(bins: Sequence[dict[str, float]], out_png: Path, title: str) -> None:
    """Reliability diagram: observed share vs mean prediction per bin, with the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.plot([0, 1], [0, 1], "--", color="grey", label="calibrated")
    ax.plot([b["predicted"] for b in bins], [b["observed"] for b in bins], "o-", label="model")
    for b in bins:
        ax.annotate(str(int(b["count"])), (b["predicted"], b["observed"]), fontsize=7)
    ax.set_xlabel("predicted P(first preferred) = sigmoid(r_first - r_second)")
    ax.set_ylabel("observed share first preferred")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)


def _result(
    cfg: RewardConfig,
    fit: PairFit,
    final: PairEval | None,
    *,
    n: tuple[int, int],
    bad: tuple[list[Any], int],
) -> RewardResult:
    start, end, _ = window_means(fit.losses) if fit.losses else (None, None, 0)
    first = fit.evals[0] if fit.evals and fit.evals[0]["step"] == 0 else None
    bins = calibration_bins(final.diffs, cfg.calibration_bins) if final else []
    return RewardResult(
        output_dir=cfg.output_dir,
        n_train=n[0],
        n_eval=n[1],
        rejected=len(bad[0]),
        truncated=bad[1],
        steps=len(fit.losses),
        total_steps=fit.total_steps,
        seconds=round(fit.seconds, 2),
        resumed_from=fit.resumed_from,
        loss_start=start,
        loss_end=end,
        eval_accuracy_start=first["eval_accuracy"] if first else None,
        eval_accuracy=final.accuracy if final else None,
        eval_margin=final.margin if final else None,
        eval_loss=final.loss if final else None,
        ece=expected_calibration_error(bins) if final else None,
    )


def _write_outputs(
    model: Any,
    tokenizer: Any,
    cfg: RewardConfig,
    results: tuple[RewardResult, PairEval | None],
    wall: float,
) -> None:
    """Weights, reward_model.json, plots and metrics.json (with the run's cost figures;
    ``wall`` is the run's start on ``time.perf_counter``)."""
    result, final = results
    out = Path(cfg.output_dir)
    folder = out / ("adapter" if cfg.lora.enabled else "model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if cfg.lora.enabled:
        mark_adapter_portable(folder, cfg.model)
    save_reward_info(out, base_model=cfg.model, template=cfg.template, max_seq_len=cfg.max_seq_len)
    plot_losses(
        read_metrics(out / "metrics.jsonl"),
        out / "loss_curve.png",
        title=f"reward model {cfg.model}",
    )
    metrics: dict[str, Any] = result.model_dump()
    if final is not None:
        bins = calibration_bins(final.diffs, cfg.calibration_bins)
        metrics["calibration"] = bins
        plot_calibration(bins, out / "calibration.png", f"reward model, {result.n_eval} pairs")
    metrics.update(run_figures(time.perf_counter() - wall))
    write_atomic(out / "metrics.json", [json.dumps(metrics, indent=2)])


def format_reward_summary(result: RewardResult) -> str:
    """What ``train reward`` prints at the end of a run."""
    lines = [
        f"trained {result.steps} of {result.total_steps} steps on {result.n_train} pairs "
        f"({result.seconds} s); rejected {result.rejected}, truncated {result.truncated}"
    ]
    if result.loss_start is not None and result.loss_end is not None:
        lines.append(f"train loss {result.loss_start:.4f} -> {result.loss_end:.4f}")
    if result.eval_accuracy is not None:
        start = result.eval_accuracy_start
        before = f"{start:.3f} -> " if start is not None else ""
        lines.append(
            f"held-out pair accuracy {before}{result.eval_accuracy:.3f} on {result.n_eval} "
            f"pairs; mean margin {result.eval_margin:.3f}; ECE {result.ece:.3f}"
        )
    lines.append(f"outputs in {result.output_dir}")
    return "\n".join(lines)
