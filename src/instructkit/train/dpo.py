"""Direct Preference Optimization: ``instructkit train dpo PAIRS.jsonl -o runs/dpo``.

DPO (Rafailov et al., 2023, "Direct Preference Optimization: Your Language Model is Secretly a
Reward Model") trains the policy on (prompt, chosen, rejected) pairs with the loss
``-log sigmoid(beta * ((log pi(c) - log ref(c)) - (log pi(r) - log ref(r))))``; ``loss_type``
picks TRL's variants: ``sigmoid`` (the paper), ``ipo`` (Azar et al., 2023: squared distance to
1/(2 beta)), ``hinge`` (SLiC, Zhao et al., 2023), ``robust`` (Chowdhury et al., 2024, with
``label_smoothing``). The optimisation is TRL's ``DPOTrainer``; the data is ours:

- pairs are read by :func:`instructkit.data.formats.load_records` in every preference format it
  knows (TRL prompt/chosen/rejected as strings or message lists, HH transcripts, ShareGPT /
  LLaMA-Factory pairs, Alpaca chosen/rejected), with its rejects, plus two checks of our own:
  a pair whose chosen equals its rejected, and a prompt that leaves no room in ``max_seq_len``;
- each side is tokenized by :func:`~instructkit.data.tokenize.tokenize_conversation` with our
  chat template, exactly as ``train sft`` would tokenize it (:func:`tokenize_pair`), and TRL
  receives the token ids (``prompt_ids``/``chosen_ids``/``rejected_ids``), so the response
  tokens DPO scores are exactly the tokens SFT trains on (response plus end-of-turn marker).

On LoRA the reference policy is the base model with the adapter disabled (TRL does this when
it wraps the model from our ``peft_config`` and no ``ref_model`` is given); with ``lora.enabled:
false`` TRL keeps a frozen copy. ``run_dpo(cfg)`` writes into ``output_dir``: ``adapter/`` (or
``model/``), ``config.yaml``, ``metrics.jsonl`` (per logging step TRL's log, e.g. loss,
rewards/accuracies, rewards/margins, entropy, plus our names for them: accuracy, margin,
reward_chosen, reward_rejected; eval_* the same), ``summary.json`` with the held-out
implicit-reward accuracy and chosen-rejected margin before and after training,
``loss_curve.png``, ``rejects.jsonl`` (with ``skip_invalid``) and ``checkpoints/``; a killed
run resumes from its newest checkpoint.
"""

from __future__ import annotations

import copy
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from instructkit.config import save_config
from instructkit.data.records import Conversation, Message, PreferencePair
from instructkit.data.sources import SourceField, SpecLike, missing_source, source_name
from instructkit.data.templates import ChatTemplate, get_template
from instructkit.data.tokenize import IGNORE_INDEX, tokenize_conversation
from instructkit.errors import ConfigError, DataFormatError, TrainingError
from instructkit.io import write_atomic
from instructkit.models import load_model, mark_adapter_portable, peft_checkpointing_warning_ignored
from instructkit.train.sft import lora_config, removed_on_failure, resolve_dtype
from instructkit.train.tracking import (
    MetricsLogger,
    check_backends,
    plot_losses,
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
    trainer_arguments,
    trl_warnings_ignored,
)

__all__ = [
    "DPORunConfig",
    "DPOResult",
    "TokenizedPair",
    "dpo_config_problems",
    "load_pairs",
    "run_dpo",
    "tokenize_pair",
]

LossType = Literal["sigmoid", "ipo", "hinge", "robust"]


class DPORunConfig(TRLRunConfig):
    """The whole ``train dpo`` workflow; YAML keys, attributes and --set paths are the same."""

    output_dir: str = "runs/dpo"
    # preference pairs: a path or a dataset spec (path, split, subset, columns, format,
    # file_type; docs/data.md), any file kind and format the loader reads
    data: SourceField = ""
    format: str | None = None  # auto-detected when None (overrides data.format when given)
    eval_path: SourceField | None = None  # held-out pairs; else eval_ratio of data is held out
    eval_ratio: float = Field(default=0.1, ge=0, lt=1)
    max_seq_len: int = Field(default=1024, gt=8)  # prompt + response tokens per side
    skip_invalid: bool = False
    loss_type: LossType = "sigmoid"
    beta: float = Field(default=0.1, gt=0)
    label_smoothing: float = Field(default=0.0, ge=0, lt=0.5)  # robust / conservative DPO


class DPOResult(BaseModel):
    output_dir: str
    steps: int
    n_train: int
    n_eval: int
    rejected: int
    before: dict[str, float]  # held-out implicit-reward accuracy and margin before training
    after: dict[str, float]
    resumed_from: str | None = None


@dataclass(frozen=True)
class TokenizedPair:
    """Token ids of a pair: the shared prompt, and each response with its end-of-turn marker."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]

    def to_row(self) -> dict[str, list[int]]:
        return {
            "prompt_ids": self.prompt_ids,
            "chosen_ids": self.chosen_ids,
            "rejected_ids": self.rejected_ids,
        }


def _final_turn_only(pair: PreferencePair, response: str) -> Conversation:
    """The pair's prompt plus ``response``, with loss on the final response only (a prompt
    message's own ``train`` flag does not make an earlier turn a DPO target)."""
    prompt = [Message(m.role, m.content, m.input, False) for m in pair.prompt]
    return Conversation(prompt + [Message("assistant", response, None, True)], pair.metadata)


def _split(ids: list[int], labels: list[int]) -> tuple[list[int], list[int]]:
    """(prompt ids, response ids): the labelled span, and everything before it."""
    trained = [i for i, x in enumerate(labels) if x != IGNORE_INDEX]
    if not trained:
        raise DataFormatError("the response has no token left to score.", field="chosen")
    return ids[: trained[0]], ids[trained[0] : trained[-1] + 1]


def tokenize_pair(
    pair: PreferencePair, template: ChatTemplate, tokenizer: Any, max_seq_len: int
) -> TokenizedPair:
    """Tokenize both sides as ``train sft`` tokenizes a conversation (same template, same
    response-only mask); DataFormatError when they are equal or the prompt does not fit."""
    if pair.chosen.strip() == pair.rejected.strip():
        raise DataFormatError(
            "chosen and rejected are the same response, so the pair prefers nothing.",
            field="rejected",
            fix="drop the pair or give it a different rejected response.",
        )
    sides = []
    for response in (pair.chosen, pair.rejected):
        ex = tokenize_conversation(_final_turn_only(pair, response), template, tokenizer)
        sides.append(_split(ex.input_ids, ex.labels))
    (prompt, chosen), (prompt_r, rejected) = sides
    if prompt != prompt_r:  # segments are tokenized apart, so this holds for any template
        raise TrainingError("the prompt tokenized differently before chosen and rejected")
    if len(prompt) >= max_seq_len:
        raise DataFormatError(
            f"the prompt is {len(prompt)} tokens, which leaves no room for a response within "
            f"max_seq_len={max_seq_len}.",
            field="prompt",
            fix="raise max_seq_len, shorten the prompt, or set skip_invalid: true.",
        )
    keep = max_seq_len - len(prompt)  # TRL cuts each side to max_length the same way
    return TokenizedPair(prompt, chosen[:keep], rejected[:keep])


def load_pairs(
    spec: SpecLike, cfg: DPORunConfig, template: ChatTemplate, tokenizer: Any
) -> tuple[list[TokenizedPair], list[dict[str, Any]]]:
    """Tokenized pairs of ``spec`` (a path or a dataset spec) and the rejected rows (with
    skip_invalid) as dicts."""
    from instructkit.data.formats import load_records

    path = source_name(spec)
    loaded = load_records(spec, cfg.format, skip_invalid=cfg.skip_invalid)
    rejects = [r.to_dict() for r in loaded.rejects]
    pairs: list[TokenizedPair] = []
    for record, row in zip(loaded.records, loaded.row_numbers, strict=True):
        try:
            if not isinstance(record, PreferencePair):
                raise DataFormatError(
                    "the row is a conversation, not a preference pair.",
                    field="chosen",
                    fix="give the row 'chosen' and 'rejected' responses (docs/preference.md).",
                )
            pairs.append(tokenize_pair(record, template, tokenizer, cfg.max_seq_len))
        except DataFormatError as e:
            if not cfg.skip_invalid:
                fix = e.fix or "mend the row, or set skip_invalid: true."
                raise DataFormatError(e.reason, path=path, row=row, field=e.field, fix=fix) from e
            rejects.append({"path": path, "row": row, "field": e.field, "reason": e.reason})
    return pairs, rejects


def dpo_config_problems(
    cfg: DPORunConfig, *, exists: Callable[[Path], bool] = Path.exists
) -> list[str]:
    """What ``cfg``'s model cannot check alone (files, the loss's options); ``exists`` says
    whether a file is there (a recipe counts the files earlier stages will write)."""
    problems = []
    if not cfg.data:
        problems.append("data: a file of preference pairs is needed")
    else:
        problems.append(missing_source("data", cfg.data, exists=exists) or "")
    if cfg.eval_path:
        problems.append(missing_source("eval_path", cfg.eval_path, exists=exists) or "")
    problems = [p for p in problems if p]
    if cfg.label_smoothing and cfg.loss_type not in ("sigmoid", "robust"):
        problems.append(f"label_smoothing: only sigmoid and robust use it, not {cfg.loss_type}")
    return problems


def _check(cfg: DPORunConfig) -> None:
    problems = dpo_config_problems(cfg)
    if problems:
        raise ConfigError(
            f"{len(problems)} config problem(s): " + "; ".join(problems),
            fix="correct the keys above.",
        )
    check_backends(cfg.report_to)


def _held_out(
    pairs: list[TokenizedPair], cfg: DPORunConfig, template: ChatTemplate, tokenizer: Any
) -> tuple[list[TokenizedPair], list[TokenizedPair], list[dict[str, Any]]]:
    """(train pairs, eval pairs, eval rejects): eval_path, else eval_ratio of the data."""
    if cfg.eval_path:
        held, rejects = load_pairs(cfg.eval_path, cfg, template, tokenizer)
        return pairs, held, rejects
    if cfg.eval_ratio <= 0 or len(pairs) < 2:
        return pairs, [], []
    order = list(range(len(pairs)))
    random.Random(cfg.train.seed).shuffle(order)
    held_idx = set(order[: max(1, round(cfg.eval_ratio * len(pairs)))])
    train = [p for i, p in enumerate(pairs) if i not in held_idx]
    return train, [pairs[i] for i in sorted(held_idx)], []


def _dataset(pairs: list[TokenizedPair]) -> Any:
    from datasets import Dataset

    return Dataset.from_list([p.to_row() for p in pairs])


def _trainer(
    cfg: DPORunConfig,
    model: Any,
    tokenizer: Any,
    data: tuple[Any, Any],
    logger: MetricsLogger,
    progress: bool,
) -> Any:
    """TRL's DPOTrainer on our tokenized pairs (its own tokenization is skipped)."""
    from trl import DPOConfig, DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        """Takes prompt_ids/chosen_ids/rejected_ids as they are (tokenized by us)."""

        def _prepare_dataset(self, dataset: Any, *args: Any, **kwargs: Any) -> Any:
            return dataset

    out = Path(cfg.output_dir)
    args = DPOConfig(
        **trainer_arguments(cfg.train, out / "checkpoints", progress=progress),
        per_device_eval_batch_size=_eval_batch(len(data[1]) if data[1] is not None else 1),
        max_length=cfg.max_seq_len,
        loss_type=[cfg.loss_type],
        beta=cfg.beta,
        label_smoothing=cfg.label_smoothing,
        precompute_ref_log_probs=False,
    )
    # full fine-tuning: a frozen copy is the reference (TRL would reload it from a hub id/path)
    ref = None if cfg.lora.enabled else copy.deepcopy(model).eval()
    with peft_checkpointing_warning_ignored():
        trainer = PretokenizedDPOTrainer(
            model=model,
            ref_model=ref,
            args=args,
            train_dataset=data[0],
            eval_dataset=data[1],
            processing_class=tokenizer,
            peft_config=lora_config(cfg.lora) if cfg.lora.enabled else None,
            callbacks=[metrics_callback(logger)],
        )
    return quiet_printer(trainer)


def _eval_batch(n_eval: int, most: int = 8) -> int:
    """The largest batch <= ``most`` that divides the eval set: TRL averages per-batch means,
    which equal the per-pair mean only when every batch has the same size."""
    return max(d for d in range(1, most + 1) if n_eval % d == 0)


def _implicit_reward(trainer: Any, has_eval: bool) -> dict[str, float]:
    """Held-out implicit-reward accuracy (share of pairs where beta*log(pi/ref) of chosen beats
    rejected) and mean margin; empty when there is no eval set."""
    if not has_eval:
        return {}
    m = trainer.evaluate()
    return {
        "accuracy": float(m["eval_rewards/accuracies"]),
        "margin": float(m["eval_rewards/margins"]),
        "loss": float(m["eval_loss"]),
    }


def run_dpo(cfg: DPORunConfig, *, progress: bool = True) -> DPOResult:
    """Run the DPO workflow described by ``cfg``; see the module docstring."""
    _check(cfg)
    out = Path(cfg.output_dir)
    wall = time.perf_counter()
    with (
        removed_on_failure(out, enabled=True, checkpoint=newest_complete_checkpoint),
        trl_warnings_ignored(),
    ):
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        model, tokenizer = load_model(cfg.model, dtype=resolve_dtype(cfg.dtype))
        template = get_template(cfg.template, tokenizer)
        pairs, rejects = load_pairs(cfg.data, cfg, template, tokenizer)
        train, held, eval_rejects = _held_out(pairs, cfg, template, tokenizer)
        rejects += eval_rejects
        if not train:
            raise TrainingError(
                f"{source_name(cfg.data)}: no pair left to train on ({len(rejects)} rejected).",
                fix="mend the rows listed in rejects.jsonl, or lower eval_ratio.",
            )
        print(f"pairs: train {len(train)}, eval {len(held)}, rejected {len(rejects)}")
        if rejects:
            write_atomic(
                out / "rejects.jsonl", [json.dumps(r, default=str) + "\n" for r in rejects]
            )
        ckpt = resume_checkpoint(out, cfg.train)
        eval_ds = _dataset(held) if held else None
        logger = MetricsLogger(out, cfg.report_to, run_name=out.name, purge_step=purge_step(ckpt))
        trainer = _trainer(cfg, model, tokenizer, (_dataset(train), eval_ds), logger, progress)
        started = time.perf_counter()
        before = _before(out, trainer, held, ckpt)
        trainer.train(resume_from_checkpoint=ckpt)
        after = _implicit_reward(trainer, bool(held))
        logger.close()
        result = DPOResult(
            output_dir=str(out),
            steps=int(trainer.state.global_step),
            n_train=len(train),
            n_eval=len(held),
            rejected=len(rejects),
            before=before,
            after=after,
            resumed_from=ckpt,
        )
        _write_outputs(trainer, tokenizer, cfg, result, (time.perf_counter() - started, wall))
    return result


def _before(
    out: Path, trainer: Any, held: list[TokenizedPair], ckpt: str | None
) -> dict[str, float]:
    """Held-out numbers before training: measured now, or kept from the run being resumed."""
    saved = out / "before.json"
    if ckpt is not None and saved.exists():
        return dict(json.loads(saved.read_text("utf-8")))
    before = _implicit_reward(trainer, bool(held))
    write_atomic(saved, [json.dumps(before)])
    return before


def _write_outputs(
    trainer: Any, tokenizer: Any, cfg: DPORunConfig, result: DPOResult, timing: tuple[float, float]
) -> None:
    """Weights, the loss curve and summary.json (``timing``: the training's seconds, and the
    run's start on ``time.perf_counter``)."""
    out = Path(result.output_dir)
    target = out / ("adapter" if cfg.lora.enabled else "model")
    trainer.model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    if cfg.lora.enabled:
        mark_adapter_portable(target, cfg.model)
    events = [e for e in read_metrics(out / "metrics.jsonl") if "loss" in e or "eval_loss" in e]
    plot_losses(events, out / "loss_curve.png", title=f"DPO ({cfg.loss_type}) {cfg.model}")
    summary = {
        "steps": result.steps,
        "n_train": result.n_train,
        "n_eval": result.n_eval,
        "rejected": result.rejected,
        "held_out_before": result.before,
        "held_out_after": result.after,
        "resumed_from": result.resumed_from,
        "seconds": round(timing[0], 2),
        **run_figures(time.perf_counter() - timing[1]),
    }
    write_atomic(out / "summary.json", [json.dumps(summary, indent=2)])


def format_summary(result: DPOResult) -> str:
    """What ``train dpo`` prints at the end of a run."""
    lines = [f"trained {result.steps} steps on {result.n_train} pairs ({result.rejected} rejected)"]
    if result.before and result.after:
        b, a = result.before, result.after
        lines.append(
            f"held-out implicit-reward accuracy {b['accuracy']:.3f} -> {a['accuracy']:.3f}, "
            f"margin {b['margin']:.4f} -> {a['margin']:.4f} ({result.n_eval} pairs)"
        )
    lines.append(f"outputs in {result.output_dir}")
    return "\n".join(lines)
