"""The data of an evaluation report: results files loaded, validated and merged.

    data = load_results(["results.json"])      # files in the one results schema
    page = render_report(data)                 # str; the page loads nothing from anywhere
    write_report(["results.json"], "report.html")

The files are :class:`~instructkit.evaluate.results.EvalResults` (schema and its rules in
:mod:`instructkit.evaluate.results` and docs/eval.md), written by ``eval run``, ``eval
ifeval``, ``eval compare -o``, ``eval human import -o`` and the demo. A legacy demo
``metrics.json`` (``before``/``after`` holding ``per_task``, written before the demo wrote
results.json) is converted by :func:`demo_metrics_to_results`: systems "before" and "after",
seen/unseen tasks as groups, its ``significance`` comparisons on the groups and overall, and
the file's modification time as ``created``.

The page has a header (title, date, systems, sources), a summary table (score per system,
difference B - A with its confidence interval, permutation p, Holm-adjusted p, McNemar p,
wins/losses/ties, seen/unseen), plots (score distributions, per-task scores beside the
differences with their CIs, judge outcomes, the training loss) and tables for IFEval and human
ratings when given. With two systems scored strict / lenient / format it shows how much of the
gain is format and how much content; with the per-item responses (``eval run`` keeps them) a
table of example predictions per task, flipped items first.

The training loss comes from a metrics JSONL (``metrics.jsonl`` of ``train sft``: events with
``step`` and ``loss`` / ``eval_loss``) named by a results file's ``meta.train_log`` (a path
relative to the results file, or absolute) or given to :func:`load_results` as ``train_log``.

Several files merge into one report when they name the same systems in the same order; task and
group names must be unique across them, and judge/human results may come from one file only. If
more than one file has an ``overall``, each becomes a group row "overall (<file name>)".

Multiple comparisons: the per-task permutation p-values form one family, adjusted by Holm's
step-down method (Holm 1979, "A Simple Sequentially Rejective Multiple Test Procedure"); a task
is marked significant only when its adjusted p is below alpha. Group and overall rows pool items
of the tasks, so their p-values are single tests, marked "uncorrected"; McNemar p-values and CIs
are never adjusted. The page says so under the table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from instructkit.errors import DataFormatError
from instructkit.evaluate.results import (
    Comparison,
    Curve,
    EvalResults,
    HumanSection,
    IFEvalSection,
    ItemScore,
    JudgeSection,
    ScoreRow,
    parse_eval_results,
    read_json,
)
from instructkit.evaluate.stats import PairedComparison, holm_adjust
from instructkit.train.tracking import read_metrics

__all__ = [
    "TaskRow",
    "ItemScores",
    "JudgeSummary",
    "IFEvalSummary",
    "HumanSummary",
    "Source",
    "TrainLog",
    "ReportData",
    "read_train_log",
    "B_BETTER",
    "A_BETTER",
    "SAME",
    "flip",
    "pick_examples",
    "holm_adjust",
    "parse_results",
    "report_data",
    "demo_metrics_to_results",
    "load_results",
]


# --- the report's data --------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskRow:
    """One row of the summary table: a task, a pooled group, or overall."""

    name: str
    metric: str
    n: int
    scores: dict[str, float | None]  # system -> mean score (None: not scored)
    comparison: PairedComparison | None = None  # systems[0] (A) vs systems[1] (B)
    seen: bool | None = None
    metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)  # metric -> system
    comparisons: dict[str, PairedComparison] = field(default_factory=dict)  # metric -> B vs A


@dataclass(frozen=True)
class ItemScores:
    """Per-item scores of each system (``scores``: the primary metric; ``metrics``: every
    metric), with the prompt, reference and responses where the results keep them."""

    id: str
    task: str
    scores: dict[str, float | None]
    metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)
    prompt: str | None = None
    reference: str | None = None
    responses: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainLog:
    """The training loss events of the tuned system (steps with ``loss`` / ``eval_loss``)."""

    path: str
    events: tuple[dict[str, Any], ...] = ()
    missing: bool = False  # named by the results, but not there


@dataclass(frozen=True)
class JudgeSummary:
    """Judge outcomes; pairwise counts are from A's side: ``wins`` = the judge preferred A."""

    agreement: float | None  # share of items whose two presentation orders agreed
    wins: int
    losses: int
    ties: int
    unparseable: int
    judge: str | None = None
    inconsistent: int | None = None
    mode: str = "pairwise"  # "grade": one system graded 1-10 (mean, n; no wins)
    scoring: str = "text"  # "probabilities": G-Eval-style, from the grade tokens' probabilities
    n: int | None = None
    mean: float | None = None


@dataclass(frozen=True)
class IFEvalSummary:
    """IFEval accuracies of one system (None where nothing could be scored)."""

    prompt_strict: float | None
    prompt_loose: float | None
    instruction_strict: float | None
    instruction_loose: float | None
    n_prompts: int | None = None


@dataclass(frozen=True)
class HumanSummary:
    """Human ratings: Krippendorff's alpha between raters and mean rating per system."""

    alpha: float | None
    level: str | None = None
    n_items: int | None = None
    n_raters: int | None = None
    metric: str | None = None
    scores: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Source:
    """A results file behind the report."""

    path: str
    title: str
    created: str


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows; build it with :func:`load_results` or :func:`parse_results`."""

    title: str
    created: str
    systems: tuple[str, ...]
    tasks: tuple[TaskRow, ...]
    groups: tuple[TaskRow, ...] = ()
    overall: TaskRow | None = None
    per_item: tuple[ItemScores, ...] = ()
    judge: JudgeSummary | None = None
    ifeval: dict[str, IFEvalSummary] = field(default_factory=dict)
    human: HumanSummary | None = None
    sources: tuple[Source, ...] = ()
    train_log: TrainLog | None = None
    curves: dict[str, Curve] = field(default_factory=dict)  # eval adapt


# --- example predictions -----------------------------------------------------------------------

B_BETTER, A_BETTER, SAME = 0, 1, 2  # how an item's primary score moved from A to B


def flip(item: ItemScores, a: str, b: str) -> int:
    """B_BETTER, A_BETTER or SAME (equal, or a score missing) on the primary metric."""
    x, y = item.scores.get(a), item.scores.get(b)
    if x is None or y is None or x == y:
        return SAME
    return B_BETTER if y > x else A_BETTER


def pick_examples(
    items: Sequence[ItemScores], a: str, b: str, k: int
) -> list[tuple[int, ItemScores]]:
    """Up to ``k`` items with their flip: items B got better first (largest change first), then
    items A got better, then unchanged ones, in file order. Both directions are shown when both
    happened: A-better items get at least ``k // 2`` places (or all there are), so a few
    regressions are never crowded out by many gains."""
    kinds: dict[int, list[ItemScores]] = {B_BETTER: [], A_BETTER: [], SAME: []}
    for it in items:
        kinds[flip(it, a, b)].append(it)
    for kind in (B_BETTER, A_BETTER):
        kinds[kind].sort(key=lambda it: -abs((it.scores[b] or 0.0) - (it.scores[a] or 0.0)))
    take_a = min(len(kinds[A_BETTER]), max(k - len(kinds[B_BETTER]), k // 2))
    take_b = min(len(kinds[B_BETTER]), k - take_a)
    counts = {B_BETTER: take_b, A_BETTER: take_a, SAME: max(0, k - take_a - take_b)}
    return [(kind, it) for kind in (B_BETTER, A_BETTER, SAME) for it in kinds[kind][: counts[kind]]]


# --- from the results schema -------------------------------------------------------------------


def _comparison(c: Comparison | None) -> PairedComparison | None:
    return None if c is None else PairedComparison(**c.model_dump())


def _task_row(name: str, row: ScoreRow, systems: tuple[str, ...]) -> TaskRow:
    return TaskRow(
        name=name,
        metric=row.metric,
        n=row.n,
        scores={s: row.scores.get(s) for s in systems},
        comparison=_comparison(row.comparison),
        seen=row.seen,
        metrics={m: {s: v.get(s) for s in systems} for m, v in row.metrics.items()},
        comparisons={m: PairedComparison(**c.model_dump()) for m, c in row.comparisons.items()},
    )


def _item(item: ItemScore, systems: tuple[str, ...]) -> ItemScores:
    return ItemScores(
        id=str(item.id),
        task=item.task,
        scores={s: item.scores.get(s) for s in systems},
        metrics={m: {s: v.get(s) for s in systems} for m, v in item.metrics.items()},
        prompt=item.prompt,
        reference=item.reference,
        responses={s: item.responses[s] for s in systems if s in item.responses},
    )


def _train_log(results: EvalResults, path: str | Path | None) -> TrainLog | None:
    """The log named by ``meta.train_log``, relative to the results file's folder."""
    named = results.meta.get("train_log")
    if not isinstance(named, str) or not named:
        return None
    where = Path(named)
    if not where.is_absolute() and path is not None:
        where = Path(path).parent / where
    return read_train_log(where, required=False)


def read_train_log(path: str | Path, *, required: bool = True) -> TrainLog:
    """The loss events of a metrics JSONL; a missing file is a DataFormatError if
    ``required``, else a :class:`TrainLog` marked ``missing`` (the report says so)."""
    path = Path(path)
    if not path.is_file():
        if required:
            raise DataFormatError(
                "the training log does not exist.",
                path=path,
                fix="give the metrics.jsonl of the training run (train sft writes one).",
            )
        return TrainLog(str(path), missing=True)
    events = [e for e in read_metrics(path) if isinstance(e, dict) and "step" in e]
    return TrainLog(str(path), tuple(e for e in events if "loss" in e or "eval_loss" in e))


def _judge(judge: JudgeSection | None) -> JudgeSummary | None:
    if judge is None:
        return None
    return JudgeSummary(
        agreement=judge.agreement,
        wins=judge.wins or 0,
        losses=judge.losses or 0,
        ties=judge.ties or 0,
        unparseable=judge.unparseable,
        judge=judge.judge,
        inconsistent=judge.inconsistent,
        mode=judge.mode,
        scoring=judge.scoring,
        n=judge.n,
        mean=judge.mean,
    )


def _ifeval(section: IFEvalSection) -> IFEvalSummary:
    acc = section.accuracies()
    return IFEvalSummary(
        prompt_strict=acc["prompt_strict"],
        prompt_loose=acc["prompt_loose"],
        instruction_strict=acc["instruction_strict"],
        instruction_loose=acc["instruction_loose"],
        n_prompts=section.n_prompts,
    )


def _human(human: HumanSection | None, systems: tuple[str, ...]) -> HumanSummary | None:
    if human is None:
        return None
    return HumanSummary(
        alpha=human.alpha,
        level=human.level,
        n_items=human.n_items,
        n_raters=human.n_raters,
        metric=human.metric,
        scores={s: human.scores[s] for s in systems if s in human.scores},
    )


def report_data(results: EvalResults, *, path: str | Path | None = None) -> ReportData:
    """The report's view of one validated :class:`EvalResults`."""
    systems = tuple(results.systems)
    return ReportData(
        title=results.title,
        created=results.created,
        systems=systems,
        tasks=tuple(_task_row(k, r, systems) for k, r in results.tasks.items()),
        groups=tuple(_task_row(k, r, systems) for k, r in results.groups.items()),
        overall=None if results.overall is None else _task_row("overall", results.overall, systems),
        per_item=tuple(_item(it, systems) for it in results.per_item),
        judge=_judge(results.judge),
        ifeval={k: _ifeval(v) for k, v in (results.ifeval or {}).items()},
        human=_human(results.human, systems),
        sources=(Source(str(path), results.title, results.created),) if path is not None else (),
        train_log=_train_log(results, path),
        curves=dict(results.curves),
    )


def parse_results(
    obj: Any, *, path: str | Path | None = None, context: str | None = None
) -> ReportData:
    """Validate one results object (:class:`~instructkit.evaluate.results.EvalResults`) and
    build its ReportData; DataFormatError lists every problem with ``path`` and ``context``."""
    return report_data(parse_eval_results(obj, path=path, context=context), path=path)


# --- loading -------------------------------------------------------------------------------------


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else None


def _is_demo_metrics(obj: Any) -> bool:
    return isinstance(_get(obj, "before"), dict) and "per_task" in obj["before"]


def demo_metrics_to_results(metrics: Mapping[str, Any], *, created: str) -> dict[str, Any]:
    """The results-schema object of the demo's metrics.json (systems "before" and "after").

    Malformed parts come through as nulls, which :func:`parse_results` then reports.
    """
    before, after = metrics.get("before"), metrics.get("after")
    seen_tasks = metrics.get("seen_tasks")
    significance = metrics.get("significance") or {}

    def row(name: str | None, b: Any, a: Any, seen: bool | None = None) -> dict[str, Any]:
        scores = {"before": _get(b, "accuracy"), "after": _get(a, "accuracy")}
        entry = {"metric": "accuracy", "n": _get(b, "n"), "scores": scores, "seen": seen}
        if name is not None and _get(significance, name) is not None:
            entry["comparison"] = significance[name]
        return entry

    per_task, per_task_after = _get(before, "per_task"), _get(after, "per_task")
    tasks = per_task  # not an object: left for parse_results to report
    if isinstance(per_task, dict):
        tasks = {
            task: row(None, b, _get(per_task_after, task), _seen(task, seen_tasks))
            for task, b in per_task.items()
        }
    groups = {
        key: row(key, _get(before, key), _get(after, key))
        for key in ("seen", "unseen")
        if _get(_get(before, key), "n")  # the demo writes n = 0 for an empty group
    }
    results: dict[str, Any] = {
        "title": f"Demo: {metrics.get('model', 'model')}, before vs after fine-tuning",
        "created": created,
        "systems": ["before", "after"],
        "tasks": tasks,
        "groups": groups,
    }
    if _get(before, "overall") is not None:
        results["overall"] = row("all", _get(before, "overall"), _get(after, "overall"))
    return results


def _seen(task: str, seen_tasks: Any) -> bool | None:
    return task in seen_tasks if isinstance(seen_tasks, list) else None


def _load_one(path: Path) -> ReportData:
    obj = read_json(path)
    if not _is_demo_metrics(obj):
        return parse_results(obj, path=path)
    modified = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
    created = modified.strftime("%Y-%m-%d %H:%M UTC (file modified)")
    results = demo_metrics_to_results(obj, created=created)
    return parse_results(results, path=path, context="converted from the demo's metrics.json")


def load_results(
    paths: str | Path | Sequence[str | Path], *, train_log: str | Path | None = None
) -> ReportData:
    """Load, validate and merge results files (or demo metrics.json files) into one ReportData;
    ``train_log`` (a metrics JSONL) replaces the training log the results name."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise DataFormatError("no results files given.", fix="pass at least one results file.")
    parts = [_load_one(Path(p)) for p in paths]
    data = parts[0] if len(parts) == 1 else _merge(parts)
    if train_log is not None:
        data = dataclasses.replace(data, train_log=read_train_log(train_log))
    return data


def _unique(rows: list[tuple[Source, TaskRow]], kind: str) -> tuple[TaskRow, ...]:
    first: dict[str, Source] = {}
    for source, row in rows:
        if row.name in first:
            raise DataFormatError(
                f"{kind} {row.name!r} is also in {first[row.name].path}.",
                path=source.path,
                fix="rename one of them, or report the files separately.",
            )
        first[row.name] = source
    return tuple(row for _, row in rows)


def _only_one(parts: list[ReportData], key: str) -> Any:
    found = [p for p in parts if getattr(p, key)]
    if len(found) > 1:
        raise DataFormatError(
            f"{key} results are also in {found[0].sources[0].path}; one file may carry them.",
            path=found[1].sources[0].path,
            fix="report the files separately.",
        )
    return getattr(found[0], key) if found else None


def _merge(parts: list[ReportData]) -> ReportData:
    first = parts[0]
    for part in parts[1:]:
        if part.systems != first.systems:
            raise DataFormatError(
                f"systems {list(part.systems)} differ from {list(first.systems)} in "
                f"{first.sources[0].path}.",
                path=part.sources[0].path,
                fix="merge only results of the same systems, listed in the same order.",
            )
    overalls = [(p.sources[0], p.overall) for p in parts if p.overall is not None]
    groups = [(p.sources[0], g) for p in parts for g in p.groups]
    if len(overalls) > 1:
        groups += [
            (s, dataclasses.replace(o, name=f"overall ({Path(s.path).name})")) for s, o in overalls
        ]
    ifeval: dict[str, IFEvalSummary] = {}
    for part in parts:
        for system in part.ifeval.keys() & ifeval.keys():
            raise DataFormatError(
                f"IFEval results of {system!r} are in two files.",
                path=part.sources[0].path,
                fix="keep one of them.",
            )
        ifeval |= part.ifeval
    return ReportData(
        title=first.title,
        created=first.created,
        systems=first.systems,
        tasks=_unique([(p.sources[0], t) for p in parts for t in p.tasks], "task"),
        groups=_unique(groups, "group"),
        overall=overalls[0][1] if len(overalls) == 1 else None,
        per_item=tuple(item for p in parts for item in p.per_item),
        judge=_only_one(parts, "judge"),
        ifeval=ifeval,
        human=_only_one(parts, "human"),
        sources=tuple(s for p in parts for s in p.sources),
        train_log=_only_one(parts, "train_log"),
        curves=_only_one(parts, "curves") or {},
    )
