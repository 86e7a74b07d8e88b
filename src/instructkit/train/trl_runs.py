"""What the TRL-backed workflows (``train dpo``, ``train grpo``) share: their ``train:`` section,
the TrainingArguments it becomes, the callback that copies TRL's logs into our metrics.jsonl,
resume from the newest checkpoint, and the TRL warnings we silence on purpose.

Usage (inside a workflow)::

    args = DPOConfig(**trainer_arguments(cfg.train, out / "checkpoints", progress=True), beta=0.1)
    logger = MetricsLogger(out, cfg.report_to)
    trainer = Trainer(..., callbacks=[metrics_callback(logger)])
    with trl_warnings_ignored():
        trainer.train(resume_from_checkpoint=resume_checkpoint(out, cfg.train))

TRL's trainers are Hugging Face ``Trainer`` subclasses: checkpoints are ``checkpoint-N`` folders
with the optimizer, scheduler and RNG states, so a killed run resumes where its last checkpoint
left it (``resume_from_checkpoint``), including the data order and, for GRPO, the sampling seeds.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from instructkit.data.templates import TemplateName
from instructkit.models import DEFAULT_MODEL
from instructkit.train.sft import AdapterConfig
from instructkit.train.tracking import MetricsLogger, SampleLogger, truncate_metrics

__all__ = [
    "TRL_METRIC_NAMES",
    "PreferenceTrainConfig",
    "metric_names",
    "metrics_callback",
    "newest_complete_checkpoint",
    "purge_step",
    "quiet_printer",
    "resume_checkpoint",
    "samples_callback",
    "trainer_arguments",
    "trl_warnings_ignored",
]

# TRL's log names -> ours (instructkit.train.tracking.RL_METRICS); metrics.jsonl keeps both
TRL_METRIC_NAMES = {
    "reward": "reward_mean",  # GRPO: mean total reward of the step's completions
    "completions/mean_length": "response_length",
    "clip_ratio/region_mean": "clip_fraction",
    "learning_rate": "lr",
    "rewards/accuracies": "accuracy",  # DPO: implicit reward beta * log(pi / ref)
    "rewards/margins": "margin",
    "rewards/chosen": "reward_chosen",
    "rewards/rejected": "reward_rejected",
}


class PreferenceTrainConfig(BaseModel):
    """Optimisation and run control of a TRL-backed run (the ``train:`` section); the names
    match :class:`~instructkit.train.loop.TrainConfig` where the setting is the same."""

    model_config = ConfigDict(extra="forbid")

    lr: float = Field(default=5e-6, gt=0)
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, gt=0)
    batch_size: int = Field(default=8, gt=0)  # pairs (DPO) or completions (GRPO) per device step
    grad_accum: int = Field(default=1, gt=0)
    schedule: Literal["cosine", "linear", "constant"] = "linear"
    warmup_ratio: float = Field(default=0.0, ge=0, le=1)
    weight_decay: float = Field(default=0.0, ge=0)
    grad_clip: float | None = Field(default=1.0, gt=0)
    grad_checkpointing: bool = False
    save_every: int | None = Field(default=None, gt=0)  # steps between checkpoints (None: none)
    keep_checkpoints: int = Field(default=2, gt=0)
    resume: bool = True  # continue from the newest checkpoint in output_dir/checkpoints
    log_every: int = Field(default=1, gt=0)
    seed: int = 0


class TRLRunConfig(BaseModel):
    """What ``train dpo`` and ``train grpo`` share: the model, the template, LoRA, the
    ``train:`` section, the dtype and the tracking backends."""

    model_config = ConfigDict(extra="forbid")

    model: str = DEFAULT_MODEL
    template: TemplateName = "tokenizer"
    lora: AdapterConfig = Field(default_factory=AdapterConfig)
    train: PreferenceTrainConfig = Field(default_factory=PreferenceTrainConfig)
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    report_to: list[str] = Field(default_factory=list)


def trainer_arguments(
    cfg: PreferenceTrainConfig, run_dir: Path, *, progress: bool, bf16: bool = False
) -> dict[str, Any]:
    """Keyword arguments shared by TRL's DPOConfig and GRPOConfig (TrainingArguments)."""
    return {
        "output_dir": str(run_dir),
        "learning_rate": cfg.lr,
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps or -1,
        "per_device_train_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "lr_scheduler_type": cfg.schedule,
        "warmup_steps": cfg.warmup_ratio,  # transformers 5: a float < 1 is a ratio of the steps
        "weight_decay": cfg.weight_decay,
        "max_grad_norm": cfg.grad_clip or 0.0,
        "activation_checkpointing": cfg.grad_checkpointing,  # transformers 5 name
        "save_strategy": "steps" if cfg.save_every else "no",
        "save_steps": cfg.save_every or 500,
        "save_total_limit": cfg.keep_checkpoints,
        "logging_steps": cfg.log_every,
        "logging_first_step": True,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "bf16": bf16,
        "report_to": "none",  # our MetricsLogger mirrors to the backends in report_to
        "disable_tqdm": not progress,
        "use_cpu": not _cuda(),
        "dataloader_num_workers": 0,
    }


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resume_checkpoint(out: Path, cfg: PreferenceTrainConfig, *, main: bool = True) -> str | None:
    """The newest complete ``checkpoint-N`` under ``out/checkpoints`` (None for a fresh run);
    the metrics logged after that step are dropped, since the resumed run logs them again."""
    ckpt = newest_complete_checkpoint(out / "checkpoints") if cfg.resume else None
    if main:
        last = int(ckpt.name.split("-")[-1]) if ckpt else -1
        truncate_metrics(out / "metrics.jsonl", last)
        truncate_metrics(out / "samples.jsonl", last)
        if ckpt:
            print(f"resuming from {ckpt}")
    return str(ckpt) if ckpt else None


def purge_step(ckpt: str | None) -> int | None:
    """The first step a run resumed from ``ckpt`` (``.../checkpoint-N``) logs: N + 1."""
    return int(ckpt.rsplit("-", 1)[-1]) + 1 if ckpt else None


def newest_complete_checkpoint(run_dir: Path) -> Path | None:
    """Transformers writes a checkpoint in place, trainer_state.json last: a folder without a
    readable one was torn by a kill and is skipped (transformers' get_last_checkpoint would
    pick it and fail to load it)."""
    found = []
    for path in run_dir.glob("checkpoint-*") if run_dir.is_dir() else []:
        step = path.name.split("-")[-1]
        try:
            json.loads((path / "trainer_state.json").read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if step.isdigit():
            found.append((int(step), path))
    return max(found)[1] if found else None


def metrics_callback(logger: MetricsLogger, names: dict[str, str] | None = None) -> Any:
    """A transformers ``TrainerCallback`` that appends each of TRL's log events (loss, rewards,
    KL, ...) to our metrics.jsonl with ``step`` = the optimizer step. Each key keeps TRL's name
    and, when ``names`` (default :data:`TRL_METRIC_NAMES`) has one, is also logged under ours
    (``reward`` -> ``reward_mean``; an ``eval_`` prefix is kept: ``eval_rewards/margins`` ->
    ``eval_margin``). Non-finite numbers are logged as null."""
    from transformers import TrainerCallback

    event_names = metric_names(names if names is not None else TRL_METRIC_NAMES)

    class MetricsCallback(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and getattr(state, "is_world_process_zero", True):  # one writer
                logger.log({"step": int(state.global_step), **event_names(logs)})

    return MetricsCallback()


def metric_names(names: dict[str, str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """``logs -> event``: finite numbers kept (others null), each key also under its name."""

    def event(logs: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in logs.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                value = float(value) if math.isfinite(value) else None
            out[key] = value
            prefix, bare = ("eval_", key[5:]) if key.startswith("eval_") else ("", key)
            if bare in names:
                out[prefix + names[bare]] = value
        return out

    return event


def samples_callback(samples: SampleLogger, pending: list[tuple[str, str, float]]) -> Any:
    """A ``TrainerCallback`` that writes ``pending`` (the latest scored (prompt, response,
    reward) triples, filled by the reward function) to samples.jsonl at each due step."""
    from transformers import TrainerCallback

    class SamplesCallback(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            step = int(state.global_step)
            main = getattr(state, "is_world_process_zero", True)
            if main and pending and samples.due(step, last=step == state.max_steps):
                samples.log(
                    step, [p for p, _, _ in pending], [r for _, r, _ in pending],
                    [x for _, _, x in pending],
                )  # fmt: skip

    return SamplesCallback()


def quiet_printer(trainer: Any) -> Any:
    """Drop the callback that prints every log dict to stdout (metrics.jsonl has them)."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


@contextmanager
def trl_warnings_ignored() -> Iterator[None]:
    """Hide the warnings TRL/transformers raise on our path with nothing of ours to change.

    - ``torch.utils.checkpoint`` / ``use_reentrant`` notices when TRL toggles checkpointing;
    - transformers' notice that ``model.config`` and ``generation_config`` disagree on the pad
      token, which TRL sets itself.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*use_reentrant.*")
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
        yield
