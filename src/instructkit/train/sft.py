"""Supervised instruction fine-tuning: ``instructkit train sft --config FILE.yaml``.

``run_sft(cfg)`` reads top to bottom: load the model; read every dataset (instruction data in
any supported format, FLAN task items rendered with zero-/few-shot/chain-of-thought mixing, or
plain text trained with full loss); mix them (proportional with caps, temperature, or explicit
weights; text at a set ratio); tokenize with response-only masks; hold out an eval split;
wrap in LoRA (or train all weights); :func:`~instructkit.train.loop.fit`; write the adapter
(and, with ``merge: true``, the merged model), the resolved config, metrics.jsonl,
loss_curve.png and summary.json into ``output_dir``. A run that fails before its first
checkpoint removes the ``output_dir`` it created.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from instructkit.config import save_config
from instructkit.data.formats import Reject
from instructkit.data.loader import load_dataset, reject_of, with_skip_hint
from instructkit.data.mixing import Mixture, MixtureConfig, Source, build_mixture
from instructkit.data.records import Conversation
from instructkit.data.sources import DatasetSpec, file_type_of, iter_source_rows, source_name
from instructkit.data.tasks import MixConfig
from instructkit.data.templates import TemplateName, get_template
from instructkit.data.tokenize import TokenizedExample, TrainOn, tokenize_conversation
from instructkit.data.workflows import conversations_of
from instructkit.errors import ConfigError, DataFormatError, TemplateError, TrainingError
from instructkit.io import BadLine, read_text, write_atomic
from instructkit.models import (
    DEFAULT_MODEL,
    load_model,
    mark_adapter_portable,
    peft_checkpointing_warning_ignored,
)
from instructkit.train.checkpoint import latest_checkpoint
from instructkit.train.loop import FitData, FitResult, TrainConfig, fit, window_means
from instructkit.train.tracking import MetricsLogger, plot_losses, read_metrics, truncate_metrics

__all__ = [
    "AdapterConfig",
    "DatasetConfig",
    "SFTConfig",
    "SFTResult",
    "apply_lora",
    "lora_config",
    "removed_on_failure",
    "resolve_dtype",
    "sft_config_problems",
    "load_examples",
    "read_source",
    "read_sources",
    "tokenize_source",
    "SourceData",
    "run_sft",
    "resolve_dtype",
]


class AdapterConfig(BaseModel):
    """LoRA settings (``enabled: false`` trains all weights)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    r: int = Field(default=16, gt=0)
    alpha: float = Field(default=32, gt=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    target: str | list[str] = "all-linear"


class DatasetConfig(DatasetSpec):
    """One source of the training mixture: a dataset spec (path, format, file_type, split,
    subset, columns; see :class:`~instructkit.data.sources.DatasetSpec`) and how it mixes.

    For ``kind: tasks`` read from a file, ``split`` keeps the items whose ``split`` field equals
    it (e.g. train); for a hub dataset or a DatasetDict folder it names the split to read."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["sft", "tasks", "text"] = "sft"  # tasks: FLAN items; text: plain text
    name: str | None = None
    weight: float | None = Field(default=None, ge=0)
    cap: int | None = Field(default=None, gt=0)


class SFTConfig(BaseModel):
    """The whole ``train sft`` workflow; YAML keys, attributes and --set paths are the same."""

    model_config = ConfigDict(extra="forbid")

    model: str = DEFAULT_MODEL
    output_dir: str = "runs/sft"
    datasets: list[DatasetConfig] = Field(default_factory=list)
    eval_path: str | None = None
    eval_ratio: float = Field(default=0.0, ge=0, lt=1)
    template: TemplateName = "tokenizer"
    max_seq_len: int = Field(default=1024, gt=8)
    train_on: TrainOn = "all"
    skip_invalid: bool = False
    mixture: MixtureConfig = Field(default_factory=lambda: MixtureConfig.model_validate({}))
    # how kind=tasks sources are rendered (zero-/few-shot, chain of thought)
    task_mix: MixConfig = Field(default_factory=lambda: MixConfig.model_validate({}))
    lora: AdapterConfig = Field(default_factory=AdapterConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    merge: bool = False  # LoRA only: also write the merged full model (a full-size copy)
    report_to: list[str] = Field(default_factory=list)


class SFTResult(BaseModel):
    output_dir: str
    fit: dict[str, Any]
    mixture: dict[str, Any]
    n_train: int
    n_eval: int
    rejected: int


def lora_config(
    cfg: AdapterConfig, *, task_type: str = "CAUSAL_LM", modules_to_save: list[str] | None = None
) -> Any:
    """The PEFT ``LoraConfig`` of ``cfg`` (also for trainers that wrap the model themselves).

    ``modules_to_save`` names modules trained in full and saved with the adapter (a reward
    model's new ``score`` head, with ``task_type="SEQ_CLS"``)."""
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,  # type: ignore[arg-type]  # typed int, any number works
        lora_dropout=cfg.dropout,
        target_modules=cfg.target,
        task_type=task_type,
        modules_to_save=modules_to_save,
    )


def apply_lora(
    model: Any,
    cfg: AdapterConfig,
    *,
    task_type: str = "CAUSAL_LM",
    modules_to_save: list[str] | None = None,
) -> Any:
    """Wrap ``model`` with a PEFT LoRA adapter; with ``enabled: false`` return it unchanged."""
    if not cfg.enabled:
        return model
    from peft import get_peft_model

    config = lora_config(cfg, task_type=task_type, modules_to_save=modules_to_save)
    with peft_checkpointing_warning_ignored():
        return get_peft_model(model, config)


@dataclass
class SourceData:
    """One dataset as read by the loader, before tokenization: its conversations (or, for
    ``kind: text``, its documents) with their source rows, and the rows it rejected."""

    spec: DatasetConfig
    rows: list[int]
    conversations: list[Conversation] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


def read_source(spec: DatasetConfig, cfg: SFTConfig) -> SourceData:
    """Read one dataset through the loader (no model needed): bad rows raise DataFormatError
    naming the source row, or with ``skip_invalid`` become rejects."""
    if spec.kind == "text":
        return _text_source(spec, cfg.skip_invalid)
    if spec.kind == "tasks":
        return _task_source(spec, cfg)
    loaded = load_dataset(spec, skip_invalid=cfg.skip_invalid)
    convs = conversations_of(loaded.records)
    return SourceData(spec, loaded.row_numbers, convs, rejects=loaded.rejects)


def _rows_of(
    spec: DatasetConfig, skip_invalid: bool, parse: Callable[[Any, str, int], Any]
) -> tuple[list[int], list[Any], list[Reject]]:
    """``parse(value, source, row)`` of every row of ``spec``, and the rows it rejected."""
    where = source_name(spec)
    rows, values, rejects = [], [], []
    for row, value in iter_source_rows(spec):
        try:
            if isinstance(value, BadLine):
                msg = f"invalid JSON: {value.message}."
                raise DataFormatError(msg, path=where, row=row, fix="repair the line.")
            values.append(parse(value, where, row))
        except DataFormatError as e:
            if not skip_invalid:
                raise with_skip_hint(e) from e
            rejects.append(reject_of(e, where, row, value))
            continue
        rows.append(row)
    return rows, values, rejects


def _text_of(value: Any, where: str, row: int) -> str:
    if not isinstance(value, dict) or not isinstance(value.get("text"), str):
        raise DataFormatError(
            "expected an object with a string 'text'",
            path=where,
            row=row,
            field="text",
            fix='give each row {"text": "..."}.',
        )
    text: str = value["text"]
    return text


def _text_source(spec: DatasetConfig, skip_invalid: bool) -> SourceData:
    """Plain text: a .txt file (documents split at blank lines), or rows with a 'text' field."""
    if Path(spec.path).suffix == ".txt":
        docs = [d for d in read_text(spec.path).split("\n\n") if d.strip()]
        return SourceData(spec, list(range(1, len(docs) + 1)), texts=docs)
    rows, texts, rejects = _rows_of(spec, skip_invalid, _text_of)
    return SourceData(spec, rows, texts=texts, rejects=rejects)


def _task_source(spec: DatasetConfig, cfg: SFTConfig) -> SourceData:
    """FLAN task items, checked one by one against the task templates, then mixed."""
    from instructkit.data.tasks import build_task_mixture, load_task_templates, render_task_example

    templates = load_task_templates()

    def item_of(value: Any, where: str, row: int) -> dict[str, Any]:
        if not isinstance(value, dict):
            fix = "write one task item object per row."
            raise DataFormatError("expected a task item object.", path=where, row=row, fix=fix)
        try:  # every field the templates need is there
            render_task_example(value, templates, mode="zero", template_index=0)
        except (DataFormatError, TemplateError) as e:
            reason = e.reason if isinstance(e, DataFormatError) else e.message
            field_ = e.field if isinstance(e, DataFormatError) else None
            raise DataFormatError(reason, path=where, row=row, field=field_, fix=e.fix) from e
        return value

    rows, items, rejects = _rows_of(spec, cfg.skip_invalid, item_of)
    if spec.split is not None and file_type_of(spec) not in ("disk", "hub"):
        kept = [(r, it) for r, it in zip(rows, items, strict=True) if it.get("split") == spec.split]
        rows, items = [r for r, _ in kept], [it for _, it in kept]
    convs = build_task_mixture(items, templates, cfg.task_mix)
    return SourceData(spec, rows, convs, rejects=rejects)


def _text_examples(texts: list[str], tokenizer: Any, max_seq_len: int) -> list[TokenizedExample]:
    """Documents cut into windows with full loss."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    out = []
    for doc in texts:
        ids = tokenizer(doc, add_special_tokens=False)["input_ids"] + eos
        for s in range(0, len(ids), max_seq_len):
            chunk = ids[s : s + max_seq_len]
            if len(chunk) > 1:
                out.append(TokenizedExample(chunk, list(chunk)))
    return out


def tokenize_source(
    data: SourceData, cfg: SFTConfig, tokenizer: Any, template: Any
) -> tuple[list[TokenizedExample], list[Reject]]:
    """Tokenized examples of one read dataset, and its rejects (a conversation that cannot be
    tokenized is rejected citing its source row)."""
    if data.spec.kind == "text":
        return _text_examples(data.texts, tokenizer, cfg.max_seq_len), list(data.rejects)
    where = source_name(data.spec)
    out, rejects = [], list(data.rejects)
    for row, conv in zip(data.rows, data.conversations, strict=True):
        try:
            ex = tokenize_conversation(
                conv, template, tokenizer, max_seq_len=cfg.max_seq_len, train_on=cfg.train_on
            )
        except DataFormatError as e:
            if not cfg.skip_invalid:
                raise DataFormatError(
                    e.reason, path=where, row=row, field=e.field, fix=e.fix
                ) from e
            rejects.append(Reject(where, row, e.field, e.reason, conv.to_chat(), e.fix))
            continue
        out.append(ex)
    return out, rejects


def load_examples(
    spec: DatasetConfig, cfg: SFTConfig, tokenizer: Any, template: Any
) -> tuple[list[TokenizedExample], list[Reject]]:
    """Tokenized examples of one dataset, and what was rejected (with reasons)."""
    return tokenize_source(read_source(spec, cfg), cfg, tokenizer, template)


def _check_not_emptied(
    spec: DatasetConfig, examples: list[TokenizedExample], bad: list[Any], cfg: SFTConfig
) -> None:
    """A dataset left with no trainable example is an error that names the cause."""
    if any(e.n_trained for e in examples):
        return
    first = _reject_rows(bad)[0]["reason"] if bad else "its responses carry no loss tokens"
    raise TrainingError(
        f"{spec.path}: no trainable tokens left: {len(bad)} of {len(bad) + len(examples)} rows "
        f"rejected (first: {first}); max_seq_len={cfg.max_seq_len}, train_on={cfg.train_on}.",
        fix="raise max_seq_len, mend the rows listed in rejects.jsonl, or check that "
        "messages marked train: false leave a response to train on.",
    )


def _split_eval(
    examples: list[TokenizedExample], ratio: float, seed: int
) -> tuple[list[TokenizedExample], list[TokenizedExample]]:
    if ratio <= 0:
        return examples, []
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, int(round(ratio * len(examples))))
    held = set(order[:n_eval])
    return [e for i, e in enumerate(examples) if i not in held], [
        examples[i] for i in order[:n_eval]
    ]


def sft_config_problems(
    cfg: SFTConfig, *, exists: Callable[[Path], bool] = Path.exists
) -> list[str]:
    """What ``cfg``'s model cannot check alone (datasets, files, sizes); ``exists`` says
    whether a file is there (a recipe counts the files earlier stages will write)."""
    problems = []
    if not cfg.datasets:
        problems.append("datasets: at least one dataset is needed")
    for i, d in enumerate(cfg.datasets):
        if file_type_of(d) != "hub" and not exists(Path(d.path)):
            problems.append(f"datasets[{i}].path: {d.path} does not exist")
    if cfg.eval_path and not exists(Path(cfg.eval_path)):
        problems.append(f"eval_path: {cfg.eval_path} does not exist")
    if cfg.train.batch_tokens < cfg.max_seq_len:
        problems.append(
            f"train.batch_tokens ({cfg.train.batch_tokens}) < max_seq_len "
            f"({cfg.max_seq_len}): a full-length example would not fit"
        )
    return problems


def _check(cfg: SFTConfig) -> None:
    problems = sft_config_problems(cfg)
    if problems:
        raise ConfigError(
            f"{len(problems)} config problem(s): " + "; ".join(problems),
            fix="correct the keys above.",
        )


def resolve_dtype(name: str) -> Any:
    """The torch dtype a config's ``dtype`` names (auto: bfloat16 on CUDA, else float32)."""
    import torch

    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return getattr(torch, name)


def read_sources(cfg: SFTConfig) -> tuple[list[SourceData], SourceData | None]:
    """Every dataset of ``cfg`` (and ``eval_path``) read and checked, before any model loads."""
    sources = [read_source(spec, cfg) for spec in cfg.datasets]
    held = read_source(DatasetConfig(path=cfg.eval_path), cfg) if cfg.eval_path else None
    return sources, held


def _training_data(
    cfg: SFTConfig, read: tuple[list[SourceData], SourceData | None], tokenizer: Any, template: Any
) -> tuple[Mixture, list[TokenizedExample], list[Any]]:
    """Tokenize and mix every read dataset; returns the mixture, eval examples, rejects."""
    sources, rejects, eval_ex = [], [], []
    for i, data in enumerate(read[0]):
        spec = data.spec
        examples, bad = tokenize_source(data, cfg, tokenizer, template)
        rejects.extend(bad)
        _check_not_emptied(spec, examples, bad, cfg)
        if spec.kind != "text" and not cfg.eval_path:  # hold out before mixing/up-sampling
            examples, held = _split_eval(examples, cfg.eval_ratio, cfg.train.seed + i)
            eval_ex.extend(held)
        name = spec.name or f"{i}:{Path(spec.path).stem}"
        kind: Literal["sft", "text"] = "text" if spec.kind == "text" else "sft"
        sources.append(Source(name, examples, spec.weight, spec.cap, kind))
    if read[1] is not None:
        eval_ex, _ = tokenize_source(read[1], cfg, tokenizer, template)
    mixture = build_mixture(sources, cfg.mixture)
    if all(ex.n_trained == 0 for _, ex in mixture.items):
        raise TrainingError(
            f"none of the {len(mixture.items)} examples has a token that carries loss "
            f"(max_seq_len={cfg.max_seq_len}, train_on={cfg.train_on}).",
            fix="check that responses are non-empty and that not every message is marked "
            "train: false.",
        )
    return mixture, eval_ex, rejects


def run_sft(cfg: SFTConfig, *, progress: bool = True) -> SFTResult:
    """Run the SFT workflow described by ``cfg``; see the module docstring."""
    import torch
    from accelerate import Accelerator

    _check(cfg)
    read = read_sources(cfg)  # bad data is reported before the model loads
    # cpu=True lets `accelerate launch --multi_gpu` / torchrun form a gloo group on CPU machines
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    main = accelerator.is_main_process
    out = Path(cfg.output_dir)
    with removed_on_failure(out, enabled=main):
        if main:
            out.mkdir(parents=True, exist_ok=True)
            save_config(cfg, out / "config.yaml")
        model, tokenizer = load_model(cfg.model, dtype=resolve_dtype(cfg.dtype))
        template = get_template(cfg.template, tokenizer)

        mixture, eval_ex, rejects = _training_data(cfg, read, tokenizer, template)
        train_ex = [ex for _, ex in mixture.items]
        if main:
            print(mixture.report.format_table())
            print("(epochs above: draws per available example in one pass over the mixture)")
            print(
                f"train: {len(train_ex)} examples, eval: {len(eval_ex)}, rejected: {len(rejects)}"
            )
            if rejects:
                write_atomic(
                    out / "rejects.jsonl",
                    [json.dumps(r, default=str) + "\n" for r in _reject_rows(rejects)],
                )

        model = apply_lora(model, cfg.lora).to(accelerator.device)
        ckpt = latest_checkpoint(out / "checkpoints") if cfg.train.resume else None
        if main:  # a resumed run logs the steps after its checkpoint again; a fresh one all
            if ckpt is not None:
                print(f"resuming from {ckpt}")
            last = int(ckpt.name.split("-")[-1]) if ckpt is not None else -1
            truncate_metrics(out / "metrics.jsonl", last)
        logger = MetricsLogger(out, cfg.report_to, run_name=out.name, enabled=main)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        started = time.perf_counter()
        result = fit(
            model,
            FitData(train_ex, eval_ex, pad_id),
            cfg.train,
            run_dir=out / "checkpoints",
            accelerator=accelerator if accelerator.num_processes > 1 else None,
            log=logger.log,
            progress=progress,
        )
        logger.close()
        summary = SFTResult(
            output_dir=str(out),
            fit=fit_summary(result),
            mixture=_trained_mixture(mixture.report.to_dict(), result.epochs),
            n_train=len(train_ex),
            n_eval=len(eval_ex),
            rejected=len(rejects),
        )
        if main:
            _write_outputs(model, tokenizer, cfg, summary, time.perf_counter() - started)
        accelerator.wait_for_everyone()
    return summary


@contextmanager
def removed_on_failure(
    out: Path,
    *,
    enabled: bool,
    checkpoint: Callable[[Path], Path | None] = latest_checkpoint,
) -> Iterator[None]:
    """If the run fails before its first checkpoint, remove ``out`` when this run created it.

    A folder that existed before, or that holds a checkpoint a re-run can resume from, stays;
    ``checkpoint(out / "checkpoints")`` finds one (TRL-backed runs pass their own finder).
    """
    existed = out.exists()
    try:
        yield
    except BaseException:
        if enabled and not existed and checkpoint(out / "checkpoints") is None:
            shutil.rmtree(out, ignore_errors=True)
        raise


def _reject_rows(rejects: list[Any]) -> list[dict[str, Any]]:
    return [r if isinstance(r, dict) else r.to_dict() for r in rejects]


def fit_summary(r: FitResult) -> dict[str, Any]:
    """The numbers a run reports: a fair start/end loss, epochs trained, evaluations."""
    start, end, k = window_means(r.losses) if r.losses else (None, None, 0)
    first_eval = r.eval_losses[0] if r.eval_losses else None
    return {
        "steps": r.steps,
        "total_steps": r.total_steps,
        "epochs": round(r.epochs, 4),
        "tokens": r.tokens,
        "trained_tokens": r.trained_tokens,
        "seconds": round(r.seconds, 2),
        "loss_start": start,  # mean over the first loss_window steps
        "loss_end": end,  # mean over the last loss_window steps
        "loss_window": k,
        "eval_losses": r.eval_losses,
        "eval_loss_start": first_eval[1] if first_eval else None,
        "eval_loss_start_step": first_eval[0] if first_eval else None,
        "best_eval_loss": r.best_eval_loss,
        "best_eval_step": r.best_eval_step,
        "eval_ppl": math.exp(min(r.best_eval_loss, 50)) if r.best_eval_loss is not None else None,
        "stopped_early": r.stopped_early,
        "resumed_from": r.resumed_from,
    }


def format_summary(result: SFTResult) -> str:
    """What ``train sft`` prints at the end of a run."""
    f = result.fit
    lines = [
        f"trained {f['steps']} of {f['total_steps']} steps ({f['epochs']:.2f} epochs of "
        f"{result.n_train} examples, {f['tokens']} tokens, {f['seconds']} s)"
        + ("; stopped early" if f["stopped_early"] else "")
    ]
    if f["loss_start"] is not None:
        lines.append(
            f"train loss {f['loss_start']:.4f} -> {f['loss_end']:.4f} "
            f"(mean of the first and last {f['loss_window']} steps)"
        )
    if f["best_eval_loss"] is not None:
        lines.append(
            f"eval loss {f['eval_loss_start']:.4f} at step {f['eval_loss_start_step']} -> "
            f"best {f['best_eval_loss']:.4f} at step {f['best_eval_step']} "
            f"(perplexity {f['eval_ppl']:.2f}; the best weights are kept)"
        )
    per_source = (result.mixture or {}).get("per_source", {})
    if per_source:
        lines.append(
            "epochs trained per source: "
            + ", ".join(f"{name} {s['epochs_trained']:.2f}" for name, s in per_source.items())
        )
    lines.append(f"outputs in {result.output_dir}")
    return "\n".join(lines)


def _trained_mixture(report: dict[str, Any], epochs: float) -> dict[str, Any]:
    """The mixture report plus, per source, the passes over its examples actually trained
    (the mixture's up-sampling ``epochs`` times the passes over the mixture)."""
    per_source = {
        name: {**s, "epochs_trained": round(s["epochs"] * epochs, 4)}
        for name, s in report["per_source"].items()
    }
    return {**report, "per_source": per_source}


def _write_outputs(
    model: Any, tokenizer: Any, cfg: SFTConfig, result: SFTResult, seconds: float
) -> None:
    out = Path(result.output_dir)
    if cfg.lora.enabled:
        model.save_pretrained(out / "adapter")
        tokenizer.save_pretrained(out / "adapter")
        mark_adapter_portable(out / "adapter", cfg.model)
        if cfg.merge:
            merged = model.merge_and_unload()
            merged.save_pretrained(out / "merged")
            tokenizer.save_pretrained(out / "merged")
    else:
        model.save_pretrained(out / "model")
        tokenizer.save_pretrained(out / "model")
    plot_losses(
        read_metrics(out / "metrics.jsonl"), out / "loss_curve.png", title=f"SFT {cfg.model}"
    )
    summary = {"fit": result.fit, "mixture": result.mixture, "seconds": round(seconds, 2)}
    write_atomic(out / "summary.json", [json.dumps(summary, indent=2)])
