"""Score instructions and DSPy programs on a dataset; compare instructions with paired statistics.

An instruction is scored as the instructions of a one-predictor program built from a dataset
(:class:`~instructkit.optimize.task.InstructionTask`: input field(s), a target field, optionally
the label set); a whole
DSPy program is scored as it is. Every item keeps its own score, so instructions scored on the
same items can be compared pairwise::

    task = InstructionTask(inputs=("text",), target="sentiment", labels=("positive", "negative"))
    lm = bridge_lm(LocalLM.load("smollm2-135m-instruct"), counter=CallCounter(budget=500))
    result = compare_instructions(task, ["Classify the sentiment.", "Answer positive or negative."],
                                  rows, lm=lm)             # InstructionComparison
    result.scores[1].score, result.comparisons[0].comparison.ci_low, result.comparisons[0].p_holm

Metrics (:mod:`instructkit.optimize.metrics`): a name of an instructkit per-item metric
(:mod:`instructkit.evaluate.metrics`:
``exact_match`` (SQuAD EM), ``accuracy``/``label_match`` (label match up to case and
whitespace), ``f1``, ``rouge_l``, ``bleu``/``chrf`` (sentence-level); ``answer``
(:func:`~instructkit.evaluate.checks.score_answer`)) applied to the target field; for a task with
labels, ``label`` (the default there: the reply names the right label,
:func:`~instructkit.optimize.metrics.named_label`, the lenient choice for small models that
answer "The text is positive."); or any callable
``metric(example, prediction) -> float`` (DSPy's metric signature; an IFEval check or a judge
goes in this way). A reply the adapter cannot parse scores 0 and keeps its error.

Comparisons (:func:`compare_scores`): each instruction against a baseline with
:func:`~instructkit.evaluate.stats.compare_paired` (paired bootstrap CI of the mean difference,
paired permutation p, McNemar p for 0/1 scores), the permutation p-values of the family adjusted
with Holm's step-down method (Holm 1979, :func:`~instructkit.evaluate.stats.holm_adjust`).

Concurrency: items are scored ``threads`` at a time (default :func:`default_threads`: the
bridge's ``max_batch``, 16, because the bridge's engine gathers concurrent calls into one batched
``lm.complete``; 1 for other LMs). Each worker thread runs with the caller's DSPy settings, as
``dspy.ParallelExecutor`` does; results keep item order; each item's calls come from
:meth:`~instructkit.optimize.bridge.CallCounter.tally`, so they are its own even when items run
at once. :func:`score_each` returns every item's result or error instead of raising the first.

Bad input fails before any LM call: no items, a row without a field the task reads (the error
names the row and the field), a target outside the label set, a metric that raises or returns no
number on the first item (scored against its own reference), a program with no predictors, a call
budget smaller than one evaluation of the items.
"""

from __future__ import annotations

import contextvars
import copy
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import dspy
from dspy.dsp.utils.settings import thread_local_overrides
from dspy.utils.exceptions import AdapterParseError

from instructkit.errors import ConfigError, DataFormatError
from instructkit.evaluate.stats import PairedComparison, compare_paired, holm_adjust
from instructkit.optimize.adapter import PlainAdapter
from instructkit.optimize.bridge import TASK, CallCounter, InstructkitEngine, instructkit_cause
from instructkit.optimize.metrics import MetricFn, metric_value, resolve_metric
from instructkit.optimize.task import InstructionTask

__all__ = [
    "ItemResult",
    "NotScored",
    "ProgramScore",
    "CandidateComparison",
    "InstructionComparison",
    "default_threads",
    "score_each",
    "score_program",
    "score_instruction",
    "compare_scores",
    "compare_instructions",
]


@dataclass(frozen=True)
class ItemResult:
    """One item: its score, the program's outputs, the error when the reply did not parse, and
    the task calls it spent (None without a counting bridge LM)."""

    index: int
    score: float
    outputs: dict[str, Any] | None
    error: str | None = None
    calls: int | None = None


@dataclass(frozen=True)
class ProgramScore:
    """A program (or an instruction) scored on ``n`` items with ``metric``; ``calls`` is the
    number of task-model calls it spent (None without a counting bridge LM)."""

    name: str
    metric: str
    items: tuple[ItemResult, ...]
    calls: int | None = None
    instruction: str | None = None

    @property
    def n(self) -> int:
        return len(self.items)

    @property
    def per_item(self) -> list[float]:
        return [item.score for item in self.items]

    @property
    def score(self) -> float:
        """Mean item score (0-1 for the label/match metrics)."""
        return sum(self.per_item) / len(self.items)

    @property
    def failures(self) -> int:
        """Items whose reply could not be parsed (scored 0)."""
        return sum(item.error is not None for item in self.items)


@dataclass(frozen=True)
class CandidateComparison:
    """Candidate ``index`` against the baseline; ``p_holm`` is its Holm-adjusted permutation p."""

    index: int
    name: str
    comparison: PairedComparison
    p_holm: float


@dataclass(frozen=True)
class InstructionComparison:
    """Scores of several instructions on the same items, each compared with ``baseline``."""

    scores: tuple[ProgramScore, ...]
    baseline: int
    comparisons: tuple[CandidateComparison, ...]

    @property
    def best(self) -> ProgramScore:
        """The highest-scoring candidate (the first one on a tie)."""
        return max(self.scores, key=lambda s: s.score)


def _check_program_input(program: Any, examples: Sequence[Any], target: str | None) -> None:
    """Everything that can be checked before any call: items, predictors, fields."""
    if not examples:
        raise ConfigError("there are no items to score.", fix="give at least one example.")
    if not program.predictors():
        raise ConfigError(
            f"the program {type(program).__name__} has no predictors to score.",
            fix="give a DSPy module that contains dspy.Predict (or a module built on it).",
        )
    keys = examples[0].inputs().keys() if examples[0]._input_keys else None
    if keys is None:
        raise ConfigError(
            "the examples do not say which fields are inputs.",
            fix="build them with dspy.Example(...).with_inputs('field', ...).",
        )
    for number, example in enumerate(examples, 1):
        for name in [*keys, *([target] if target else [])]:
            if example.get(name) is None:
                raise DataFormatError(
                    "missing a field that the program reads or the metric scores",
                    row=number,
                    field=name,
                    fix=f"give every example the fields {[*keys, *([target] if target else [])]}.",
                )


def _counter_of(lm: Any) -> tuple[CallCounter, str] | None:
    engine = getattr(lm if lm is not None else dspy.settings.lm, "engine", None)
    counter = getattr(engine, "counter", None)
    return (counter, getattr(engine, "role", TASK)) if isinstance(counter, CallCounter) else None


def default_threads(lm: Any = None) -> int:
    """Items scored at once by default: the bridge's ``max_batch`` (16 unless set), so that
    concurrent items fill the engine's batches; 1 for any other LM (``lm`` None: DSPy's)."""
    engine = getattr(lm if lm is not None else dspy.settings.lm, "engine", None)
    return engine.max_batch if isinstance(engine, InstructkitEngine) else 1


def _resolve_threads(threads: int | None, lm: Any) -> int:
    if threads is None:
        return default_threads(lm)
    if isinstance(threads, bool) or threads < 1:
        raise ConfigError(f"threads must be a count >= 1, got {threads!r}.", fix="use threads=1.")
    return threads


def _check(
    program: Any, examples: Sequence[Any], metric: MetricFn, name: str, target: str | None, lm: Any
) -> None:
    _check_program_input(program, examples, target)
    if lm is None and dspy.settings.lm is None:
        raise ConfigError(
            "no LM to run the program with.",
            fix="pass lm=bridge_lm(your_lm), or set one with dspy.configure(lm=...).",
        )
    reference = dspy.Prediction(**examples[0].labels())
    metric_value(metric, name, examples[0], reference, 0)


def _preflight(
    program: Any,
    examples: Sequence[Any],
    metric: MetricFn,
    name: str,
    target: str | None,
    lm: Any,
    runs: int,
) -> None:
    _check(program, examples, metric, name, target, lm)
    counted = _counter_of(lm)
    if counted is not None:
        counter, role = counted
        calls = runs * len(examples) * len(program.predictors())
        counter.require(calls, role, f"{runs} evaluation(s) of {len(examples)} items")


class NotScored(Exception):
    """An item left unscored because an item before it failed (see :func:`score_each`)."""


def _run_item(
    program: Any,
    example: Any,
    metric: MetricFn,
    name: str,
    index: int,
    counted: tuple[CallCounter, str] | None,
) -> ItemResult:
    if counted is None:
        return _predict_item(program, example, metric, name, index)
    counter, role = counted
    with counter.tally() as tally:  # this item's calls, whatever other threads spend
        result = _predict_item(program, example, metric, name, index)
    return replace(result, calls=tally.get(role, 0))


def _predict_item(
    program: Any, example: Any, metric: MetricFn, name: str, index: int
) -> ItemResult:
    try:
        prediction = program(**example.inputs())
    except AdapterParseError as exc:
        return ItemResult(index, 0.0, None, f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        cause = instructkit_cause(exc)
        if cause is not None and cause is not exc:
            raise cause from exc  # e.g. BudgetExceeded, which DSPy wraps as LMUnexpectedError
        raise
    outputs = dict(prediction.items())
    return ItemResult(index, metric_value(metric, name, example, prediction, index), outputs)


def _in_this_context(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` for a worker thread, run with this thread's DSPy settings and call tallies.

    DSPy's settings (``dspy.context``) are per thread; ``dspy.ParallelExecutor`` hands a worker
    a copy of the parent's ``thread_local_overrides`` (deep-copying ``usage_tracker`` so that
    each thread tracks its own usage). Running in a copy of the whole ``contextvars`` context
    does that and carries :meth:`CallCounter.tally` and DSPy's callback ancestry too.
    """
    context = contextvars.copy_context()

    def own_overrides(*args: Any) -> Any:
        overrides = dict(thread_local_overrides.get())
        if overrides.get("usage_tracker"):
            overrides["usage_tracker"] = copy.deepcopy(overrides["usage_tracker"])
        thread_local_overrides.set(overrides)  # in the copied context only
        return fn(*args)

    return lambda *args: context.run(own_overrides, *args)


def _outcomes(
    program: Any,
    examples: Sequence[Any],
    metric: MetricFn,
    metric_name: str,
    lm: Any,
    adapter: Any,
    threads: int,
) -> list[ItemResult | Exception]:
    """Each item's result or the error that stopped it, in item order, on ``threads`` threads.

    After an item fails, items not yet started are not run (:class:`NotScored`).
    """
    counted = _counter_of(lm)
    failed = threading.Event()

    def one(index: int, example: Any) -> ItemResult | Exception:
        if failed.is_set():
            return NotScored(f"item {index} was not scored: an item before it failed.")
        try:
            return _run_item(program, example, metric, metric_name, index, counted)
        except Exception as exc:
            failed.set()
            return exc

    with dspy.context(lm=lm if lm is not None else dspy.settings.lm, adapter=adapter):
        if threads == 1 or len(examples) == 1:
            return [one(i, ex) for i, ex in enumerate(examples)]
        workers = min(threads, len(examples))
        with ThreadPoolExecutor(workers, thread_name_prefix="instructkit-score") as pool:
            futures = [pool.submit(_in_this_context(one), i, ex) for i, ex in enumerate(examples)]
            try:
                return [future.result() for future in futures]
            except BaseException:  # e.g. Ctrl-C: start nothing more, let running items end
                failed.set()
                raise


def _score(
    program: Any,
    examples: Sequence[Any],
    metric: MetricFn,
    metric_name: str,
    lm: Any,
    adapter: Any,
    name: str,
    threads: int,
) -> ProgramScore:
    outcomes = _outcomes(program, examples, metric, metric_name, lm, adapter, threads)
    items = []
    for outcome in outcomes:  # the first error in item order, as one thread would meet it
        if isinstance(outcome, Exception):
            raise outcome
        items.append(outcome)
    calls = sum(item.calls or 0 for item in items) if _counter_of(lm) else None
    return ProgramScore(name, metric_name, tuple(items), calls)


def score_each(
    program: Any,
    examples: Sequence[Any],
    metric: str | MetricFn,
    *,
    lm: Any = None,
    adapter: Any = None,
    target: str | None = None,
    threads: int | None = None,
) -> list[ItemResult | Exception]:
    """Score ``program`` on each example and return, in item order, its :class:`ItemResult` or
    the exception that stopped it (e.g. :class:`~instructkit.optimize.bridge.BudgetExceeded`);
    items not started after a failure get :class:`NotScored`. Nothing is raised for an item, so
    a caller keeps every item that was scored (and paid for). No up-front budget check: each
    call is checked as it is made. The other checks and defaults are :func:`score_program`'s.
    """
    metric_name, fn = resolve_metric(metric, target)
    _check(program, examples, fn, metric_name, target, lm)
    chosen = _resolve_threads(threads, lm)
    return _outcomes(program, examples, fn, metric_name, lm, adapter or PlainAdapter(), chosen)


def score_program(
    program: Any,
    examples: Sequence[Any],
    metric: str | MetricFn,
    *,
    lm: Any = None,
    adapter: Any = None,
    target: str | None = None,
    name: str = "program",
    threads: int | None = None,
) -> ProgramScore:
    """Score a DSPy ``program`` on ``examples`` (``dspy.Example`` with inputs marked).

    ``lm`` defaults to ``dspy.settings.lm``, ``adapter`` to :class:`PlainAdapter`; a metric
    given by name scores the output field ``target``. ``threads`` items run at once (default
    :func:`default_threads`: the bridge's ``max_batch``, whose engine batches their calls, else
    1), each with the caller's DSPy settings; results keep item order, and each item's
    ``calls`` are its own. The first error in item order is raised once running items end.
    """
    metric_name, fn = resolve_metric(metric, target)
    _preflight(program, examples, fn, metric_name, target, lm, runs=1)
    chosen = _resolve_threads(threads, lm)
    return _score(program, examples, fn, metric_name, lm, adapter or PlainAdapter(), name, chosen)


def score_instruction(
    task: InstructionTask,
    instruction: str,
    data: Sequence[Any],
    *,
    lm: Any = None,
    metric: str | MetricFn | None = None,
    adapter: Any = None,
    threads: int | None = None,
) -> ProgramScore:
    """Score ``instruction`` as the instructions of ``task``'s predictor on ``data`` (rows),
    ``threads`` items at once (see :func:`score_program`)."""
    return compare_instructions(
        task, [instruction], data, lm=lm, metric=metric, adapter=adapter, threads=threads
    ).scores[0]


def compare_scores(
    scores: Sequence[ProgramScore],
    *,
    baseline: int = 0,
    n_resamples: int = 10000,
    level: float = 0.95,
    seed: int = 0,
) -> InstructionComparison:
    """Compare every score with ``scores[baseline]`` on the same items (paired; Holm-adjusted)."""
    if not 0 <= baseline < len(scores):
        raise ConfigError(f"baseline {baseline} is not one of the {len(scores)} candidates.")
    sizes = {s.n for s in scores}
    if len(sizes) != 1:
        raise ConfigError(
            f"the candidates were scored on different numbers of items {sorted(sizes)}.",
            fix="score every candidate on the same items.",
        )
    base = scores[baseline].per_item
    others = [i for i in range(len(scores)) if i != baseline]
    paired = [
        compare_paired(base, scores[i].per_item, n_resamples=n_resamples, level=level, seed=seed)
        for i in others
    ]
    adjusted = holm_adjust([c.p_permutation for c in paired])
    comparisons = tuple(
        CandidateComparison(i, scores[i].name, c, p)
        for i, c, p in zip(others, paired, adjusted, strict=True)
    )
    return InstructionComparison(tuple(scores), baseline, comparisons)


def compare_instructions(
    task: InstructionTask,
    instructions: Sequence[str],
    data: Sequence[Any],
    *,
    lm: Any = None,
    metric: str | MetricFn | None = None,
    adapter: Any = None,
    baseline: int = 0,
    n_resamples: int = 10000,
    level: float = 0.95,
    seed: int = 0,
    threads: int | None = None,
) -> InstructionComparison:
    """Score each instruction on the same ``data`` and compare each with ``baseline``.

    Instructions are scored one after another, each on ``threads`` items at once (see
    :func:`score_program`). All checks (data, metric, the call budget for every instruction)
    run before the first call.
    """
    if not instructions:
        raise ConfigError("there are no instructions to score.", fix="give at least one.")
    if not 0 <= baseline < len(instructions):
        raise ConfigError(
            f"baseline {baseline} is not one of the {len(instructions)} instructions."
        )
    examples = task.examples(data)
    chosen_metric = task.label_metric() if metric == "label" else metric or task.default_metric
    metric_name, fn = resolve_metric(chosen_metric, task.target)
    programs = [task.program(text) for text in instructions]
    _preflight(programs[0], examples, fn, metric_name, task.target, lm, runs=len(programs))
    chosen, workers = adapter or PlainAdapter(), _resolve_threads(threads, lm)
    scores = []
    for number, (text, program) in enumerate(zip(instructions, programs, strict=True)):
        name = f"instruction {number}"
        scored = _score(program, examples, fn, metric_name, lm, chosen, name, workers)
        scores.append(
            ProgramScore(scored.name, scored.metric, scored.items, scored.calls, instruction=text)
        )
    if len(scores) == 1:
        return InstructionComparison(tuple(scores), 0, ())
    return compare_scores(
        scores, baseline=baseline, n_resamples=n_resamples, level=level, seed=seed
    )
