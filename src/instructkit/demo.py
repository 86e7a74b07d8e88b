"""The walking skeleton: evaluate, LoRA-tune, and re-evaluate the embedded model, offline.

``run_demo(cfg)`` reads top to bottom: bundled task items (train/test splits, one task type
held out entirely) are rendered through the FLAN-style templates, the model answers the test
prompts, is fine-tuned with LoRA and response-only loss on the training mixture, answers again,
and the before/after accuracy is printed per task and for seen vs unseen tasks. Outputs in
``cfg.out``: results.json (:class:`~instructkit.evaluate.results.EvalResults`, systems "before"
and "after"; the training summary in ``meta``), report.html (from results.json), config.yaml,
predictions.jsonl, train_log.jsonl, adapter/.
"""

from __future__ import annotations

import json
import random
import time
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from instructkit.config import save_config
from instructkit.data.records import Conversation
from instructkit.data.tasks import (
    MixConfig,
    build_task_mixture,
    load_task_templates,
    render_task_example,
)
from instructkit.data.templates import get_template
from instructkit.data.tokenize import TrainOn, tokenize_conversation
from instructkit.evaluate.checks import score_answer
from instructkit.evaluate.results import EvalResults, now, save_eval_results
from instructkit.evaluate.stats import compare_by_group, compare_paired
from instructkit.io import write_jsonl
from instructkit.lm.base import ChatRequest
from instructkit.lm.local import LocalLM
from instructkit.models import DEFAULT_MODEL, load_model
from instructkit.train.loop import FitData, TrainConfig, fit, window_means
from instructkit.train.sft import AdapterConfig, apply_lora

__all__ = [
    "DemoConfig",
    "run_demo",
    "load_demo_items",
    "evaluate_items",
    "summarize",
    "demo_results",
]


class DemoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    out: str
    model: str = DEFAULT_MODEL
    template: str = "tokenizer"
    items: str | None = None  # JSONL of task items; None = the bundled set
    max_seq_len: int = Field(384, gt=8)
    max_new_tokens: int = Field(24, gt=0)
    eval_batch_size: int = Field(32, gt=0)
    mix: MixConfig = MixConfig(zero_shot=0.8, few_shot=0.2, cot_ratio=0.2, n_shots=2, seed=0)
    lora: AdapterConfig = AdapterConfig(r=16, alpha=32)
    train: TrainConfig = TrainConfig(epochs=3, lr=1e-3, batch_tokens=512, warmup_ratio=0.1)
    train_on: TrainOn = "all"
    limit: int | None = Field(None, gt=0)  # keep at most this many items per task and split
    seed: int = 0


def load_demo_items(path: str | None = None) -> list[dict[str, Any]]:
    """Task items (id, task, split, fields, answer[, rationale]) from JSONL."""
    if path is None:
        text = (
            resources.files("instructkit.resources")
            .joinpath("demo/items.jsonl")
            .read_text(encoding="utf-8")
        )
    else:
        text = Path(path).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _limit(items: list[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    if limit is None:
        return items
    seen: dict[tuple[str, str], int] = {}
    kept = []
    for it in items:
        key = (it["task"], it["split"])
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= limit:
            kept.append(it)
    return kept


def test_prompts(items: list[dict[str, Any]], templates: Any, seed: int) -> list[Conversation]:
    """Zero-shot prompts for evaluation, one seeded phrasing per item (same before and after)."""
    rng = random.Random(seed)
    return [
        render_task_example(
            it, templates, mode="zero", template_index=rng.randrange(len(templates[it["task"]]))
        )
        for it in items
    ]


def evaluate_items(
    model: Any,
    tokenizer: Any,
    items: list[dict[str, Any]],
    prompts: list[Conversation],
    cfg: DemoConfig,
    desc: str,
) -> list[dict[str, Any]]:
    """Generate an answer per item (greedy) and score it by normalized exact match."""
    chats = [p.to_chat()[:-1] for p in prompts]  # drop the reference answer
    lm = LocalLM(model, tokenizer, template=cfg.template, batch_size=cfg.eval_batch_size, name=desc)
    requests = [
        ChatRequest.from_messages(c, max_tokens=cfg.max_new_tokens, temperature=0.0) for c in chats
    ]
    responses = [c.text.strip() for c in lm.complete(requests, progress=True)]
    return [
        {
            "id": it["id"],
            "task": it["task"],
            "prompt": chat[-1]["content"],
            "answer": it["answer"],
            "response": resp,
            "score": score_answer(resp, it["answer"]),
        }
        for it, chat, resp in zip(items, chats, responses, strict=False)
    ]


def summarize(rows: list[dict[str, Any]], seen_tasks: set[str]) -> dict[str, Any]:
    """Accuracy per task, for seen and unseen tasks, and overall."""

    def acc(sel: list[dict[str, Any]]) -> dict[str, float]:
        return {"n": len(sel), "accuracy": sum(r["score"] for r in sel) / len(sel) if sel else 0.0}

    tasks = sorted({r["task"] for r in rows})
    return {
        "per_task": {t: acc([r for r in rows if r["task"] == t]) for t in tasks},
        "seen": acc([r for r in rows if r["task"] in seen_tasks]),
        "unseen": acc([r for r in rows if r["task"] not in seen_tasks]),
        "overall": acc(rows),
    }


def significance(
    before_rows: list[dict[str, Any]],
    after_rows: list[dict[str, Any]],
    seen_tasks: set[str],
    seed: int,
) -> dict[str, Any]:
    """Paired before/after comparison on the same items: all, seen and unseen tasks."""
    groups = ["seen" if r["task"] in seen_tasks else "unseen" for r in before_rows]
    by_group = compare_by_group(
        [r["score"] for r in before_rows], [r["score"] for r in after_rows], groups, seed=seed
    )
    return {name: c.to_dict() for name, c in by_group.items()}


def format_significance(sig: dict[str, Any]) -> str:
    lines = [
        f"{'items':<10}{'n':>4}{'after-before':>14}{'95% CI':>18}{'p perm':>9}"
        f"{'p McNemar':>11}{'won/lost':>10}"
    ]
    for name, c in sig.items():
        mc = "-" if c["p_mcnemar"] is None else f"{c['p_mcnemar']:.4f}"
        ci = f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]"
        won = f"{c['wins']}/{c['losses']}"
        lines.append(
            f"{name:<10}{c['n']:>4}{c['diff']:>+14.3f}{ci:>18}"
            f"{c['p_permutation']:>9.4f}{mc:>11}{won:>10}"
        )
    return "\n".join(lines)


def format_table(before: dict[str, Any], after: dict[str, Any], seen_tasks: set[str]) -> str:
    lines = [f"{'task':<22}{'n':>4}  {'seen':<6}{'before':>8}{'after':>8}{'delta':>8}"]
    for task, b in before["per_task"].items():
        a = after["per_task"][task]
        lines.append(
            f"{task:<22}{b['n']:>4}  {'yes' if task in seen_tasks else 'no':<6}"
            f"{b['accuracy']:>8.3f}{a['accuracy']:>8.3f}"
            f"{a['accuracy'] - b['accuracy']:>+8.3f}"
        )
    for key in ("seen", "unseen", "overall"):
        b, a = before[key], after[key]
        lines.append(
            f"{'[' + key + ']':<22}{b['n']:>4}  {'':<6}{b['accuracy']:>8.3f}"
            f"{a['accuracy']:>8.3f}{a['accuracy'] - b['accuracy']:>+8.3f}"
        )
    return "\n".join(lines)


def _row(
    before: list[dict[str, Any]], after: list[dict[str, Any]], seed: int, seen: bool | None
) -> dict[str, Any]:
    a, b = [float(r["score"]) for r in before], [float(r["score"]) for r in after]
    c = compare_paired(a, b, seed=seed)
    scores = {"before": c.mean_a, "after": c.mean_b}
    return {
        "metric": "accuracy",
        "n": c.n,
        "scores": scores,
        "comparison": c.to_dict(),
        "seen": seen,
    }


def demo_results(
    before_rows: list[dict[str, Any]],
    after_rows: list[dict[str, Any]],
    seen_tasks: set[str],
    *,
    title: str,
    meta: dict[str, Any],
    seed: int = 0,
) -> EvalResults:
    """Before vs after as results: a row per task, seen/unseen groups and overall, each with
    its paired comparison on the same items; per-item scores; ``meta`` as given."""
    tasks = sorted({r["task"] for r in before_rows})

    def pick(keep: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        idx = [i for i, r in enumerate(before_rows) if keep(r["task"])]
        return [before_rows[i] for i in idx], [after_rows[i] for i in idx]

    groups = {
        name: _row(*pick(lambda t, s=seen: (t in seen_tasks) == s), seed, seen)
        for name, seen in (("seen", True), ("unseen", False))
        if pick(lambda t, s=seen: (t in seen_tasks) == s)[0]
    }
    per_item = [
        {
            "id": str(b["id"]),
            "task": b["task"],
            "scores": {"before": b["score"], "after": a["score"]},
        }
        for b, a in zip(before_rows, after_rows, strict=True)
    ]
    return EvalResults.model_validate(
        {
            "title": title,
            "created": now(),
            "systems": ["before", "after"],
            "tasks": {t: _row(*pick(lambda x, t=t: x == t), seed, t in seen_tasks) for t in tasks},
            "groups": groups,
            "overall": {**_row(before_rows, after_rows, seed, None), "seen": None},
            "per_item": per_item,
            "meta": meta,
        }
    )


def run_demo(cfg: DemoConfig) -> EvalResults:
    """Run the whole demo; returns the results also written to ``out/results.json``."""
    started = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")

    items = _limit(load_demo_items(cfg.items), cfg.limit)
    templates = load_task_templates()
    train_items = [it for it in items if it["split"] == "train"]
    test_items = [it for it in items if it["split"] == "test"]
    seen_tasks = {it["task"] for it in train_items}
    print(
        f"demo: {len(train_items)} train items, {len(test_items)} test items; "
        f"unseen tasks: {sorted({it['task'] for it in test_items} - seen_tasks)}"
    )

    model, tokenizer = load_model(cfg.model)
    prompts = test_prompts(test_items, templates, cfg.seed)
    before_rows = evaluate_items(model, tokenizer, test_items, prompts, cfg, "eval before")
    before = summarize(before_rows, seen_tasks)

    template = get_template(cfg.template, tokenizer)
    train_convs = build_task_mixture(train_items, templates, cfg.mix)
    examples = [
        tokenize_conversation(
            c, template, tokenizer, max_seq_len=cfg.max_seq_len, train_on=cfg.train_on
        )
        for c in train_convs
    ]
    model = apply_lora(model, cfg.lora)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    result = fit(model, FitData(examples, pad_id=pad_id), cfg.train)
    model.save_pretrained(out / "adapter")

    after_rows = evaluate_items(model, tokenizer, test_items, prompts, cfg, "eval after")
    after = summarize(after_rows, seen_tasks)

    print(format_table(before, after, seen_tasks))
    sig = significance(before_rows, after_rows, seen_tasks, cfg.seed)
    print(format_significance(sig))
    meta = {
        "model": cfg.model,
        "seen_tasks": sorted(seen_tasks),
        "unseen_tasks": sorted({it["task"] for it in test_items} - seen_tasks),
        "train": {
            "examples": len(examples),
            "steps": result.steps,
            "tokens": result.tokens,
            "trained_tokens": result.trained_tokens,
            "seconds": round(result.seconds, 1),
            "epochs": round(result.epochs, 3),
            # means of the first and last k steps: one step's loss is one noisy batch
            **dict(
                zip(
                    ("loss_start", "loss_end", "loss_window"),
                    window_means(result.losses),
                    strict=True,
                )
            ),
        },
        "seconds_total": round(time.perf_counter() - started, 1),
    }
    title = f"Demo: {cfg.model}, before vs after fine-tuning"
    results = demo_results(
        before_rows, after_rows, seen_tasks, title=title, meta=meta, seed=cfg.seed
    )
    write_jsonl(
        [{"step": i, "loss": x} for i, x in enumerate(result.losses)], out / "train_log.jsonl"
    )
    predictions = [
        {
            **{k: v for k, v in b.items() if k not in ("response", "score")},
            "response_before": b["response"],
            "score_before": b["score"],
            "response_after": a["response"],
            "score_after": a["score"],
        }
        for b, a in zip(before_rows, after_rows, strict=True)
    ]
    write_jsonl(predictions, out / "predictions.jsonl")
    save_eval_results(results, out / "results.json")
    from instructkit.report import write_report

    write_report([out / "results.json"], out / "report.html")
    print(
        f"wrote {out}/results.json, report.html, adapter/, predictions.jsonl "
        f"in {meta['seconds_total']} s"
    )
    return results
