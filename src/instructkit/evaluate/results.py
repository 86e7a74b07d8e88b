"""The one results schema of every evaluation: ``eval run``, ``eval ifeval``, ``eval compare``,
``eval human import`` and the demo write :class:`EvalResults`; ``eval report`` reads it.

    results = EvalResults(title="SFT vs base", created=now(), systems=["base", "sft"],
                          tasks={"qa": ScoreRow(metric="exact_match", n=40, scores={...})})
    save_eval_results(results, "eval/results.json")
    results = load_eval_results("eval/results.json")   # DataFormatError lists every problem

A file is one JSON object (``schema_version`` 1)::

    {
      "schema_version": 1,
      "title": "SFT vs base", "created": "2025-01-31 12:00:00",
      "systems": ["base", "sft"],                # distinct names; A = systems[0], B = systems[1]
      "tasks": {"qa": ROW, ...},                 # at least one
      "groups": {"seen": ROW, ...},              # pooled rows (optional)
      "overall": ROW | null,
      "per_item": [ITEM],
      "judge": JUDGE | null, "ifeval": {system: IFEvalReport.to_dict()} | null,
      "human": {"alpha", "level", "n_items", "n_raters", "metric", "scores"} | null,
      "curves": {metric: CURVE},                 # adaptation curves (eval adapt; optional)
      "meta": {...}                              # free-form provenance (model, training, ...)
    }
    CURVE = {"metric", "x": "steps", "higher_is_better": bool,
             "points": {system: [{"k", "n", "mean", "ci_low", "ci_high"}]},   # one per k
             "comparisons": {system: [{"k", "comparison": PairedComparison.to_dict()}]}}
             # each system but systems[0] minus systems[0], paired over (task, seed) units
    ROW = {"metric", "n", "scores": {system: mean | null}, "metrics": {metric: {system: score}},
           "comparison": PairedComparison.to_dict() | null, "seen": bool | null,
           "truncated": {system: items cut at max_new_tokens},
           "comparisons": {metric: PairedComparison.to_dict()}}   # B - A on each metric
    ITEM = {"id", "task", "scores": {system: float | null},       # the primary metric
            "metrics": {metric: {system: score}}, "seen": bool | null, "cluster": str | null,
            "prompt": str | null, "reference": str | null, "responses": {system: str}}

Rules checked on load (besides types): a ``comparison`` is A = ``systems[0]`` against B =
``systems[1]`` (``diff`` = mean_b - mean_a), its means match the row's scores and wins + losses
+ ties = n, and so does each of ``comparisons`` against ``metrics``; score keys are systems;
each ``per_item`` task is one of ``tasks``; a pairwise ``judge`` names ``a`` = systems[0] and
``b`` = systems[1] and counts from A's side (``wins`` = the judge preferred A), as
:meth:`~instructkit.evaluate.judge.PairwiseResult.to_dict` does; a ``grade`` judge carries
:meth:`~instructkit.evaluate.judge.JudgeResult.to_dict`. Unknown keys are errors (they are
usually typos). Every problem of a file is reported at once, as one
:class:`~instructkit.errors.DataFormatError` naming the file and each field path, e.g.
``tasks['qa'].comparison.n``.

Two systems scored item by item on one task (the test comparison of an ``optimize`` run)
become a results object with :func:`paired_results`.
"""

from __future__ import annotations

import json
import math
import time
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from instructkit.errors import DataFormatError
from instructkit.evaluate.stats import PairedComparison
from instructkit.io import read_text, write_atomic

__all__ = [
    "SCHEMA_VERSION",
    "Comparison",
    "ScoreRow",
    "ItemScore",
    "JudgeSection",
    "IFEvalAccuracy",
    "IFEvalScores",
    "IFEvalSection",
    "HumanSection",
    "CurvePoint",
    "CurveComparison",
    "Curve",
    "EvalResults",
    "now",
    "paired_results",
    "parse_eval_results",
    "load_eval_results",
    "save_eval_results",
    "format_results",
    "paired_summary",
    "format_metrics",
]

SCHEMA_VERSION: Literal[1] = 1
_MAX_LISTED = 20
_FIX = "follow the results schema (docs/eval.md, or the docstring of instructkit.evaluate.results)."

NonEmpty = Annotated[str, Field(min_length=1, pattern=r"\S")]
Count = Annotated[int, Field(ge=0)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class _Model(BaseModel):
    # strict: "20" is not a count and true is not a score; no inf/nan anywhere.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _close(x: float, y: float) -> bool:
    return abs(x - y) <= 1e-6 * max(1.0, abs(x), abs(y))


class Comparison(_Model):
    """A paired comparison, as :meth:`~instructkit.evaluate.stats.PairedComparison.to_dict`."""

    n: Count
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    ci_level: Annotated[float, Field(gt=0.0, lt=1.0)]
    p_permutation: Probability
    p_mcnemar: Probability | None
    wins: Count
    losses: Count
    ties: Count
    permutation_exact: bool = False
    n_resamples: Count = 0
    seed: int = 0

    @model_validator(mode="after")
    def _consistent(self) -> Comparison:
        problems = []
        if self.ci_low > self.ci_high:
            problems.append(f"ci_low ({self.ci_low}) is above ci_high ({self.ci_high})")
        if self.wins + self.losses + self.ties != self.n:
            total = self.wins + self.losses + self.ties
            problems.append(f"wins + losses + ties = {total}, not n = {self.n}")
        if not _close(self.diff, self.mean_b - self.mean_a):
            problems.append(
                f"diff {self.diff} is not mean_b - mean_a = {self.mean_b - self.mean_a}"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class ScoreRow(_Model):
    """One row of the summary: a task, a pooled group, or overall.

    ``metric`` is the primary metric (``scores``, ``comparison``); ``metrics`` holds every
    metric's mean per system and ``comparisons`` the paired comparison (B - A) of each metric.
    """

    metric: NonEmpty
    n: Count
    scores: dict[str, float | None]
    metrics: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    comparison: Comparison | None = None
    seen: bool | None = None
    truncated: dict[str, Count] = Field(default_factory=dict)
    comparisons: dict[str, Comparison] = Field(default_factory=dict)


class ItemScore(_Model):
    """Per-item scores of each system: ``scores`` on the primary metric of the item's task,
    ``metrics`` on every metric; with what was asked and answered where the writer kept it
    (``eval run`` does), for the report's examples."""

    id: str | int
    task: NonEmpty
    scores: dict[str, float | None]
    metrics: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    seen: bool | None = None
    cluster: str | None = None
    prompt: str | None = None
    reference: str | None = None
    responses: dict[str, str] = Field(default_factory=dict)


class JudgeSection(_Model):
    """An LLM judge's verdicts: ``grade`` (one system, 1-10) or ``pairwise`` (A vs B).

    Pairwise counts are from A's side: ``wins`` = the judge preferred A = ``systems[0]``.
    ``items`` keeps each verdict as the judge module wrote it; ``unparseable_ids`` names the
    items whose verdict could not be read.
    """

    mode: Literal["grade", "pairwise"] = "pairwise"
    # how verdicts were read: parsed from the answer text, or from grade-token probabilities
    scoring: Literal["text", "probabilities"] = "text"
    judge: str | None = None
    a: str | None = None
    b: str | None = None
    n: Count | None = None
    wins: Count | None = None
    losses: Count | None = None
    ties: Count | None = None
    unparseable: Count = 0
    inconsistent: Count | None = None
    agreement: Probability | None = None
    win_rate: Probability | None = None
    mean: float | None = None
    parsed: Count | None = None
    items: list[dict[str, Any]] = Field(default_factory=list)
    unparseable_ids: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _counts(self) -> JudgeSection:
        if self.mode == "pairwise":
            missing = [k for k in ("wins", "losses", "ties") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"a pairwise judge needs {', '.join(missing)}")
        return self


class IFEvalAccuracy(_Model):
    accuracy: Probability | None
    correct: Count | None = None
    total: Count | None = None
    not_run: Count | None = None


class IFEvalScores(_Model):
    strict: IFEvalAccuracy
    loose: IFEvalAccuracy


class IFEvalSection(_Model):
    """One system's IFEval report, as :meth:`~instructkit.evaluate.ifeval.IFEvalReport.to_dict`."""

    n_prompts: Count | None = None
    n_rejected: Count = 0
    n_truncated: Count | None = None
    prompt_level: IFEvalScores
    instruction_level: IFEvalScores
    by_category: dict[str, IFEvalScores] = Field(default_factory=dict)
    by_instruction: dict[str, IFEvalScores] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    rejects: list[dict[str, Any]] = Field(default_factory=list)

    def accuracies(self) -> dict[str, float | None]:
        """The four IFEval accuracies: prompt/instruction level, strict/loose."""
        return {
            "prompt_strict": self.prompt_level.strict.accuracy,
            "prompt_loose": self.prompt_level.loose.accuracy,
            "instruction_strict": self.instruction_level.strict.accuracy,
            "instruction_loose": self.instruction_level.loose.accuracy,
        }


class HumanSection(_Model):
    """Human ratings: Krippendorff's alpha between raters and the mean rating per system."""

    alpha: Annotated[float, Field(le=1.0)] | None
    level: NonEmpty | None = None
    n_items: Count | None = None
    n_raters: Count | None = None
    metric: NonEmpty | None = None
    scores: dict[str, float | None] = Field(default_factory=dict)


class CurvePoint(_Model):
    """One point of an adaptation curve: the mean over ``n`` units at ``k`` and its CI."""

    k: Count
    n: Count
    mean: float
    ci_low: float
    ci_high: float


class CurveComparison(_Model):
    """A system against ``systems[0]`` at ``k``, paired over the same units."""

    k: Count
    comparison: Comparison


class Curve(_Model):
    """A metric against adaptation steps ``k`` per system (``eval adapt``)."""

    metric: NonEmpty
    x: NonEmpty = "steps"
    higher_is_better: bool = True
    level: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.95
    points: dict[str, list[CurvePoint]]
    comparisons: dict[str, list[CurveComparison]] = Field(default_factory=dict)


class _Problems(ValueError):
    """Cross-field problems, each with its path; reported one by one."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{w}: {m}" for w, m in problems))


class EvalResults(_Model):
    """The results of one evaluation (see the module docstring)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    title: NonEmpty
    created: NonEmpty
    systems: Annotated[list[NonEmpty], Field(min_length=1)]
    tasks: Annotated[dict[str, ScoreRow], Field(min_length=1)]
    groups: dict[str, ScoreRow] = Field(default_factory=dict)
    overall: ScoreRow | None = None
    per_item: list[ItemScore] = Field(default_factory=list)
    judge: JudgeSection | None = None
    ifeval: dict[str, IFEvalSection] | None = None
    human: HumanSection | None = None
    curves: dict[str, Curve] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _model_a_b(cls, data: Any) -> Any:
        """Older files name two systems as ``model_a`` / ``model_b``."""
        if not isinstance(data, dict) or not ({"model_a", "model_b"} & data.keys()):
            return data
        data = dict(data)
        pair = [data.pop("model_a", None), data.pop("model_b", None)]
        if "systems" not in data:
            data["systems"] = pair
        elif data["systems"][:2] != pair:
            raise _Problems([("model_a", f"model_a/model_b {pair} disagree with systems")])
        return data

    @model_validator(mode="after")
    def _cross_fields(self) -> EvalResults:
        problems = _system_problems(self)
        for where, row in _rows(self):
            problems += _row_problems(row, self.systems, where)
        for i, item in enumerate(self.per_item):
            if item.task not in self.tasks:
                problems.append((f"per_item[{i}].task", f"{item.task!r} is not one of the tasks"))
            problems += _keys_problems(item.scores, self.systems, f"per_item[{i}].scores")
            for metric, by_system in item.metrics.items():
                where = f"per_item[{i}].metrics[{metric!r}]"
                problems += _keys_problems(by_system, self.systems, where)
            problems += _keys_problems(item.responses, self.systems, f"per_item[{i}].responses")
        problems += _judge_problems(self.judge, self.systems)
        for name in self.ifeval or {}:
            if name not in self.systems:
                problems.append((f"ifeval[{name!r}]", f"not one of the systems {self.systems}"))
        if self.human is not None:
            problems += _keys_problems(self.human.scores, self.systems, "human.scores")
        for name, curve in self.curves.items():
            problems += _keys_problems(curve.points, self.systems, f"curves[{name!r}].points")
            where = f"curves[{name!r}].comparisons"
            problems += _keys_problems(curve.comparisons, self.systems, where)
        if problems:
            raise _Problems(problems)
        return self


def _rows(results: EvalResults) -> list[tuple[str, ScoreRow]]:
    rows = [(f"tasks[{k!r}]", r) for k, r in results.tasks.items()]
    rows += [(f"groups[{k!r}]", r) for k, r in results.groups.items()]
    return rows + ([("overall", results.overall)] if results.overall else [])


def _system_problems(results: EvalResults) -> list[tuple[str, str]]:
    if len(set(results.systems)) != len(results.systems):
        return [("systems", f"names must be distinct, got {results.systems}")]
    return []


def _keys_problems(
    scores: Mapping[str, Any], systems: list[str], where: str
) -> list[tuple[str, str]]:
    return [
        (f"{where}[{k!r}]", f"not one of the systems {systems}") for k in scores if k not in systems
    ]


def _row_problems(row: ScoreRow, systems: list[str], where: str) -> list[tuple[str, str]]:
    problems = _keys_problems(row.scores, systems, f"{where}.scores")
    for metric, by_system in row.metrics.items():
        problems += _keys_problems(by_system, systems, f"{where}.metrics[{metric!r}]")
    problems += _keys_problems(row.truncated, systems, f"{where}.truncated")
    if row.comparison is not None:
        problems += _comparison_problems(row.comparison, row.scores, systems, f"{where}.comparison")
    for metric, c in row.comparisons.items():
        at = f"{where}.comparisons[{metric!r}]"
        if metric not in row.metrics:
            problems.append((at, f"{metric!r} is not one of the row's metrics"))
        else:
            problems += _comparison_problems(c, row.metrics[metric], systems, at)
    return problems


def _comparison_problems(
    c: Comparison, scores: Mapping[str, float | None], systems: list[str], where: str
) -> list[tuple[str, str]]:
    """A comparison is A = systems[0] vs B = systems[1]: its means are their ``scores``."""
    if len(systems) < 2:
        return [(where, "a comparison needs two systems (A, B)")]
    problems = []
    for key, mean, system in (("mean_a", c.mean_a, systems[0]), ("mean_b", c.mean_b, systems[1])):
        score = scores.get(system)
        if score is not None and not _close(mean, score):
            problems.append(
                (
                    f"{where}.{key}",
                    f"{mean} differs from the score of {system!r} ({score}); a comparison must "
                    f"be A = {systems[0]!r} (systems[0]) vs B = {systems[1]!r} (systems[1])",
                )
            )
    return problems


def _judge_problems(judge: JudgeSection | None, systems: list[str]) -> list[tuple[str, str]]:
    if judge is None or judge.mode != "pairwise":
        return []
    if len(systems) < 2:
        return [("judge", "a pairwise judge needs two systems (A = systems[0], B = systems[1])")]
    problems = []
    for key, expected in (("a", systems[0]), ("b", systems[1])):
        value = getattr(judge, key)
        if value is not None and value != expected:
            problems.append(
                (f"judge.{key}", f"{value!r} is not systems[{key == 'b':d}] {expected!r}")
            )
    return problems


# --- reading and writing ---------------------------------------------------------------------


def now() -> str:
    """The ``created`` stamp of a new results object."""
    return time.strftime("%Y-%m-%d %H:%M:%S")


def paired_results(
    title: str,
    task: str,
    metric: str,
    scores: Mapping[str, Sequence[float]],
    comparison: PairedComparison,
    meta: Mapping[str, Any] | None = None,
) -> EvalResults:
    """Two systems scored on the same items of ``task`` (``scores``: system -> per-item
    scores, A first) with their paired ``comparison`` (B - A), as :class:`EvalResults`."""
    (a, xs), (b, ys) = scores.items()
    per_item = [
        ItemScore(id=i, task=task, scores={a: x, b: y})
        for i, (x, y) in enumerate(zip(xs, ys, strict=True))
    ]
    row = ScoreRow(
        metric=metric,
        n=comparison.n,
        scores={a: comparison.mean_a, b: comparison.mean_b},
        comparison=Comparison(**comparison.to_dict()),
    )
    return EvalResults(
        title=title,
        created=now(),
        systems=[a, b],
        tasks={task: row},
        per_item=per_item,
        meta=dict(meta or {}),
    )


def save_eval_results(results: EvalResults, path: str | Path) -> Path:
    """Write ``results`` as JSON, atomically; returns the path."""
    text = json.dumps(results.model_dump(mode="json"), indent=2, ensure_ascii=False)
    write_atomic(path, [text + "\n"])
    return Path(path)


def parse_eval_results(
    obj: Any, *, path: str | Path | None = None, context: str | None = None
) -> EvalResults:
    """Validate one results object; DataFormatError lists every problem with its field path."""
    if not isinstance(obj, dict):
        kind = "an array" if isinstance(obj, list) else type(obj).__name__
        _raise([f"top level: expected a JSON object, got {kind}"], path, context)
    try:
        return EvalResults.model_validate(obj)
    except ValidationError as e:
        _raise(_describe(e), path, context)
        raise  # unreachable: _raise always raises


def load_eval_results(path: str | Path) -> EvalResults:
    """Read and validate a results JSON file."""
    return parse_eval_results(read_json(Path(path)), path=path)


def read_json(path: Path) -> Any:
    """The JSON value of a file; DataFormatError says what is wrong with it."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataFormatError(
            f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}.",
            path=path,
            fix="repair the file; instructkit's evaluations write valid JSON.",
        ) from e


def _raise(problems: list[str], path: str | Path | None, context: str | None) -> typing.NoReturn:
    n = len(problems)
    listed = problems[:_MAX_LISTED]
    more = f"; and {n - len(listed)} more" if n > len(listed) else ""
    where = f", {context}" if context else ""
    raise DataFormatError(
        f"not a valid results file{where} ({n} problem{'s' if n > 1 else ''}): "
        + "; ".join(listed)
        + more
        + ".",
        path=path,
        fix=_FIX,
    )


def _describe(error: ValidationError) -> list[str]:
    out = []
    for err in error.errors():
        cause = (err.get("ctx") or {}).get("error")
        where = _path(err["loc"])
        if isinstance(cause, _Problems):
            out += [_join(where, w, m) for w, m in cause.problems]
        elif err["type"] == "extra_forbidden":
            out.append(f"{where}: unknown key")
        elif err["type"] == "missing":
            out.append(f"{where}: missing")
        elif err["type"] == "value_error":  # a rule of a model_validator: the input is whole
            out.append(f"{where or 'top level'}: {str(err['msg']).removeprefix('Value error, ')}")
        else:
            out.append(f"{where or 'top level'}: {err['msg']} (got {_kind(err.get('input'))})")
    return list(dict.fromkeys(out))


def _join(prefix: str, where: str, message: str) -> str:
    return f"{prefix + '.' if prefix else ''}{where}: {message}"


def _kind(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "an array"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _path(loc: tuple[int | str, ...]) -> str:
    """``("tasks", "qa", "n")`` -> ``tasks['qa'].n``: dict keys in brackets, fields dotted."""
    out = ""
    node: Any = EvalResults
    for part in loc:
        node, kind = _step(node, part)
        if kind == "skip":
            continue
        if kind == "field":
            out += f".{part}" if out else str(part)
        else:
            out += f"[{part}]" if isinstance(part, int) else f"[{part!r}]"
    return out


def _step(node: Any, part: int | str) -> tuple[Any, str]:
    """Walk one ``loc`` part down the annotations: (next node, field | key | skip)."""
    node = _unwrap(node)
    if isinstance(node, type) and issubclass(node, BaseModel):
        if part in node.model_fields:
            return node.model_fields[str(part)].annotation, "field"
        return None, "field"  # an unknown key
    origin = typing.get_origin(node)
    if origin in (dict, list):
        return typing.get_args(node)[-1], "key"
    return node, "skip"  # a union member tag such as 'str' or 'int'


def _unwrap(node: Any) -> Any:
    """``X | None`` and ``Annotated[X, ...]`` -> X (a model or a container where one is)."""
    while True:
        origin = typing.get_origin(node)
        if origin is Annotated:
            node = typing.get_args(node)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(node) if a is not type(None)]
            if len(args) == 1:
                node = args[0]
                continue
        return node


# --- the console summary ---------------------------------------------------------------------


def format_results(results: EvalResults) -> str:
    """Plain-text summary: a row per task and group and overall, IFEval's four accuracies,
    the judge's counts and the warnings (e.g. truncated responses)."""
    systems = results.systems
    two = len(systems) == 2
    head = f"{'task':<20}{'n':>5}" + "".join(f"{s:>12}" for s in systems)
    lines = [head + ("   diff [95% CI]  p" if two else "")]
    named = {**results.tasks, **{f"[{k}]": r for k, r in results.groups.items()}}
    named |= {"[overall]": results.overall} if results.overall else {}
    for name, row in named.items():
        cells = "".join(_cell(row.scores.get(s)) for s in systems)
        line = f"{name:<20}{row.n:>5}{cells}"
        c = row.comparison
        if c is not None:
            line += f"   {c.diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]  {c.p_permutation:.4f}"
        lines.append(line)
    for system, section in (results.ifeval or {}).items():
        acc = "  ".join(f"{k} {_cell(v).strip()}" for k, v in section.accuracies().items())
        lines.append(f"IFEval {system}: {acc}")
    lines += _judge_lines(results.judge)
    lines += [f"warning: {w}" for w in results.meta.get("warnings", [])]
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return f"{'-':>12}" if value is None else f"{value:>12.4f}"


def _judge_lines(judge: JudgeSection | None) -> list[str]:
    if judge is None:
        return []
    if judge.mode == "grade":
        mean = "-" if judge.mean is None else f"{judge.mean:.2f}"
        return [
            f"judge {judge.judge}: mean grade {mean} of {judge.n}, {judge.unparseable} unparseable"
        ]
    return [
        f"judge {judge.judge}: {judge.a} preferred {judge.wins}, {judge.b} preferred "
        f"{judge.losses}, ties {judge.ties}, unparseable {judge.unparseable}"
    ]


# --- every metric, paired ---------------------------------------------------------------------


def _named_rows(results: EvalResults, names: Sequence[str] | None) -> dict[str, ScoreRow]:
    """Group rows (and "overall") by name: ``names``, or every group then overall."""
    rows = {**results.groups, **({"overall": results.overall} if results.overall else {})}
    if names is None:
        return rows
    missing = [n for n in names if n not in rows]
    if missing:
        raise DataFormatError(
            f"the results have no row {', '.join(map(repr, missing))} (rows: {', '.join(rows)})",
            fix="set seen_tasks (groups seen/unseen) or give items a cluster (cluster:NAME).",
        )
    return {n: rows[n] for n in names}


def paired_summary(
    results: EvalResults,
    groups: Sequence[str] = ("seen", "unseen"),
    metrics: Sequence[str] = ("strict", "lenient", "format"),
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{group: {metric: {"n", "before", "after", "delta", "ci": [lo, hi], "p"}}}`` from the
    rows' paired comparisons (before = ``systems[0]``, after = ``systems[1]``; p: permutation
    test); ``groups`` are group names or "overall". DataFormatError names a missing row or
    metric."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, row in _named_rows(results, groups).items():
        missing = [m for m in metrics if m not in row.comparisons]
        if missing:
            raise DataFormatError(
                f"row {name!r} has no paired comparison of {', '.join(missing)}",
                fix="compare two systems with these metrics (eval run: tasks[].metrics).",
            )
        out[name] = {
            m: {
                "n": c.n,
                "before": c.mean_a,
                "after": c.mean_b,
                "delta": c.diff,
                "ci": [c.ci_low, c.ci_high],
                "p": c.p_permutation,
            }
            for m in metrics
            for c in [row.comparisons[m]]
        }
    return out


def format_metrics(
    results: EvalResults,
    metrics: Sequence[str] = ("strict", "lenient", "format"),
    rows: Sequence[str] | None = None,
) -> str:
    """Plain-text table: per group row (default: every group, then overall) and metric, A -> B
    and, with two systems, B - A [95% CI] and p."""
    head = f"{'':<22}{'n':>5}" + "".join(f"  {m:<38}" for m in metrics)
    lines = [head]
    for name, row in _named_rows(results, rows).items():
        cells = []
        for m in metrics:
            scores = row.metrics.get(m, {})
            cell = " -> ".join(_cell(scores.get(s)).strip() for s in results.systems)
            c = row.comparisons.get(m)
            if c is not None:
                cell += f" {c.diff:+.3f} [{c.ci_low:+.3f},{c.ci_high:+.3f}] p={c.p_permutation:.3f}"
            cells.append(f"  {cell:<38}")
        lines.append(f"{name:<22}{row.n:>5}" + "".join(cells))
    return "\n".join(lines)
