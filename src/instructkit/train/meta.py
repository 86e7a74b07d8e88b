"""Meta-learning over instruction tasks: first-order MAML and Reptile on LoRA parameters.

``instructkit train meta --config FILE.yaml`` runs :func:`run_meta`. Each meta-step samples
``tasks_per_batch`` tasks and, per task, disjoint support and query sets (``support_size`` and
``query_size`` items, drawn with a seed from the step number, so an episode is the same in a
resumed run). From the current initialization (the LoRA weights), ``inner_steps`` plain SGD
steps on the support set (``inner_lr``) give adapted weights; then

- **FOMAML** (first-order MAML; Finn et al. 2017, "Model-Agnostic Meta-Learning for Fast
  Adaptation of Deep Networks", first-order variant of their section 5.2): the outer gradient
  is the query-loss gradient at the adapted weights, averaged over tasks, applied by the outer
  optimizer (Adam by default) with ``outer_lr``;
- **Reptile** (Nichol et al. 2018, "On First-Order Meta-Learning Algorithms"): the outer step
  moves the initialization towards the adapted weights, ``init += outer_lr * mean(adapted -
  init)`` (SGD by default, which is exactly that update; with Adam, ``-mean(adapted - init)``
  is its gradient, as in the paper's Adam variant). Reptile never looks at the query set
  except to log the loss there.

The inner loop is functional (``torch.func.functional_call`` over a dict of the LoRA tensors):
no copy of the model per task. Only LoRA is supported (``lora.enabled: false`` is refused).
Tasks come from FLAN task items (``kind: tasks``: the bundled suite by default, its ``train``
split, so the held-out clusters stay unseen; rendered by the same code as ``train sft``'s
``kind: tasks``) or from any dataset whose rows carry a ``task`` column (``kind: sft``);
examples are tokenized with the response-only masks of SFT.

Outputs in ``output_dir``: ``adapter/`` (PEFT, portable base name), ``config.yaml``,
``metrics.jsonl`` (per meta-step: pre- and post-adaptation query loss, seconds, peak RSS),
``summary.json`` and ``checkpoints/`` (init, outer optimizer state, RNG; the episode cursor is
the step). A killed run continues from its last checkpoint with the same final weights.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from instructkit.config import save_config
from instructkit.data.sources import SourceField, as_spec, missing_source, source_label
from instructkit.data.tasks import MixConfig
from instructkit.data.templates import get_template
from instructkit.data.tokenize import TokenizedExample, tokenize_conversation
from instructkit.errors import ConfigError, DataFormatError, TrainingError
from instructkit.io import write_atomic
from instructkit.jobs import fingerprint
from instructkit.models import DEFAULT_MODEL, load_model, mark_adapter_portable
from instructkit.train.checkpoint import (
    check_resume,
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from instructkit.train.sft import AdapterConfig, apply_lora, removed_on_failure, resolve_dtype
from instructkit.train.tracking import (
    MetricsLogger,
    read_metrics,
    run_figures,
    truncate_metrics,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "Episode",
    "LossFn",
    "MetaConfig",
    "MetaResult",
    "Params",
    "TaskSource",
    "decoder_of",
    "fomaml_outer_grad",
    "functional_loss",
    "inner_adapt",
    "lora_params",
    "mean_params",
    "padded_batch",
    "reptile_delta",
    "run_meta",
    "sample_episode",
    "task_conversations",
    "task_pools",
]

Params = dict[str, "torch.Tensor"]
Batch = dict[str, "torch.Tensor"]
LossFn = Callable[[Params, Batch], "torch.Tensor"]


class TaskSource(BaseModel):
    """Where the tasks come from; ``path: null`` with kind tasks is the bundled suite."""

    model_config = ConfigDict(extra="forbid")

    # a path or a dataset spec (path/format/file_type/split/subset/columns; the spec's split
    # is a hub or DatasetDict split, this source's `split` the items' own split column)
    path: SourceField | None = None
    kind: Literal["tasks", "sft"] = "tasks"  # tasks: FLAN items; sft: any data with 'task'
    split: str | None = "train"  # tasks only: keep the items of this split (None: all)
    exclude_tasks: list[str] = Field(default_factory=list)
    format: str | None = None  # sft only; auto-detected when None


class MetaConfig(BaseModel):
    """The whole ``train meta`` workflow; YAML keys, attributes and --set paths are the same."""

    model_config = ConfigDict(extra="forbid")

    model: str = DEFAULT_MODEL
    template: str = "tokenizer"
    output_dir: str = "runs/meta"
    tasks: TaskSource = Field(default_factory=TaskSource)
    task_mix: MixConfig = Field(default_factory=lambda: MixConfig.model_validate({}))
    algorithm: Literal["fomaml", "reptile"] = "fomaml"
    inner_steps: int = Field(default=3, gt=0)
    inner_lr: float = Field(default=1e-2, gt=0)
    outer_lr: float = Field(default=1e-3, gt=0)
    outer_optimizer: Literal["adam", "sgd"] | None = None  # None: adam (fomaml), sgd (reptile)
    tasks_per_batch: int = Field(default=4, gt=0)
    support_size: int = Field(default=4, gt=0)
    query_size: int = Field(default=4, gt=0)
    meta_steps: int = Field(default=100, gt=0)
    lora: AdapterConfig = Field(default_factory=AdapterConfig)
    max_seq_len: int = Field(default=256, gt=8)
    seed: int = 0
    save_every: int = Field(default=10, gt=0)
    resume: bool = True
    dtype: Literal["auto", "float32", "bfloat16"] = "float32"
    report_to: list[str] = Field(default_factory=list)


class MetaResult(BaseModel):
    output_dir: str
    algorithm: str
    steps: int
    resumed_from: int | None
    n_tasks: int
    tokens: int  # that took a gradient, over all meta-steps (a resumed run counts all)
    pre_query_loss_start: float | None
    post_query_loss_end: float | None
    figures: dict[str, Any]


# --- the math: pure functions over dicts of tensors ------------------------------------------


def inner_adapt(
    loss_fn: LossFn, params: Params, batches: Sequence[Batch], lr: float, steps: int
) -> Params:
    """``steps`` SGD steps ``w <- w - lr * grad loss(w)`` from ``params`` (batches cycled).

    First-order: the result is detached (no gradient flows back through the inner loop); the
    input tensors are not modified."""
    import torch

    fast = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
    for s in range(steps):
        loss = loss_fn(fast, batches[s % len(batches)])
        grads = torch.autograd.grad(loss, list(fast.values()), allow_unused=True)
        fast = {
            n: (p - lr * g if g is not None else p).detach().requires_grad_(True)
            for (n, p), g in zip(fast.items(), grads, strict=True)
        }
    return {n: p.detach() for n, p in fast.items()}


def fomaml_outer_grad(loss_fn: LossFn, adapted: Params, query: Batch) -> tuple[Params, float]:
    """The first-order MAML gradient of one task: grad of the query loss at ``adapted``,
    and that loss."""
    import torch

    at = {n: p.detach().clone().requires_grad_(True) for n, p in adapted.items()}
    loss = loss_fn(at, query)
    grads = torch.autograd.grad(loss, list(at.values()), allow_unused=True)
    out = {
        n: g if g is not None else torch.zeros_like(p)
        for (n, p), g in zip(at.items(), grads, strict=True)
    }
    return out, float(loss.detach())


def reptile_delta(init: Params, adapted: Params) -> Params:
    """Reptile's direction of one task: ``adapted - init``."""
    return {n: adapted[n].detach() - init[n].detach() for n in init}


def mean_params(parts: Sequence[Params]) -> Params:
    """The element-wise mean of dicts with the same keys."""
    return {n: sum((p[n] for p in parts[1:]), parts[0][n]) / len(parts) for n in parts[0]}


# --- tasks and episodes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Episode:
    """One task of a meta-batch: indices into its pool, support and query disjoint."""

    task: str
    support: tuple[int, ...]
    query: tuple[int, ...]


def sample_episode(
    sizes: Mapping[str, int], n_tasks: int, support: int, query: int, rng: random.Random
) -> list[Episode]:
    """``n_tasks`` distinct tasks (all when fewer), each with disjoint support/query indices
    drawn without replacement from its ``sizes[task]`` examples."""
    names = sorted(t for t, n in sizes.items() if n >= support + query)
    picked = rng.sample(names, min(n_tasks, len(names)))
    episodes = []
    for task in picked:
        drawn = rng.sample(range(sizes[task]), support + query)
        episodes.append(Episode(task, tuple(drawn[:support]), tuple(drawn[support:])))
    return episodes


def task_conversations(source: TaskSource, task_mix: MixConfig) -> dict[str, list[Any]]:
    """Conversations per task: FLAN items rendered as ``train sft``'s ``kind: tasks`` does, or
    the records of any dataset whose rows carry a ``task`` column."""
    if source.kind == "tasks":
        from instructkit.data.task_suite import load_suite
        from instructkit.data.tasks import build_task_mixture, load_task_templates

        items = [
            it
            for it in load_suite(source.path)
            if (source.split is None or it.get("split") == source.split)
            and it.get("task") not in source.exclude_tasks
        ]
        convs = build_task_mixture(items, load_task_templates(), task_mix)
    else:
        from instructkit.data.formats import load_records
        from instructkit.data.workflows import conversations_of

        if source.path is None:
            raise ConfigError("tasks.path is needed with tasks.kind sft.", fix="set tasks.path.")
        convs = conversations_of(load_records(source.path, source.format).records)
    pools: dict[str, list[Any]] = {}
    for n, conv in enumerate(convs, 1):
        task = conv.metadata.get("task")
        if not isinstance(task, str) or not task:
            raise DataFormatError(
                "the row has no 'task'",
                path=source_label(source.path) if source.path else "bundled suite",
                row=n,
                field="task",
                fix="give every row a string 'task' column naming its task.",
            )
        if task not in source.exclude_tasks:
            pools.setdefault(task, []).append(conv)
    return pools


def task_pools(
    convs: Mapping[str, Sequence[Any]], tokenizer: Any, template: Any, max_seq_len: int
) -> tuple[dict[str, list[TokenizedExample]], int]:
    """Tokenize each task's conversations with the response-only masks of SFT; returns the
    pools and how many conversations were skipped because their prompt fills max_seq_len."""
    pools: dict[str, list[TokenizedExample]] = {}
    skipped = 0
    for task, rows in convs.items():
        for conv in rows:
            try:
                ex = tokenize_conversation(conv, template, tokenizer, max_seq_len=max_seq_len)
            except DataFormatError:
                skipped += 1
                continue
            pools.setdefault(task, []).append(ex)
    return pools, skipped


# --- the model as a function of its LoRA weights ---------------------------------------------


def lora_params(module: torch.nn.Module) -> Params:
    """The trainable (LoRA) parameters of ``module``, by name (the live tensors)."""
    return {n: p for n, p in module.named_parameters() if p.requires_grad}


def decoder_of(model: Any) -> Any:
    """The decoder stack of a (PEFT-wrapped) causal LM: the module whose parameters the inner
    loop replaces (it holds every LoRA weight; the LM head stays outside, frozen)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = getattr(base, base.base_model_prefix)
    if len(lora_params(model)) != len(lora_params(decoder)):
        raise ConfigError(
            "a trainable weight lies outside the decoder (e.g. LoRA on lm_head).",
            fix="target only decoder modules in lora.target (the default all-linear does).",
        )
    return decoder


def functional_loss(model: Any) -> LossFn:
    """``loss(params, batch)``: the mean response-token loss of ``model`` with ``params`` (named
    as in :func:`decoder_of`'s module) in place of its own; the LM head is applied only at
    positions that carry loss (:func:`~instructkit.losses.response_only_loss`)."""
    from torch.func import functional_call

    from instructkit.losses import response_only_loss

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder, head = decoder_of(model), base.get_output_embeddings()

    def loss(params: Params, batch: Batch) -> torch.Tensor:
        kwargs = {"attention_mask": batch["attention_mask"], "use_cache": False}
        out = functional_call(decoder, params, (batch["input_ids"],), kwargs)
        total, n = response_only_loss(out.last_hidden_state, batch["labels"], head)  # (B, T, H)
        return total / max(n, 1)

    return loss


def padded_batch(examples: Sequence[TokenizedExample], pad_id: int, device: Any) -> Batch:
    from instructkit.data.batching import pad_batch

    return {k: v.to(device) for k, v in pad_batch(examples, pad_id).items()}


def _meta_step(
    loss_fn: LossFn, init: Params, batches: list[tuple[Batch, Batch]], cfg: MetaConfig
) -> tuple[Params, dict[str, float]]:
    """The outer 'gradient' of one meta-batch (what the optimizer steps on) and its losses."""
    import torch

    grads, pre, post = [], [], []
    for support, query in batches:
        with torch.no_grad():
            pre.append(float(loss_fn(init, query)))
        adapted = inner_adapt(loss_fn, init, [support], cfg.inner_lr, cfg.inner_steps)
        if cfg.algorithm == "fomaml":
            g, q = fomaml_outer_grad(loss_fn, adapted, query)
        else:
            g = {n: -d for n, d in reptile_delta(init, adapted).items()}
            with torch.no_grad():
                q = float(loss_fn(adapted, query))
        grads.append(g)
        post.append(q)
    losses = {"pre_query_loss": sum(pre) / len(pre), "post_query_loss": sum(post) / len(post)}
    return mean_params(grads), losses


def _step_tokens(
    episodes: Sequence[Episode], pools: Mapping[str, Sequence[TokenizedExample]], cfg: MetaConfig
) -> int:
    """Tokens that took a gradient in one meta-step: the support set at each inner step, and
    the query set (FOMAML's outer gradient); the budget a fair multi-task SFT baseline gets."""
    total = 0
    for e in episodes:
        total += cfg.inner_steps * sum(len(pools[e.task][i].input_ids) for i in e.support)
        if cfg.algorithm == "fomaml":
            total += sum(len(pools[e.task][i].input_ids) for i in e.query)
    return total


def _outer_optimizer(cfg: MetaConfig, params: list[Any]) -> torch.optim.Optimizer:
    import torch

    kind = cfg.outer_optimizer or ("adam" if cfg.algorithm == "fomaml" else "sgd")
    if kind == "adam":
        return torch.optim.Adam(params, lr=cfg.outer_lr)
    return torch.optim.SGD(params, lr=cfg.outer_lr)


def _check(cfg: MetaConfig) -> None:
    if not cfg.lora.enabled:
        raise ConfigError(
            "train meta adapts LoRA weights only; lora.enabled: false is not supported.",
            fix="set lora.enabled: true (the meta-learned initialization is the adapter).",
        )
    missing = missing_source("tasks.path", cfg.tasks.path) if cfg.tasks.path else None
    if missing:
        raise ConfigError(f"{missing}.", fix="fix the path.")


def _usable(pools: dict[str, list[TokenizedExample]], cfg: MetaConfig) -> dict[str, int]:
    need = cfg.support_size + cfg.query_size
    sizes = {t: len(p) for t, p in pools.items() if len(p) >= need}
    if not sizes:
        raise TrainingError(
            f"no task has support_size + query_size = {need} examples "
            f"(largest: {max((len(p) for p in pools.values()), default=0)}).",
            fix="lower support_size/query_size, or add items per task.",
        )
    return sizes


# keys that may change between a run and its resumption (meta_steps: train on for longer)
_RESUME_FREE = ("output_dir", "save_every", "resume", "report_to", "meta_steps")
_RESUME_FIX = (
    "rerun with the original settings and tasks, set resume=false to start over, or choose "
    "another output_dir."
)


def meta_fingerprint(cfg: MetaConfig) -> dict[str, Any]:
    """What a resumed run must share with the run that wrote its checkpoint: every setting
    that shapes the episodes or the updates, and the task file's content."""
    tasks = Path(as_spec(cfg.tasks.path).path) if cfg.tasks.path else "bundled suite"
    return fingerprint(cfg, exclude=_RESUME_FREE, tasks=tasks)


def run_meta(cfg: MetaConfig, *, progress: bool = True) -> MetaResult:
    """Run the meta-training workflow described by ``cfg``; see the module docstring."""
    import torch

    _check(cfg)
    started = time.perf_counter()
    out = Path(cfg.output_dir)
    fp = meta_fingerprint(cfg)
    ckpt = latest_checkpoint(out / "checkpoints") if cfg.resume else None
    if ckpt is not None:  # before anything is loaded or overwritten
        check_resume(ckpt, fp, fix=_RESUME_FIX)
    with removed_on_failure(out, enabled=True):
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        torch.manual_seed(cfg.seed)
        model, tokenizer = load_model(cfg.model, dtype=resolve_dtype(cfg.dtype))
        template = get_template(cfg.template, tokenizer)
        pools, skipped = task_pools(
            task_conversations(cfg.tasks, cfg.task_mix), tokenizer, template, cfg.max_seq_len
        )
        sizes = _usable(pools, cfg)
        if progress:
            print(
                f"{len(sizes)} of {len(pools)} tasks have >= "
                f"{cfg.support_size + cfg.query_size} examples; {skipped} examples skipped "
                f"(prompt longer than max_seq_len={cfg.max_seq_len})"
            )
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model = apply_lora(model, cfg.lora).to(device)
        model.train()
        loss_module = decoder_of(model)
        loss_fn = functional_loss(model)
        init = lora_params(loss_module)
        opt = _outer_optimizer(cfg, list(init.values()))
        start = 0
        if ckpt is not None:
            saved = load_checkpoint(ckpt, loss_module, opt)
            set_rng_state(saved["rng"])
            start = int(saved["step"])
            if progress:
                print(f"resuming from {ckpt}")
        truncate_metrics(out / "metrics.jsonl", start)
        logger = MetricsLogger(out, cfg.report_to, run_name=out.name, purge_step=start + 1)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        first_pre, last_post = None, None
        for step in range(start + 1, cfg.meta_steps + 1):
            t0 = time.perf_counter()
            rng = random.Random(f"{cfg.seed}:{step}")  # the episode cursor is the step
            episodes = sample_episode(
                sizes, cfg.tasks_per_batch, cfg.support_size, cfg.query_size, rng
            )
            batches = [
                (
                    padded_batch([pools[e.task][i] for i in e.support], pad_id, device),
                    padded_batch([pools[e.task][i] for i in e.query], pad_id, device),
                )
                for e in episodes
            ]
            grad, losses = _meta_step(loss_fn, init, batches, cfg)
            tokens = _step_tokens(episodes, pools, cfg)
            opt.zero_grad(set_to_none=True)
            for n, p in init.items():
                p.grad = grad[n].to(p.dtype)
            opt.step()
            first_pre = losses["pre_query_loss"] if first_pre is None else first_pre
            last_post = losses["post_query_loss"]
            event = {
                "step": step,
                **losses,
                "tasks": [e.task for e in episodes],
                "tokens": tokens,
                "seconds": round(time.perf_counter() - t0, 4),
                "peak_rss_mb": run_figures(0.0)["peak_rss_mb"],
            }
            logger.log(event)
            if progress:
                print(
                    f"meta-step {step}/{cfg.meta_steps}: query loss "
                    f"{losses['pre_query_loss']:.4f} -> {losses['post_query_loss']:.4f}"
                )
            if step % cfg.save_every == 0 or step == cfg.meta_steps:
                save_checkpoint(
                    out / "checkpoints",
                    step,
                    loss_module,
                    opt,
                    {"rng": rng_state(), "fingerprint": fp},
                    keep=2,
                )
        logger.close()
        model.save_pretrained(out / "adapter")
        tokenizer.save_pretrained(out / "adapter")
        mark_adapter_portable(out / "adapter", cfg.model)
        result = MetaResult(
            output_dir=str(out),
            algorithm=cfg.algorithm,
            steps=cfg.meta_steps,
            resumed_from=start or None,
            n_tasks=len(sizes),
            tokens=sum(int(e.get("tokens", 0)) for e in read_metrics(out / "metrics.jsonl")),
            pre_query_loss_start=first_pre,
            post_query_loss_end=last_post,
            figures=run_figures(time.perf_counter() - started),
        )
        write_atomic(out / "summary.json", [json.dumps(result.model_dump(), indent=2)])
    return result


def format_meta_summary(result: MetaResult) -> str:
    """What ``train meta`` prints at the end of a run."""
    lines = [f"{result.algorithm}: {result.steps} meta-steps over {result.n_tasks} tasks"]
    if result.resumed_from:
        lines.append(f"resumed from meta-step {result.resumed_from}")
    if result.pre_query_loss_start is not None and result.post_query_loss_end is not None:
        lines.append(
            f"query loss before adaptation at the first step {result.pre_query_loss_start:.4f}, "
            f"after adaptation at the last {result.post_query_loss_end:.4f}"
        )
    lines.append(f"adapter in {Path(result.output_dir) / 'adapter'}")
    return "\n".join(lines)
