"""The data of an evaluation report: the results schema, its validation, loading and merging.

    data = load_results(["results.json"])      # or the demo's out/demo/metrics.json
    page = render_report(data)                 # str; the page loads nothing from anywhere
    write_report(["results.json"], "report.html")

The page has a header (title, date, systems, sources), a summary table (score per system,
difference B - A with its confidence interval, permutation p, Holm-adjusted p, McNemar p,
wins/losses/ties, seen/unseen), plots (score distributions, per-task scores beside the
differences with their CIs, judge outcomes) and tables for IFEval and human ratings when given.
All text from the files is HTML-escaped; a Content-Security-Policy forbids any fetch or script.

Results JSON (schema version 1), one object per file::

    {
      "schema_version": 1,                       # optional; 1 is the only version
      "title": "SFT vs base",                    # required
      "created": "2025-01-31T12:00:00Z",         # required, free text (ISO 8601 advised)
      "systems": ["base", "sft"],                # or "model_a": "base", "model_b": "sft"
      "tasks": {                                 # required, at least one
        "qa": {
          "metric": "exact_match",              # required: what the scores measure
          "n": 40,                               # required: items scored, int >= 0
          "scores": {"base": 0.40, "sft": 0.55}, # mean per system; null/absent = not scored
          "comparison": {...},                   # optional: PairedComparison.to_dict(), or null
          "seen": true                           # optional: task seen in training (or null)
        }
      },
      "groups": {"seen": {...}},                 # optional pooled rows, each shaped as a task
      "overall": {...},                          # optional, shaped as a task
      "per_item": [{"id": "qa-1", "task": "qa", "scores": {"base": 0, "sft": 1}}],
      "judge": {"agreement": 0.8, "wins": 10, "losses": 20, "ties": 5, "unparseable": 1},
      "ifeval": {"sft": IFEvalReport.to_dict()}, # optional, per system
      "human": {"alpha": 0.71, "level": "ordinal", "n_items": 50, "n_raters": 3,
                "metric": "rating 1-10", "scores": {"base": 5.1, "sft": 6.0}}
    }

Rules: a ``comparison`` is always A = ``systems[0]`` against B = ``systems[1]`` (``diff`` =
mean_b - mean_a, as :func:`~instructkit.evaluate.stats.compare_paired` returns it); its means
must match the row's scores, and wins + losses + ties must equal its n. ``per_item`` (optional)
feeds the distribution plot; each item's task must be one of ``tasks``. ``judge`` counts are
from A's side, as in ``PairwiseResult.to_dict()`` (accepted as is): ``wins`` = the judge
preferred A. Unknown keys are errors (they are usually typos); every problem of a file is
reported together, as one :class:`~instructkit.errors.DataFormatError`.

The demo's metrics.json (``before``/``after`` holding ``per_task``) is recognised and converted
by :func:`demo_metrics_to_results`: systems "before" and "after", seen/unseen tasks as groups,
its ``significance`` comparisons (if any) on the groups and overall, and the file's modification
time as ``created``.

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
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from instructkit.errors import DataFormatError
from instructkit.evaluate.stats import PairedComparison

if TYPE_CHECKING:
    pass

__all__ = [
    "TaskRow",
    "ItemScores",
    "JudgeSummary",
    "IFEvalSummary",
    "HumanSummary",
    "Source",
    "ReportData",
    "holm_adjust",
    "parse_results",
    "demo_metrics_to_results",
    "load_results",
]

_MISSING: Any = object()  # a key that is absent, told apart from an explicit null
_MAX_LISTED_PROBLEMS = 20
_TOP_KEYS = frozenset(
    {"schema_version", "title", "created", "systems", "model_a", "model_b", "tasks", "groups"}
    | {"overall", "per_item", "judge", "ifeval", "human"}
)
# "metrics": every metric of the task per system (written by `eval run`; the page shows the
# primary one, "metric")
_TASK_KEYS = frozenset({"metric", "n", "scores", "comparison", "seen", "metrics"})
_COMPARISON_FLOATS = ("mean_a", "mean_b", "diff", "ci_low", "ci_high")
_COMPARISON_COUNTS = ("n", "wins", "losses", "ties")
_COMPARISON_KEYS = frozenset(
    (*_COMPARISON_FLOATS, *_COMPARISON_COUNTS, "ci_level", "p_permutation", "p_mcnemar")
) | {"permutation_exact", "n_resamples", "seed"}
_JUDGE_COUNTS = ("wins", "losses", "ties", "unparseable")
_JUDGE_KEYS = frozenset(
    (*_JUDGE_COUNTS, "agreement", "judge", "n", "inconsistent", "win_rate", "items")
)
_HUMAN_KEYS = frozenset({"alpha", "level", "n_items", "n_raters", "metric", "scores"})


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


@dataclass(frozen=True)
class ItemScores:
    """Per-item scores of each system, for the distribution plot."""

    id: str
    task: str
    scores: dict[str, float | None]


@dataclass(frozen=True)
class JudgeSummary:
    """Pairwise judge outcomes, counted from A's side: ``wins`` = the judge preferred A."""

    agreement: float | None  # share of items whose two presentation orders agreed
    wins: int
    losses: int
    ties: int
    unparseable: int
    judge: str | None = None
    inconsistent: int | None = None


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


def holm_adjust(pvalues: Sequence[float]) -> list[float]:
    """Holm (1979) step-down adjusted p-values, in the order given.

    With p sorted ascending, p_(1) <= ... <= p_(m): adj_(i) = max_{j <= i} min(1, (m - j + 1)
    p_(j)). Calling adj < alpha significant keeps the family-wise error rate at most alpha under
    any dependence between the tests.
    """
    for i, p in enumerate(pvalues):
        if not 0.0 <= p <= 1.0:  # also rejects NaN
            raise ValueError(f"p-value {i} is {p}, not between 0 and 1")
    m = len(pvalues)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda k: pvalues[k])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


# --- validation ----------------------------------------------------------------------------------


class _Checker:
    """Collects the problems of one results file so that they are all reported together."""

    def __init__(self, path: object, context: str | None = None) -> None:
        self.path = path
        self.context = context
        self.problems: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def done(self) -> None:
        if not self.problems:
            return
        n = len(self.problems)
        listed = self.problems[:_MAX_LISTED_PROBLEMS]
        more = f"; and {n - len(listed)} more" if n > len(listed) else ""
        context = f", {self.context}" if self.context else ""
        raise DataFormatError(
            f"not a valid results file{context} ({n} problem{'s' if n > 1 else ''}): "
            + "; ".join(listed)
            + more
            + ".",
            path=self.path,
            fix="follow the results schema in the docstring of instructkit.report.html.",
        )


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _kind(value: Any) -> str:
    if value is _MISSING:
        return "nothing (the key is missing)"
    kinds = {bool: "a boolean", str: "a string", list: "an array", dict: "an object"}
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    return kinds.get(type(value), type(value).__name__)


def _object(ck: _Checker, value: Any, where: str) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    ck.add(where, f"expected an object, got {_kind(value)}")
    return None


def _keys(ck: _Checker, obj: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            ck.add(_at(where, key), f"unknown key; expected one of {', '.join(sorted(allowed))}")


def _text(ck: _Checker, value: Any, where: str) -> str:
    if isinstance(value, str) and value.strip():
        return value
    ck.add(where, f"expected a non-empty string, got {_kind(value)}")
    return ""


def _number(
    ck: _Checker, value: Any, where: str, lo: float = -math.inf, hi: float = math.inf
) -> float:
    """A finite number in [lo, hi]; anything else is recorded as a problem (and gives nan)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value):
        ck.add(where, f"expected a finite number, got {_kind(value)}")
        return math.nan
    if not lo <= value <= hi:
        ck.add(where, f"expected a number between {lo:g} and {hi:g}, got {value!r}")
    return float(value)


def _optional_number(
    ck: _Checker, value: Any, where: str, lo: float = -math.inf, hi: float = math.inf
) -> float | None:
    return None if value is None else _number(ck, value, where, lo, hi)


def _count(ck: _Checker, value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    ck.add(where, f"expected a whole number >= 0, got {_kind(value)}")
    return 0


def _optional_count(ck: _Checker, value: Any, where: str) -> int | None:
    return None if value is None or value is _MISSING else _count(ck, value, where)


def _scores(
    ck: _Checker, value: Any, systems: tuple[str, ...], where: str
) -> dict[str, float | None]:
    obj = _object(ck, value, where) or {}
    for name in obj:
        if name not in systems:
            ck.add(f"{where}[{name!r}]", f"not one of the systems {list(systems)}")
    return {s: _optional_number(ck, obj.get(s), f"{where}[{s!r}]") for s in systems}


def _systems(ck: _Checker, obj: Mapping[str, Any]) -> tuple[str, ...]:
    pair = ("model_a" in obj) or ("model_b" in obj)
    if pair:
        a = _text(ck, obj.get("model_a", _MISSING), "model_a")
        b = _text(ck, obj.get("model_b", _MISSING), "model_b")
    if "systems" not in obj:
        if not pair:
            ck.add("systems", 'missing; give "systems": [names] or "model_a" and "model_b"')
            return ()
        if a and a == b:
            ck.add("model_b", f"names the same system as model_a ({a!r})")
        return (a, b)
    value = obj["systems"]
    if not (isinstance(value, list) and value and all(isinstance(s, str) for s in value)):
        ck.add("systems", f"expected a non-empty array of names, got {_kind(value)}")
        return ()
    if len(set(value)) != len(value) or not all(s.strip() for s in value):
        ck.add("systems", f"names must be non-empty and distinct, got {value}")
    if pair and [a, b] != value[:2]:
        ck.add("model_a", f"model_a/model_b ({a!r}, {b!r}) disagree with systems {value}")
    return tuple(value)


def _comparison(
    ck: _Checker, value: Any, systems: tuple[str, ...], scores: Mapping[str, Any], where: str
) -> PairedComparison | None:
    if value is None or value is _MISSING:
        return None
    obj = _object(ck, value, where)
    if obj is None:
        return None
    _keys(ck, obj, _COMPARISON_KEYS, where)
    if len(systems) < 2:
        ck.add(where, "a comparison needs two systems (A = systems[0], B = systems[1])")
    f = {k: _number(ck, obj.get(k, _MISSING), _at(where, k)) for k in _COMPARISON_FLOATS}
    c = {k: _count(ck, obj.get(k, _MISSING), _at(where, k)) for k in _COMPARISON_COUNTS}
    p_perm = obj.get("p_permutation", _MISSING)
    p_mcnemar = obj.get("p_mcnemar", _MISSING)
    exact = obj.get("permutation_exact", False)
    if not isinstance(exact, bool):
        ck.add(_at(where, "permutation_exact"), f"expected true or false, got {_kind(exact)}")
    seed = obj.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        ck.add(_at(where, "seed"), f"expected a whole number, got {_kind(seed)}")
    comparison = PairedComparison(
        n=c["n"],
        mean_a=f["mean_a"],
        mean_b=f["mean_b"],
        diff=f["diff"],
        ci_low=f["ci_low"],
        ci_high=f["ci_high"],
        ci_level=_number(ck, obj.get("ci_level", _MISSING), _at(where, "ci_level"), 0, 1),
        p_permutation=_number(ck, p_perm, _at(where, "p_permutation"), 0, 1),
        p_mcnemar=_optional_number(ck, p_mcnemar, _at(where, "p_mcnemar"), 0, 1),
        wins=c["wins"],
        losses=c["losses"],
        ties=c["ties"],
        permutation_exact=bool(exact),
        n_resamples=_count(ck, obj.get("n_resamples", 0), _at(where, "n_resamples")),
        seed=seed if isinstance(seed, int) else 0,
    )
    _check_comparison(ck, comparison, systems, scores, where)
    return comparison


def _close(x: float, y: float) -> bool:
    return abs(x - y) <= 1e-6 * max(1.0, abs(x), abs(y))


def _check_comparison(
    ck: _Checker,
    c: PairedComparison,
    systems: tuple[str, ...],
    scores: Mapping[str, Any],
    where: str,
) -> None:
    """Checks that catch a comparison of the wrong rows or of B vs A the wrong way round."""
    if c.ci_level in (0.0, 1.0):
        ck.add(
            _at(where, "ci_level"), f"expected a level strictly between 0 and 1, got {c.ci_level}"
        )
    if c.ci_low > c.ci_high:
        ck.add(where, f"ci_low ({c.ci_low}) is above ci_high ({c.ci_high})")
    if c.wins + c.losses + c.ties != c.n:
        ck.add(where, f"wins + losses + ties = {c.wins + c.losses + c.ties}, not n = {c.n}")
    if not (math.isnan(c.diff) or _close(c.diff, c.mean_b - c.mean_a)):
        ck.add(_at(where, "diff"), f"{c.diff} is not mean_b - mean_a = {c.mean_b - c.mean_a}")
    for key, mean, system in zip(("mean_a", "mean_b"), (c.mean_a, c.mean_b), systems, strict=False):
        score = scores.get(system)
        if score is not None and not math.isnan(score) and not _close(mean, score):
            ck.add(
                _at(where, key),
                f"{mean} differs from the score of {system!r} ({score}); a comparison must be "
                f"A = {systems[0]!r} (systems[0]) vs B = {systems[1]!r} (systems[1])",
            )


def _task_row(ck: _Checker, name: str, value: Any, systems: tuple[str, ...], where: str) -> TaskRow:
    obj = _object(ck, value, where)
    if obj is None:
        return TaskRow(name, "", 0, {})
    _keys(ck, obj, _TASK_KEYS, where)
    scores = _scores(ck, obj.get("scores", _MISSING), systems, _at(where, "scores"))
    seen = obj.get("seen")
    if seen is not None and not isinstance(seen, bool):
        ck.add(_at(where, "seen"), f"expected true, false or null, got {_kind(seen)}")
    return TaskRow(
        name=name,
        metric=_text(ck, obj.get("metric", _MISSING), _at(where, "metric")),
        n=_count(ck, obj.get("n", _MISSING), _at(where, "n")),
        scores=scores,
        comparison=_comparison(
            ck, obj.get("comparison"), systems, scores, _at(where, "comparison")
        ),
        seen=seen if isinstance(seen, bool) else None,
    )


def _rows(
    ck: _Checker, value: Any, systems: tuple[str, ...], where: str, required: bool
) -> tuple[TaskRow, ...]:
    if value is _MISSING and not required:
        return ()
    obj = _object(ck, value, where)
    if obj is None:
        return ()
    if required and not obj:
        ck.add(where, "expected at least one task")
    return tuple(
        _task_row(ck, name, entry, systems, f"{where}[{name!r}]") for name, entry in obj.items()
    )


def _per_item(
    ck: _Checker, value: Any, systems: tuple[str, ...], tasks: set[str]
) -> tuple[ItemScores, ...]:
    if value is _MISSING or value is None:
        return ()
    if not isinstance(value, list):
        ck.add("per_item", f"expected an array of items, got {_kind(value)}")
        return ()
    items = []
    for i, entry in enumerate(value):
        where = f"per_item[{i}]"
        obj = _object(ck, entry, where)
        if obj is None:
            continue
        _keys(ck, obj, frozenset({"id", "task", "scores"}), where)
        item_id = obj.get("id", _MISSING)
        if not isinstance(item_id, (str, int)) or isinstance(item_id, bool):
            ck.add(_at(where, "id"), f"expected a string or a whole number, got {_kind(item_id)}")
        task = _text(ck, obj.get("task", _MISSING), _at(where, "task"))
        if task and task not in tasks:
            ck.add(_at(where, "task"), f"{task!r} is not one of the tasks of this file")
        scores = _scores(ck, obj.get("scores", _MISSING), systems, _at(where, "scores"))
        items.append(ItemScores(str(item_id), task, scores))
    return tuple(items)


def _judge(ck: _Checker, value: Any, systems: tuple[str, ...]) -> JudgeSummary | None:
    if value is _MISSING or value is None:
        return None
    obj = _object(ck, value, "judge")
    if obj is None:
        return None
    _keys(ck, obj, _JUDGE_KEYS, "judge")
    if len(systems) < 2:
        ck.add("judge", "pairwise judge results need two systems (A = systems[0], B = systems[1])")
    name = obj.get("judge")
    if name is not None and not isinstance(name, str):
        ck.add("judge.judge", f"expected the judge's name, got {_kind(name)}")
    agreement = obj.get("agreement", _MISSING)
    counts = {k: _count(ck, obj.get(k, _MISSING), f"judge.{k}") for k in _JUDGE_COUNTS}
    return JudgeSummary(
        agreement=_optional_number(ck, agreement, "judge.agreement", 0, 1),
        wins=counts["wins"],
        losses=counts["losses"],
        ties=counts["ties"],
        unparseable=counts["unparseable"],
        judge=name if isinstance(name, str) else None,
        inconsistent=_optional_count(ck, obj.get("inconsistent"), "judge.inconsistent"),
    )


def _accuracy(ck: _Checker, report: Mapping[str, Any], level: str, mode: str, where: str) -> Any:
    scores = _object(ck, report.get(level, _MISSING), _at(where, level)) or {}
    accuracy = _object(ck, scores.get(mode, _MISSING), f"{where}.{level}.{mode}") or {}
    where = f"{where}.{level}.{mode}.accuracy"
    return _optional_number(ck, accuracy.get("accuracy", _MISSING), where, 0, 1)


def _ifeval(ck: _Checker, value: Any, systems: tuple[str, ...]) -> dict[str, IFEvalSummary]:
    if value is _MISSING or value is None:
        return {}
    out = {}
    for system, entry in (_object(ck, value, "ifeval") or {}).items():
        where = f"ifeval[{system!r}]"
        if system not in systems:
            ck.add(where, f"not one of the systems {list(systems)}")
        report = _object(ck, entry, where)
        if report is None:
            continue
        out[system] = IFEvalSummary(
            prompt_strict=_accuracy(ck, report, "prompt_level", "strict", where),
            prompt_loose=_accuracy(ck, report, "prompt_level", "loose", where),
            instruction_strict=_accuracy(ck, report, "instruction_level", "strict", where),
            instruction_loose=_accuracy(ck, report, "instruction_level", "loose", where),
            n_prompts=_optional_count(ck, report.get("n_prompts"), _at(where, "n_prompts")),
        )
    return out


def _human(ck: _Checker, value: Any, systems: tuple[str, ...]) -> HumanSummary | None:
    if value is _MISSING or value is None:
        return None
    obj = _object(ck, value, "human")
    if obj is None:
        return None
    _keys(ck, obj, _HUMAN_KEYS, "human")
    if "alpha" not in obj:
        ck.add("human.alpha", "missing; give Krippendorff's alpha, or null if undefined")
    texts = {}
    for key in ("level", "metric"):
        text = obj.get(key)
        texts[key] = None if text is None else _text(ck, text, f"human.{key}")
    scores = obj.get("scores")
    return HumanSummary(
        alpha=_optional_number(ck, obj.get("alpha"), "human.alpha", -math.inf, 1.0),
        level=texts["level"],
        n_items=_optional_count(ck, obj.get("n_items"), "human.n_items"),
        n_raters=_optional_count(ck, obj.get("n_raters"), "human.n_raters"),
        metric=texts["metric"],
        scores={} if scores is None else _scores(ck, scores, systems, "human.scores"),
    )


def parse_results(
    obj: Any, *, path: str | Path | None = None, context: str | None = None
) -> ReportData:
    """Validate one results object (schema in the module docstring) and build its ReportData.

    Raises DataFormatError listing every problem found, with ``path`` and ``context`` in it.
    """
    ck = _Checker(path, context)
    if not isinstance(obj, dict):
        ck.add("top level", f"expected a JSON object, got {_kind(obj)}")
        ck.done()
    _keys(ck, obj, _TOP_KEYS, "")
    if obj.get("schema_version", 1) != 1:
        ck.add("schema_version", f"unsupported version {obj['schema_version']!r}; expected 1")
    systems = _systems(ck, obj)
    tasks = _rows(ck, obj.get("tasks", _MISSING), systems, "tasks", required=True)
    overall = obj.get("overall", _MISSING)
    data = ReportData(
        title=_text(ck, obj.get("title", _MISSING), "title"),
        created=_text(ck, obj.get("created", _MISSING), "created"),
        systems=systems,
        tasks=tasks,
        groups=_rows(ck, obj.get("groups", _MISSING), systems, "groups", required=False),
        overall=None
        if overall is _MISSING or overall is None
        else _task_row(ck, "overall", overall, systems, "overall"),
        per_item=_per_item(ck, obj.get("per_item"), systems, {t.name for t in tasks}),
        judge=_judge(ck, obj.get("judge"), systems),
        ifeval=_ifeval(ck, obj.get("ifeval"), systems),
        human=_human(ck, obj.get("human"), systems),
    )
    ck.done()
    source = Source(str(path), data.title, data.created) if path is not None else None
    return dataclasses.replace(data, sources=(source,) if source else ())


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
        results["overall"] = row("all", before["overall"], _get(after, "overall"))
    return results


def _seen(task: str, seen_tasks: Any) -> bool | None:
    return task in seen_tasks if isinstance(seen_tasks, list) else None


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataFormatError(
            f"the file is not UTF-8 text (bad byte at offset {e.start}).",
            path=path,
            fix="re-save the file as UTF-8.",
        ) from e
    except OSError as e:
        raise DataFormatError(
            f"cannot read the file: {e.strerror or e}.", path=path, fix="check the path."
        ) from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataFormatError(
            f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}.",
            path=path,
            fix="repair the file; the evaluation runner writes valid JSON.",
        ) from e


def _load_one(path: Path) -> ReportData:
    obj = _read_json(path)
    if not _is_demo_metrics(obj):
        return parse_results(obj, path=path)
    modified = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
    created = modified.strftime("%Y-%m-%d %H:%M UTC (file modified)")
    results = demo_metrics_to_results(obj, created=created)
    return parse_results(results, path=path, context="converted from the demo's metrics.json")


def load_results(paths: str | Path | Sequence[str | Path]) -> ReportData:
    """Load, validate and merge results files (or demo metrics.json files) into one ReportData."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise DataFormatError("no results files given.", fix="pass at least one results file.")
    parts = [_load_one(Path(p)) for p in paths]
    return parts[0] if len(parts) == 1 else _merge(parts)


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
    )
