"""``instructkit eval adapt``: how fast an initialization adapts to unseen instruction tasks.

For every initialization in ``inits`` (the base model with a fresh LoRA adapter, or a LoRA
adapter from ``train sft`` or ``train meta``), every unseen task (by default the held-out
clusters of the bundled suite) and every seed, :func:`run_adapt_eval` draws a support set of
``max(ks)`` items and a disjoint query set of ``query_size`` items (the same draw for every
initialization, so the comparison is paired), then for each k in ``ks`` fine-tunes the LoRA
weights for k plain SGD steps (learning rate ``lr``) on the first k support items (k-shot,
k steps; k = 0 is the initialization itself), answers the query prompts greedily and scores
them with :func:`~instructkit.evaluate.checks.score_item` (``strict`` and ``lenient``), and
measures the query loss (mean response-token cross-entropy). Each k starts from the
initialization again; the adaptation is functional (:func:`instructkit.train.meta.inner_adapt`)
and the adapted weights are copied in only to generate.

The results are one :class:`~instructkit.evaluate.results.EvalResults` with ``curves``
(``lenient``, ``strict``, ``query_loss`` against k; 95% bootstrap CIs over (task, seed) units;
each later initialization paired against the first at every k) and per-task rows; ``eval
report`` draws the curves. This lives in ``rl`` because it joins ``train`` (LoRA, the inner
loop) and ``evaluate`` (scores, curves), which may not import each other.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from instructkit.data.sources import SourceField
from instructkit.data.task_suite import UNSEEN_CLUSTERS, load_suite
from instructkit.data.tasks import load_task_templates, render_task_example
from instructkit.data.templates import get_template
from instructkit.data.tokenize import TokenizedExample, tokenize_conversation
from instructkit.errors import ConfigError
from instructkit.evaluate.checks import score_item
from instructkit.evaluate.curves import build_curve
from instructkit.evaluate.results import EvalResults, ScoreRow, now, save_eval_results
from instructkit.lm.base import ChatRequest
from instructkit.lm.local import LocalLM
from instructkit.train.meta import (
    Params,
    decoder_of,
    functional_loss,
    inner_adapt,
    lora_params,
    padded_batch,
)
from instructkit.train.sft import AdapterConfig, apply_lora

__all__ = ["AdaptConfig", "InitSpec", "run_adapt_eval", "format_adapt_summary"]

METRICS = ("lenient", "strict", "query_loss")


class InitSpec(BaseModel):
    """One initialization: the base model (``adapter: null``, a fresh LoRA) or an adapter dir."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    adapter: str | None = None


class AdaptConfig(BaseModel):
    """The whole ``eval adapt`` workflow; YAML keys, attributes and --set paths are the same."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None  # None: the embedded default model
    template: str = "tokenizer"
    inits: list[InitSpec] = Field(default_factory=lambda: [InitSpec(name="base")])
    # FLAN task items: a path or a dataset spec (any format the loader reads); None: bundled
    tasks_path: SourceField | None = None
    clusters: list[str] = Field(default_factory=lambda: list(UNSEEN_CLUSTERS))
    task_names: list[str] = Field(default_factory=list)  # explicit tasks instead of clusters
    ks: list[int] = Field(default_factory=lambda: [0, 1, 2, 4, 8])
    query_size: int = Field(default=8, gt=0)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    lr: float = Field(default=1e-2, gt=0)
    lora: AdapterConfig = Field(default_factory=AdapterConfig)  # the fresh adapter of a base
    max_seq_len: int = Field(default=256, gt=8)
    max_new_tokens: int = Field(default=32, gt=0)
    out: str = "eval/adapt.json"
    title: str = "Adaptation to unseen tasks"

    @field_validator("ks")
    @classmethod
    def _ks(cls, ks: list[int]) -> list[int]:
        if not ks or any(k < 0 for k in ks):
            raise ValueError("ks must be a non-empty list of steps >= 0")
        return sorted(set(ks))


# --- units: one (task, seed) draw, the same for every initialization -------------------------


def draw_unit(
    items: Sequence[Mapping[str, Any]], n_support: int, n_query: int, rng: random.Random
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """Disjoint support (``n_support``) and query (``n_query``) items of one task."""
    drawn = rng.sample(list(items), n_support + n_query)
    return drawn[:n_support], drawn[n_support:]


def _task_items(cfg: AdaptConfig) -> dict[str, list[dict[str, Any]]]:
    by_task: dict[str, list[dict[str, Any]]] = {}
    for it in load_suite(cfg.tasks_path):
        keep = it["task"] in cfg.task_names if cfg.task_names else it.get("cluster") in cfg.clusters
        if keep:
            by_task.setdefault(str(it["task"]), []).append(it)
    need = max(cfg.ks) + cfg.query_size
    small = [t for t, rows in by_task.items() if len(rows) < need]
    if not by_task or small:
        raise ConfigError(
            f"eval adapt needs tasks with max(ks) + query_size = {need} items; "
            + (f"too few in {small}" if small else "no task matched clusters/task_names"),
            fix="lower ks or query_size, or choose other tasks (task_names / clusters).",
        )
    return by_task


# --- one initialization ----------------------------------------------------------------------


def _load_init(cfg: AdaptConfig, spec: InitSpec) -> tuple[LocalLM, Any, Params]:
    """The LM (generation), the model's loss function and a copy of its initial LoRA weights."""
    lm = LocalLM.load(cfg.model, spec.adapter, cfg.template)  # CUDA when available
    if spec.adapter is None:
        import torch

        torch.manual_seed(0)  # the fresh adapter's A matrices: the same in every run
        lm.model = apply_lora(lm.model, cfg.lora).to(lm.model.device)
    for name, p in lm.model.named_parameters():
        p.requires_grad_("lora_" in name)
    lm.model.eval()
    init = {n: p.detach().clone() for n, p in lora_params(decoder_of(lm.model)).items()}
    return lm, functional_loss(lm.model), init


def _set(model: Any, params: Params) -> None:
    import torch

    live = lora_params(decoder_of(model))
    with torch.no_grad():
        for n, value in params.items():
            live[n].copy_(value)


def _score_unit(
    lm: LocalLM,
    loss_fn: Any,
    init: Params,
    support: list[TokenizedExample],
    query: tuple[Any, list[dict[str, Any]], list[ChatRequest]],
    cfg: AdaptConfig,
) -> dict[str, dict[int, float]]:
    """``{metric: {k: value}}`` of one unit: adapt k steps on k support items, score the query."""
    import torch

    batch, rows, requests = query
    out: dict[str, dict[int, float]] = {m: {} for m in METRICS}
    for k in cfg.ks:
        adapted = init
        if k > 0:
            shots = padded_batch(support[:k], lm.tokenizer.pad_token_id or 0, lm.model.device)
            adapted = inner_adapt(loss_fn, init, [shots], cfg.lr, k)
        _set(lm.model, adapted)
        with torch.no_grad():
            out["query_loss"][k] = float(loss_fn(adapted, batch))
        texts = [c.text for c in lm.complete(requests)]
        scores = [score_item(r, t) for r, t in zip(rows, texts, strict=True)]
        for m in ("lenient", "strict"):
            out[m][k] = sum(s[m] for s in scores) / len(scores)
    _set(lm.model, init)
    return out


def _unit_inputs(
    lm: LocalLM,
    template: Any,
    templates: Any,
    task: str,
    items: Sequence[Mapping[str, Any]],
    seed: int,
    cfg: AdaptConfig,
) -> tuple[list[TokenizedExample], tuple[Any, list[dict[str, Any]], list[ChatRequest]]]:
    """The tokenized support items of one (task, seed) unit, and its query: the loss batch,
    the item rows to score against, the generation requests (one phrasing per unit)."""
    rng = random.Random(f"{seed}:{task}")
    index = rng.randrange(len(templates[task]))
    support_items, query_items = draw_unit(items, max(cfg.ks), cfg.query_size, rng)
    convs = {
        id(it): render_task_example(it, templates, mode="zero", template_index=index)
        for it in [*support_items, *query_items]
    }

    def tok(it: Mapping[str, Any]) -> TokenizedExample:
        conv = convs[id(it)]
        return tokenize_conversation(conv, template, lm.tokenizer, max_seq_len=cfg.max_seq_len)

    options = templates[task][0].options
    rows = [
        dict(it) if it.get("options") or not options else {**it, "options": list(options)}
        for it in query_items
    ]
    requests = [
        ChatRequest.from_messages(convs[id(it)].to_chat()[:-1], max_tokens=cfg.max_new_tokens)
        for it in query_items
    ]
    pad = lm.tokenizer.pad_token_id or 0
    batch = padded_batch([tok(it) for it in query_items], pad, lm.model.device)
    return [tok(it) for it in support_items], (batch, rows, requests)


def run_adapt_eval(cfg: AdaptConfig, *, progress: bool = True) -> EvalResults:
    """Run the adaptation evaluation described by ``cfg``; see the module docstring."""
    started = time.perf_counter()
    if len({s.name for s in cfg.inits}) != len(cfg.inits) or not cfg.inits:
        raise ConfigError("inits need distinct names.", fix="name each initialization once.")
    by_task = _task_items(cfg)
    templates = load_task_templates()
    # values[metric][system][k]: one value per (task, seed) unit, the same unit order for all
    values: dict[str, dict[str, dict[int, list[float]]]] = {m: {} for m in METRICS}
    per_task: dict[str, dict[str, dict[str, dict[int, list[float]]]]] = {}
    for spec in cfg.inits:
        lm, loss_fn, init = _load_init(cfg, spec)
        template = get_template(cfg.template, lm.tokenizer)
        for task, items in by_task.items():
            for seed in cfg.seeds:
                support, query = _unit_inputs(lm, template, templates, task, items, seed, cfg)
                unit = _score_unit(lm, loss_fn, init, support, query, cfg)
                for m, by_k in unit.items():
                    for k, v in by_k.items():
                        values[m].setdefault(spec.name, {}).setdefault(k, []).append(v)
                        task_values = per_task.setdefault(task, {}).setdefault(m, {})
                        task_values.setdefault(spec.name, {}).setdefault(k, []).append(v)
                if progress:
                    print(f"{spec.name} {task} seed {seed}: lenient by k {unit['lenient']}")
    results = _results(cfg, values, per_task, time.perf_counter() - started)
    save_eval_results(results, cfg.out)
    return results


def _row(
    metric_values: Mapping[str, Mapping[str, Mapping[int, list[float]]]], top: int
) -> ScoreRow:
    lenient = metric_values["lenient"]
    n = len(next(iter(lenient.values()))[top])
    metrics: dict[str, dict[str, float | None]] = {
        f"{m}@k={k}": {s: sum(v[k]) / len(v[k]) for s, v in metric_values[m].items()}
        for m in METRICS
        for k in sorted(next(iter(metric_values[m].values())))
    }
    scores: dict[str, float | None] = {s: sum(v[top]) / len(v[top]) for s, v in lenient.items()}
    return ScoreRow(metric=f"lenient@k={top}", n=n, scores=scores, metrics=metrics, seen=False)


def _results(
    cfg: AdaptConfig,
    values: dict[str, dict[str, dict[int, list[float]]]],
    per_task: dict[str, dict[str, dict[str, dict[int, list[float]]]]],
    seconds: float,
) -> EvalResults:
    top = max(cfg.ks)
    curves = {m: build_curve(m, values[m], higher_is_better=m != "query_loss") for m in METRICS}
    return EvalResults(
        title=cfg.title,
        created=now(),
        systems=[s.name for s in cfg.inits],
        tasks={task: _row(v, top) for task, v in per_task.items()},
        overall=_row(values, top),
        curves=curves,
        meta={
            "kind": "adapt",
            "config": json.loads(cfg.model_dump_json()),
            "units": "(task, seed) pairs; CIs are 95% bootstrap intervals over units",
            # per-unit values, in unit order, to pool runs (benchmarks/meta_adapt.py)
            "unit_values": {
                m: {s: {str(k): v for k, v in by_k.items()} for s, by_k in values[m].items()}
                for m in METRICS
            },
            "seconds": round(seconds, 2),
        },
    )


def format_adapt_summary(results: EvalResults) -> str:
    """What ``eval adapt`` prints: the lenient accuracy and query loss per system and k."""
    lines = []
    for metric in ("lenient", "query_loss"):
        curve = results.curves[metric]
        lines.append(f"{metric} by adaptation steps k (mean [95% CI] over task x seed):")
        for system, points in curve.points.items():
            cells = ", ".join(
                f"k={p.k}: {p.mean:.3f} [{p.ci_low:.3f}, {p.ci_high:.3f}]" for p in points
            )
            lines.append(f"  {system}: {cells}")
    return "\n".join(lines)
