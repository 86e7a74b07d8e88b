"""The main job (``make demo``, ``instructkit demo``): the product's own workflows in a row.

``run_demo(cfg)`` reads top to bottom: pick the items (the bundled task suite's train items and
a seeded sample of its test items, leave-cluster-out: the clusters in
:data:`~instructkit.data.task_suite.UNSEEN_CLUSTERS` have no train item) and write them to
``out/suite.jsonl``; :func:`~instructkit.evaluate.runner.run_eval` the base model (system
``base``, scored strict / lenient / format); :func:`~instructkit.train.sft.run_sft` LoRA on the
train items rendered as a FLAN-style mixture (response-only loss); ``run_eval`` again with two
systems, ``base`` read back from the first run's per-item file and ``tuned`` (base + adapter),
which compares them on the same items; print the per-group/per-cluster table; write the HTML
report (examples, training loss) and ``summary.json``. Every step's config is written beside
its outputs, so each step can be re-run with ``instructkit eval run`` / ``train sft``.

Outputs in ``cfg.out``: config.yaml (this demo's resolved config), suite.jsonl (the items),
base.yaml / base.json / base.per_item.jsonl (the base evaluation), sft/ (``train sft``'s run:
config.yaml, adapter/, metrics.jsonl, loss_curve.png, summary.json), eval.yaml / results.json /
results.per_item.jsonl (base vs tuned; :class:`~instructkit.evaluate.results.EvalResults`),
report.html, summary.json (:func:`~instructkit.evaluate.results.paired_summary` of seen and
unseen tasks on strict, lenient and format, plus ``wall_s``). From Python::

    from instructkit.config import load_config
    cfg = load_config(DemoConfig, "recipes/demo.yaml", ["sft.train.epochs=2"], out="out/demo")
    results = run_demo(cfg)     # the base-vs-tuned EvalResults written to out/demo/results.json
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from instructkit.config import save_config
from instructkit.data.task_suite import UNSEEN_CLUSTERS, load_suite
from instructkit.data.templates import TemplateName
from instructkit.errors import ConfigError
from instructkit.evaluate.results import EvalResults, format_metrics, paired_summary
from instructkit.evaluate.runner import EvalConfig, EvalTaskConfig, SystemConfig, run_eval
from instructkit.io import write_atomic, write_jsonl
from instructkit.models import DEFAULT_MODEL
from instructkit.report import write_report
from instructkit.train.sft import DatasetConfig, SFTConfig, format_summary, run_sft

__all__ = ["DEMO_SFT", "METRICS", "DemoConfig", "DemoEvalConfig", "demo_items", "run_demo"]

METRICS = ("lenient", "strict", "format")  # the first is the primary one (flips, overall)
_SET_BY_DEMO = ("model", "output_dir", "template")  # sft keys the demo fills in
# the demo's training run: the keys of `sft:` that differ from train sft's defaults; a config's
# `sft:` (or --set sft.KEY=...) is merged over these
DEMO_SFT: dict[str, Any] = {
    "max_seq_len": 384,
    "task_mix": {"zero_shot": 0.8, "few_shot": 0.2, "cot_ratio": 0.2, "n_shots": 2},
    "lora": {"r": 16, "alpha": 32},
    "train": {"epochs": 1, "lr": 3e-4, "batch_tokens": 512, "warmup_ratio": 0.1},
}


class DemoEvalConfig(BaseModel):
    """How the base and the tuned model are evaluated (both runs alike)."""

    model_config = ConfigDict(extra="forbid")

    # test items kept per task (a seeded sample; None: all): seen tasks have 5 to 10 each,
    # each unseen (held-out cluster) task 24 to 40
    seen_limit: int | None = Field(5, gt=0)
    unseen_limit: int | None = Field(None, gt=0)
    max_new_tokens: int = Field(24, gt=0)
    batch_size: int = Field(32, gt=0)
    examples: int = Field(5, ge=0)  # example predictions per task in report.html


class DemoConfig(BaseModel):
    """The demo: the model, the suite, and the two workflows' settings (``eval:``, ``sft:``)."""

    model_config = ConfigDict(extra="forbid")

    out: str
    model: str = DEFAULT_MODEL
    template: TemplateName = "tokenizer"
    suite: str | None = None  # task suite JSONL (train and test items); None: the bundled one
    # the test sample, the evaluation prompts' phrasing and, unless sft sets its own seeds, the
    # training mixture, its rendering and the training order (sft.train/task_mix/mixture.seed)
    seed: int = 0
    eval: DemoEvalConfig = Field(default_factory=DemoEvalConfig)
    # train sft's config (docs/sft.md); the demo sets model, template and output_dir (out/sft),
    # and with no datasets trains on the suite's train items (kind tasks)
    sft: SFTConfig = Field(default_factory=lambda: SFTConfig.model_validate(DEMO_SFT))

    @field_validator("sft", mode="before")
    @classmethod
    def _over_demo_defaults(cls, value: Any) -> Any:
        return _merged(DEMO_SFT, value) if isinstance(value, dict) else value


def _merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, nested mappings merged key by key."""
    out = dict(base)
    for k, v in extra.items():
        both = isinstance(v, Mapping) and isinstance(out.get(k), Mapping)
        out[k] = _merged(out[k], v) if both else v
    return out


def run_demo(cfg: DemoConfig) -> EvalResults:
    """Evaluate, tune and re-evaluate (see the module docstring); returns the base-vs-tuned
    results also written to ``out/results.json``."""
    started = time.perf_counter()
    _check(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    items = demo_items(load_suite(cfg.suite), cfg.eval, cfg.seed)
    suite = out / "suite.jsonl"
    write_jsonl(items, suite)
    _print_split(items)

    base = SystemConfig(name="base", model=cfg.model, template=cfg.template)
    base_cfg = _eval_config(cfg, suite, [base], out / "base.json")
    save_config(base_cfg, out / "base.yaml")
    print("1/3 evaluating the base model")
    run_eval(base_cfg, fresh=True)

    sft_cfg = _sft_config(cfg, suite, out / "sft")
    print("2/3 fine-tuning (train sft, config in sft/config.yaml)")
    trained = run_sft(sft_cfg)
    print(format_summary(trained))

    systems = [
        SystemConfig(name="base", responses=str(out / "base.per_item.jsonl")),
        SystemConfig(name="tuned", model=cfg.model, adapter=str(out / "sft" / "adapter"),
                     template=cfg.template),
    ]  # fmt: skip
    meta = {
        "train_log": "sft/metrics.jsonl",  # eval report plots it (relative to results.json)
        "model": cfg.model,
        "sft": trained.fit,
        "seen_tasks": _tasks(items, seen=True),
        "unseen_tasks": _tasks(items, seen=False),
    }
    tuned_cfg = _eval_config(cfg, suite, systems, out / "results.json", meta=meta)
    save_config(tuned_cfg, out / "eval.yaml")
    print("3/3 evaluating the tuned model")
    results = run_eval(tuned_cfg, fresh=True)

    print(format_metrics(results, METRICS))
    write_report([out / "results.json"], out / "report.html", examples=cfg.eval.examples)
    groups = [g for g in ("seen", "unseen") if g in results.groups]
    summary = {**paired_summary(results, groups), "wall_s": round(time.perf_counter() - started, 1)}
    write_atomic(out / "summary.json", [json.dumps(summary, indent=2) + "\n"])
    print(_format_headline(summary))
    print(f"wrote {out}/results.json, report.html, summary.json, sft/ in {summary['wall_s']} s")
    return results


def _check(cfg: DemoConfig) -> None:
    """Keys of ``sft`` that the demo sets itself must not be set in the config."""
    clash = [k for k in _SET_BY_DEMO if k in cfg.sft.model_fields_set]
    if clash:
        raise ConfigError(
            f"sft.{', sft.'.join(clash)}: set by the demo (model and template from the top-level "
            "keys, output_dir = out/sft)",
            fix="remove them from sft; set the top-level model/template or --out instead.",
        )


def demo_items(
    items: Sequence[Mapping[str, Any]], cfg: DemoEvalConfig, seed: int
) -> list[dict[str, Any]]:
    """Every train item and, per task, a seeded sample of its test items (``seen_limit`` for a
    task with train items, ``unseen_limit`` for one without), in the suite's order."""
    seen = {it["task"] for it in items if it["split"] == "train"}
    tests: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        if it["split"] == "test":
            tests.setdefault(str(it["task"]), []).append(i)
    rng = random.Random(seed)
    kept: set[int] = set()
    for task, idx in tests.items():
        limit = cfg.seen_limit if task in seen else cfg.unseen_limit
        kept |= set(idx if limit is None or limit >= len(idx) else rng.sample(idx, limit))
    return [dict(it) for i, it in enumerate(items) if it["split"] == "train" or i in kept]


def _eval_config(
    cfg: DemoConfig,
    suite: Path,
    systems: list[SystemConfig],
    out: Path,
    *,
    meta: dict[str, Any] | None = None,
) -> EvalConfig:
    task = EvalTaskConfig(
        name="suite", path=str(suite), kind="tasks", split="test", seen_tasks="train",
        metrics=list(METRICS),
    )  # fmt: skip
    return EvalConfig(
        title=f"Demo: {cfg.model}, base vs LoRA-tuned on the task suite",
        systems=systems,
        tasks=[task],
        out=str(out),
        max_new_tokens=cfg.eval.max_new_tokens,
        batch_size=cfg.eval.batch_size,
        seed=cfg.seed,
        meta=meta or {},
    )


def _sft_config(cfg: DemoConfig, suite: Path, output_dir: Path) -> SFTConfig:
    """``cfg.sft`` with the model, template and output folder, and by default the suite's
    train items as the one dataset (FLAN task items: kind ``tasks``)."""
    datasets = cfg.sft.datasets or [
        DatasetConfig(path=str(suite), kind="tasks", split="train", name="suite")
    ]
    seeded = {  # the demo's seed where the config does not set one of its own
        key: part.model_copy(update={"seed": cfg.seed})
        for key in ("train", "task_mix", "mixture")
        if "seed" not in (part := getattr(cfg.sft, key)).model_fields_set
    }
    return cfg.sft.model_copy(
        update={"model": cfg.model, "template": cfg.template, "output_dir": str(output_dir),
                "datasets": datasets, **seeded}
    )  # fmt: skip


def _tasks(items: Sequence[Mapping[str, Any]], *, seen: bool) -> list[str]:
    trained = {it["task"] for it in items if it["split"] == "train"}
    return sorted({str(it["task"]) for it in items if (it["task"] in trained) == seen})


def _print_split(items: Sequence[Mapping[str, Any]]) -> None:
    train = [it for it in items if it["split"] == "train"]
    test = [it for it in items if it["split"] == "test"]
    trained = {it["task"] for it in train}
    unseen = [it for it in test if it["task"] not in trained]
    clusters = sorted({str(it.get("cluster")) for it in unseen})
    print(
        f"demo: {len(train)} train items; {len(test)} test items, {len(unseen)} of them in "
        f"clusters never trained on ({', '.join(clusters) or 'none'}; bundled suite holds out "
        f"{', '.join(UNSEEN_CLUSTERS)})"
    )


def _format_headline(summary: Mapping[str, Any]) -> str:
    """One line per split: lenient and strict accuracy before -> after, with CI and p."""
    lines = []
    for split in ("seen", "unseen"):
        for metric in ("lenient", "strict"):
            s = summary.get(split, {}).get(metric)
            if s is None:
                continue
            lo, hi = s["ci"]
            lines.append(
                f"{split:<7}{metric:<8} n={s['n']:<4} {s['before']:.3f} -> {s['after']:.3f} "
                f"({s['delta']:+.3f}, 95% CI [{lo:+.3f}, {hi:+.3f}], p={s['p']:.4f})"
            )
    return "\n".join(lines)
