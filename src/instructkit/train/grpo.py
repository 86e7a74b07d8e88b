"""Group Relative Policy Optimization: ``instructkit train grpo PROMPTS.jsonl -o runs/grpo``.

GRPO (Shao et al., 2024, "DeepSeekMath") samples ``num_generations`` completions per prompt,
scores them with a reward, and uses each completion's reward standardised within its group as
its advantage (no value model), with a clipped policy-gradient loss and, when ``beta > 0``, a
per-token KL penalty to the reference policy (the paper's k3 estimator; beta 0.04 there). The
optimisation, sampling and logging are TRL's ``GRPOTrainer``; the data and the reward are ours:

- prompts are read and checked as ``train ppo`` reads them (:mod:`instructkit.train.prompts`):
  rows that hold ``prompt`` (a string or a message list) or chat ``messages``, cut after the
  last user turn (the count is printed), checked by the data layer's turn rules and by the
  reward before the model loads (one line naming file, row and field; with ``skip_invalid``
  a reject), rendered by our chat template with the generation prompt exactly as ``train sft``
  renders a prompt; a prompt whose tokens plus ``max_completion_length`` exceed
  ``max_seq_len`` is a reject (counted, ``rejects.jsonl``);
- the reward is any :class:`~instructkit.train.rewards.RewardFn`: :func:`reward_function`
  adapts it to TRL's ``f(prompts, completions, **columns) -> list[float]``, handing each
  :class:`~instructkit.train.rewards.RewardItem` the last user message and the full source row
  (so a verifier reads its ``instruction_id_list``/``kwargs`` or ``answer``); every row is
  checked by ``reward.check`` before the model loads.

On LoRA the reference is the base with the adapter disabled (TRL, when ``beta > 0``). Rollouts
use ``model.generate`` (the CPU path); on GPUs TRL can generate with vLLM (docs/grpo.md).
``run_grpo(cfg, reward)`` writes ``adapter/`` (or ``model/``), ``config.yaml``,
``metrics.jsonl`` (per step TRL's log plus our names for it: reward_mean, reward_std, kl,
response_length, entropy, clip_fraction, loss; ``trl_runs.TRL_METRIC_NAMES``; and
rollout_tokens_per_s), ``samples.jsonl`` (a few scored completions every ``samples_every``
steps), ``reward_curve.png``, ``summary.json`` (with the run's cost:
:func:`~instructkit.train.tracking.run_figures`) and ``checkpoints/``.

A killed run resumes from its newest checkpoint with the rollouts an unkilled run would draw:
the RNG states are in the checkpoint, each epoch's prompt order is drawn from (seed, epoch)
(:func:`_epoch_seeded`), and ``train.save_every`` must be a multiple of ``num_iterations``, so
that a checkpoint never falls inside the passes over one generation (TRL regenerates after a
resume).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from instructkit.config import save_config
from instructkit.data.prompt_rows import PromptRow
from instructkit.data.sources import SourceField, missing_source, source_name
from instructkit.data.templates import get_template
from instructkit.errors import ConfigError
from instructkit.io import write_atomic
from instructkit.models import load_model, mark_adapter_portable, peft_checkpointing_warning_ignored
from instructkit.train.prompts import (
    PromptFit,
    Query,
    checked_prompt_rows,
    encode_prompts,
    report_prompt_rejects,
)
from instructkit.train.rewards import RewardFn, RewardItem
from instructkit.train.sft import lora_config, removed_on_failure, resolve_dtype
from instructkit.train.tracking import (
    MetricsLogger,
    SampleLogger,
    check_backends,
    read_metrics,
    run_figures,
)
from instructkit.train.trl_runs import (
    TRLRunConfig,
    metrics_callback,
    newest_complete_checkpoint,
    purge_step,
    quiet_printer,
    resume_checkpoint,
    samples_callback,
    trainer_arguments,
    trl_warnings_ignored,
)

__all__ = [
    "GRPORunConfig",
    "GRPOResult",
    "RolloutClock",
    "reward_function",
    "run_grpo",
]


class GRPORunConfig(TRLRunConfig):
    """The ``train grpo`` workflow; YAML keys, attributes and --set paths are the same."""

    output_dir: str = "runs/grpo"
    # prompts: rows with 'prompt' (string or messages) or 'messages'; a path or a dataset spec
    # (path, split, subset, columns, file_type; docs/data.md)
    data: SourceField = ""
    num_generations: int = Field(default=8, ge=2)  # completions per prompt (the group)
    max_completion_length: int = Field(default=128, gt=0)
    temperature: float = Field(default=1.0, gt=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    beta: float = Field(default=0.04, ge=0)  # KL coefficient; 0 loads no reference
    epsilon: float = Field(default=0.2, gt=0)  # clipping range of the policy ratio
    num_iterations: int = Field(default=1, gt=0)  # optimisation passes per generation batch
    scale_rewards: Literal["group", "batch", "none"] = "group"
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = "dapo"
    samples_every: int = Field(default=10, ge=0)  # steps between samples.jsonl rows (0: none)
    max_seq_len: int = Field(default=1024, gt=8)  # prompt + max_completion_length must fit
    skip_invalid: bool = False  # bad rows to rejects.jsonl instead of stopping


class GRPOResult(BaseModel):
    output_dir: str
    steps: int
    n_prompts: int
    reward: str  # the reward source's name
    reward_start: float | None  # mean reward over the first logged steps
    reward_end: float | None  # ... and over the last ones
    window: int
    kl_end: float | None
    resumed_from: str | None = None
    truncated: int = 0  # prompt rows cut after their last user turn


def _strip_bos(text: str, tokenizer: Any) -> str:
    """TRL tokenizes the rendered prompt with special tokens on: a BOS the template already
    wrote would be doubled, so it is dropped from the text (tokenizers that add none keep it)."""
    bos = getattr(tokenizer, "bos_token", None)
    if bos and text.startswith(bos):
        ids = tokenizer("a", add_special_tokens=True)["input_ids"]
        if ids and ids[0] == tokenizer.bos_token_id:
            return text[len(bos) :]
    return text


def reward_function(
    reward: RewardFn,
    rows: Sequence[PromptRow],
    scored: list[tuple[str, str, float]] | None = None,
) -> Any:
    """``reward`` as a TRL reward function: ``f(prompts, completions, **columns)``; the
    dataset's ``row_index`` column finds each completion's source row. ``scored``, when
    given, is replaced by the last batch's (prompt, completion, reward) for samples.jsonl."""

    def score(prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
        items = []
        for completion, index in zip(completions, columns["row_index"], strict=True):
            src = rows[int(index)]
            text = completion if isinstance(completion, str) else completion[-1]["content"]
            items.append(RewardItem(prompt=src.text, response=text, row=src.row))
        scores = [float(x) for x in reward(items)]
        if scored is not None:
            scored[:] = [(i.prompt, i.response, x) for i, x in zip(items, scores, strict=True)]
        return scores

    score.__name__ = reward.name  # TRL logs rewards/<name>/mean under this name
    return score


def _check(cfg: GRPORunConfig) -> None:
    problems = []
    if not cfg.data:
        problems.append("data: a file of prompts is needed")
    elif missing := missing_source("data", cfg.data):
        problems.append(missing)
    if cfg.train.save_every and cfg.train.save_every % cfg.num_iterations:
        problems.append(
            f"train.save_every ({cfg.train.save_every}) must be a multiple of num_iterations "
            f"({cfg.num_iterations}): a checkpoint inside a generation's iterations would resume "
            "with new rollouts"
        )
    if cfg.train.batch_size % cfg.num_generations:
        problems.append(
            f"train.batch_size ({cfg.train.batch_size}) must be a multiple of num_generations "
            f"({cfg.num_generations}): a step trains on whole groups"
        )
    if problems:
        raise ConfigError(
            f"{len(problems)} config problem(s): " + "; ".join(problems),
            fix="correct the keys above.",
        )
    check_backends(cfg.report_to)


def _save_reference(model: Any, path: Path) -> None:
    """Full fine-tuning with a KL term: TRL loads the reference from the model's path, which an
    in-process or converted model lacks, so the initial weights are saved once and named."""
    if not (path / "config.json").exists():
        model.save_pretrained(path)
    model.config._name_or_path = str(path)


def _trainer_class(clock: RolloutClock) -> Any:
    """TRL's GRPOTrainer with a data order that is a function of (seed, epoch), so that a run
    resumed in a later epoch takes the prompts an unkilled run would (see _epoch_seeded), and
    its rollouts timed into ``clock`` (and logged per step as ``rollout_tokens_per_s``)."""
    from trl import GRPOTrainer

    class GRPORunTrainer(GRPOTrainer):
        def _get_train_sampler(self, dataset: Any = None) -> Any:
            return _epoch_seeded(super()._get_train_sampler(dataset), self.args.seed)

        def _generate_single_turn(self, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            generate = super()._generate_single_turn
            completion_ids, logprobs = generate(*args, **kwargs)  # type: ignore[no-untyped-call]
            rate = clock.add(sum(len(ids) for ids in completion_ids), started)
            mode = "train" if getattr(self.model, "training", True) else "eval"
            self._metrics[mode]["rollout_tokens_per_s"].append(rate)
            return completion_ids, logprobs

    return GRPORunTrainer


def _trainer(cfg: GRPORunConfig, model: Any, tokenizer: Any, parts: dict[str, Any]) -> Any:
    """TRL's GRPOTrainer on our rendered prompts (``parts``: dataset, reward, logger, progress,
    clock, and ``samples`` with the ``scored`` list the reward function fills)."""
    from trl import GRPOConfig

    out = Path(cfg.output_dir)
    args = GRPOConfig(
        **trainer_arguments(cfg.train, out / "checkpoints", progress=parts["progress"]),
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        beta=cfg.beta,
        epsilon=cfg.epsilon,
        num_iterations=cfg.num_iterations,
        scale_rewards=cfg.scale_rewards,
        loss_type=cfg.loss_type,
        log_completions=False,
        shuffle_dataset=True,
    )
    with peft_checkpointing_warning_ignored():
        trainer = _trainer_class(parts["clock"])(
            model=model,
            reward_funcs=[parts["reward"]],
            args=args,
            train_dataset=parts["dataset"],
            processing_class=tokenizer,
            peft_config=lora_config(cfg.lora) if cfg.lora.enabled else None,
            callbacks=[
                metrics_callback(parts["logger"]),
                samples_callback(parts["samples"], parts["scored"]),
            ],
        )
    return quiet_printer(trainer)


@dataclass
class RolloutClock:
    """Completion tokens generated and seconds spent generating them, over this process."""

    tokens: int = 0
    seconds: float = 0.0

    def add(self, tokens: int, started: float) -> float:
        """Count one generation call begun at ``started``; its tokens per second."""
        seconds = time.perf_counter() - started
        self.tokens += tokens
        self.seconds += seconds
        return tokens / max(seconds, 1e-9)


def _epoch_seeded(sampler: Any, seed: int) -> Any:
    """TRL's ``RepeatSampler`` draws each epoch's prompt order from one generator seeded once,
    so a process resumed in epoch e > 0 would replay epoch 0's order. The trainer calls
    ``set_epoch(e)`` before each pass; reseeding the generator there with (seed, e) makes the
    order of every epoch independent of how many passes this process has made (epoch 0 keeps
    TRL's order)."""
    generator = getattr(sampler, "generator", None)  # absent when the sampler does not shuffle
    if generator is not None:

        def set_epoch(epoch: int) -> None:
            generator.manual_seed(seed + 1_000_003 * epoch)

        sampler.set_epoch = set_epoch
    return sampler


def run_grpo(cfg: GRPORunConfig, reward: RewardFn, *, progress: bool = True) -> GRPOResult:
    """Run the GRPO workflow described by ``cfg`` with ``reward``; see the module docstring."""
    _check(cfg)
    out = Path(cfg.output_dir)
    wall = time.perf_counter()
    with (
        removed_on_failure(out, enabled=True, checkpoint=newest_complete_checkpoint),
        trl_warnings_ignored(),
    ):
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        fit = PromptFit(
            source_name(cfg.data), cfg.max_seq_len, cfg.max_completion_length,
            "max_completion_length",
            cfg.skip_invalid,
        )  # fmt: skip
        rows, rejects = checked_prompt_rows(cfg.data, reward, skip_invalid=cfg.skip_invalid)
        model, tokenizer = load_model(cfg.model, dtype=resolve_dtype(cfg.dtype))
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"  # generation pads prompts on the left
        template = get_template(cfg.template, tokenizer)
        queries, too_long = encode_prompts(rows, template, tokenizer, fit)
        rejects += too_long
        report_prompt_rejects(out, rejects, too_long, len(queries), fit)
        prompts = [q.source for q in queries]
        print(f"reward: {reward.name}")
        ckpt = resume_checkpoint(out, cfg.train)
        logger = MetricsLogger(out, cfg.report_to, run_name=out.name, purge_step=purge_step(ckpt))
        scored: list[tuple[str, str, float]] = []
        parts = {
            "dataset": _dataset(queries, tokenizer),
            "reward": reward_function(reward, prompts, scored),
            "logger": logger,
            "progress": progress,
            "clock": RolloutClock(),
            "samples": SampleLogger(out, cfg.samples_every),
            "scored": scored,
        }
        if cfg.beta > 0 and not cfg.lora.enabled:
            _save_reference(model, out / "reference")
        trainer = _trainer(cfg, model, tokenizer, parts)
        started = time.perf_counter()
        trainer.train(resume_from_checkpoint=ckpt)
        logger.close()
        result = _result(cfg, out, int(trainer.state.global_step), len(prompts), reward.name, ckpt)
        result.truncated = sum(1 for p in prompts if p.dropped)
        timing = (time.perf_counter() - started, wall)
        _write_outputs(trainer, tokenizer, cfg, result, timing, parts["clock"])
    return result


def _dataset(queries: Sequence[Query], tokenizer: Any) -> Any:
    """TRL's prompt dataset: each prompt rendered, with its row's index (for the reward)."""
    from datasets import Dataset

    rows = [
        {"prompt": _strip_bos(q.text, tokenizer), "row_index": i} for i, q in enumerate(queries)
    ]
    return Dataset.from_list(rows)


def _result(
    cfg: GRPORunConfig, out: Path, steps: int, n: int, name: str, ckpt: str | None
) -> GRPOResult:
    """Reward at the start and end (means over a window of logged steps) and the last KL."""
    events = [e for e in read_metrics(out / "metrics.jsonl") if e.get("reward_mean") is not None]
    k = max(1, min(10, len(events) // 4))
    kls = [e["kl"] for e in events if e.get("kl") is not None]
    return GRPOResult(
        output_dir=str(out),
        steps=steps,
        n_prompts=n,
        reward=name,
        reward_start=_mean([e["reward_mean"] for e in events[:k]]),
        reward_end=_mean([e["reward_mean"] for e in events[-k:]]),
        window=k,
        kl_end=kls[-1] if kls else None,
        resumed_from=ckpt,
    )


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _write_outputs(
    trainer: Any,
    tokenizer: Any,
    cfg: GRPORunConfig,
    result: GRPOResult,
    timing: tuple[float, float],
    clock: RolloutClock,
) -> None:
    """Weights, the reward curve and summary.json (``timing``: the training's seconds, and
    the run's start on ``time.perf_counter``)."""
    out = Path(result.output_dir)
    target = out / ("adapter" if cfg.lora.enabled else "model")
    trainer.model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    if cfg.lora.enabled:
        mark_adapter_portable(target, cfg.model)
    _plot(read_metrics(out / "metrics.jsonl"), out / "reward_curve.png", f"GRPO {cfg.model}")
    summary = {
        **result.model_dump(),
        "seconds": round(timing[0], 2),
        **run_figures(time.perf_counter() - timing[1], (clock.tokens, clock.seconds)),
    }
    write_atomic(out / "summary.json", [json.dumps(summary, indent=2)])


def _plot(events: list[dict[str, Any]], png: Path, title: str) -> None:
    """Mean reward and KL against the optimizer step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for key, axis in (("reward_mean", ax), ("kl", ax.twinx())):
        points = [(e["step"], e[key]) for e in events if e.get(key) is not None]
        if points:
            color = "C0" if key == "reward_mean" else "C1"
            axis.plot(*zip(*points, strict=True), color=color, label=key)
            axis.set_ylabel(key, color=color)
    ax.set_xlabel("optimizer step")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


def format_summary(result: GRPOResult) -> str:
    """What ``train grpo`` prints at the end of a run."""
    lines = [f"trained {result.steps} steps on {result.n_prompts} prompts (reward {result.reward})"]
    if result.reward_start is not None and result.reward_end is not None:
        lines.append(
            f"mean reward {result.reward_start:.4f} -> {result.reward_end:.4f} "
            f"(first and last {result.window} logged steps)"
            + (f"; KL {result.kl_end:.4f}" if result.kl_end is not None else "")
        )
    lines.append(f"outputs in {result.output_dir}")
    return "\n".join(lines)
