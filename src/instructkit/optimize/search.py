"""How an instruction search spends its calls: the :class:`Evaluator` that scores instructions
item by item through a resumable journal, the :class:`Search` a method receives, and the two
methods that need no model besides the task model (``initial``, ``templates``).

A method is a function ``method(search: Search) -> str`` that returns the instruction it found
best. It scores through ``search.evaluator.scores(instruction, items)``, which answers from the
history when it can and otherwise calls the task model once per item (a hard budget sits in the
call counter behind it). The workflow (:mod:`instructkit.optimize.prompt`) registers methods by
name in its ``METHODS``.

``templates`` races candidates with successive halving (Jamieson & Talwalkar 2016, "Non-stochastic
best arm identification and hyperparameter optimization"; the inner loop of Hyperband, Li et al.
2017): :func:`halving_schedule` gives the rungs, :func:`halving_cost` their calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from instructkit.jobs import Job
from instructkit.optimize.metrics import MetricFn
from instructkit.optimize.scoring import ItemResult, NotScored, default_threads, score_each
from instructkit.optimize.task import InstructionTask
from instructkit.optimize.templates import TaskSpec, generate_candidates

__all__ = [
    "TEST",
    "Evaluator",
    "MethodFn",
    "ProgramTask",
    "Search",
    "fit_halving",
    "halving_cost",
    "halving_schedule",
    "mean",
    "race",
    "search_initial",
    "search_templates",
    "template_pool",
]

TEST = "test"  # the phase (and counter role) of the final test evaluation, outside the budget


class ProgramTask(Protocol):
    """What the :class:`Evaluator` needs of a task: the output field scored and a DSPy program
    per instruction (:class:`~instructkit.optimize.task.InstructionTask`, or an optimizer's
    wrapper of a user's one-predictor program)."""

    @property
    def target(self) -> str: ...

    def program(self, instruction: str) -> Any: ...


class Evaluator:
    """Scores instructions item by item through the job's journal (``history.jsonl``).

    Every scored item is one journal row; an item already in the journal is read back, not
    called again, so a killed run resumes without re-spending. Missing items are scored
    ``threads`` at a time (default: the ``val`` LM's :func:`~instructkit.optimize.scoring.
    default_threads`, 16 on a batching bridge), and each chunk's rows are journaled in item
    order as soon as it ends: a kill loses at most the chunk in flight. An item that fails
    (e.g. the budget ran out) is not journaled; the rows of its chunk that were scored are,
    then its error is raised. ``phase`` ``val`` spends the search budget (counter role
    ``task``); ``test`` uses role ``test``.
    """

    def __init__(
        self,
        job: Job,
        task: ProgramTask,
        metric: tuple[str, MetricFn],
        lms: Mapping[str, Any],
        examples: Mapping[str, Sequence[Any]],
        on_call: Callable[[int], None] | None = None,
        threads: int | None = None,
    ) -> None:
        self.job, self.task, self.metric, self.lms, self.examples = job, task, metric, lms, examples
        self.on_call = on_call  # told the calls of each newly scored item (a progress bar)
        self.threads = threads
        self._done = {(r["phase"], r["instruction"], r["item"]): r for r in job.records}

    def spent(self, phase: str = "val") -> int:
        """Calls spent on ``phase`` so far, this run and the runs before it."""
        return sum(int(r["calls"]) for r in self.job.records if r["phase"] == phase)

    def rows(
        self, instruction: str, items: Sequence[int], phase: str = "val"
    ) -> list[dict[str, Any]]:
        """The journal rows of ``instruction`` on ``items`` (indices), scoring the missing ones."""
        missing = list(dict.fromkeys(i for i in items if (phase, instruction, i) not in self._done))
        size = self.threads or default_threads(self.lms[phase])
        for start in range(0, len(missing), size):
            self._score_chunk(instruction, missing[start : start + size], phase)
        return [self._done[(phase, instruction, i)] for i in items]

    def _score_chunk(self, instruction: str, chunk: list[int], phase: str) -> None:
        """Score ``chunk`` at once; journal its scored rows in item order; raise its first error."""
        _, fn = self.metric
        outcomes = score_each(
            self.task.program(instruction),
            [self.examples[phase][i] for i in chunk],
            fn,
            lm=self.lms[phase],
            target=self.task.target,
            threads=len(chunk),
        )
        rows = [
            self._row(instruction, i, outcome, phase)
            for i, outcome in zip(chunk, outcomes, strict=True)
            if not isinstance(outcome, Exception)
        ]
        if rows:
            self.job.append(rows)
        for row in rows:
            self._done[(phase, instruction, row["item"])] = row
            if self.on_call is not None:
                self.on_call(int(row["calls"]))
        errors = [o for o in outcomes if isinstance(o, Exception) and not isinstance(o, NotScored)]
        if errors:
            raise errors[0]

    def _row(self, instruction: str, i: int, item: ItemResult, phase: str) -> dict[str, Any]:
        row = {
            "phase": phase,
            "instruction": instruction,
            "item": i,
            "score": item.score,
            "answer": None if item.outputs is None else item.outputs.get(self.task.target),
            "error": item.error,
            "calls": item.calls or 0,
        }
        if phase == TEST:  # the report shows test examples with their inputs
            row["example"] = dict(self.examples[phase][i].items())
        return row

    def scores(self, instruction: str, items: Sequence[int], phase: str = "val") -> list[float]:
        return [float(r["score"]) for r in self.rows(instruction, items, phase)]

    def mean(self, instruction: str, phase: str = "val") -> float:
        """Mean score on the whole ``phase`` set."""
        values = self.scores(instruction, range(len(self.examples[phase])), phase)
        return sum(values) / len(values)


@dataclass
class Search:
    """What a method gets: the task, the initial instruction (already scored on all of val), a
    task spec for proposing candidates, the evaluator, and the val calls it may spend after the
    initial's evaluation. A method must be deterministic given these (and ``seed``): a resumed
    run replays it, and the evaluator answers what the history holds without a call.

    ``extra`` holds what the workflow passes besides (``optimize prompt``: ``lm`` the task LM
    object, ``train`` the train examples, ``gradient`` its settings, ``out`` the output folder,
    ``max_tokens``); a method may leave ``extra["result"]``, a dict added to ``result.json``."""

    task: InstructionTask
    initial: str
    spec: TaskSpec
    evaluator: Evaluator
    n_val: int
    budget_left: int
    seed: int
    candidates: int
    proposer: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


MethodFn = Callable[[Search], str]


# ------------------------------------------------------------------------------------- methods


def search_initial(search: Search) -> str:
    """The baseline: the initial instruction, no search."""
    return search.initial


def halving_schedule(n: int, n_items: int, base: int = 1) -> list[tuple[int, int]]:
    """Successive halving rungs ``(survivors, items)`` for ``n`` arms on ``n_items`` items.

    Successive halving (Jamieson & Talwalkar 2016, the inner loop of Hyperband, Li et al. 2017):
    all arms are scored on a few items, the better half goes on to twice as many items, until
    one arm is scored on all items. Items are shared and reused between rungs (a survivor is
    only scored on its new items). Rung ``k`` scores at least ``base * 2**k`` items (capped at
    ``n_items``): a larger ``base`` spends more of a budget on the early, noisy rungs.
    """
    rounds = math.ceil(math.log2(n)) if n > 1 else 0
    return [
        (
            math.ceil(n / 2**k),
            min(n_items, max(math.ceil(n_items * 2**k / 2**rounds), base * 2**k)),
        )
        for k in range(rounds + 1)
    ]


def halving_cost(n: int, n_items: int, base: int = 1) -> int:
    """Calls that :func:`halving_schedule` spends (one per arm and new item)."""
    cost, seen = 0, 0
    for survivors, items in halving_schedule(n, n_items, base):
        cost += survivors * (items - seen)
        seen = items
    return cost


def fit_halving(pool: int, n_items: int, budget: int) -> tuple[int, int]:
    """``(n, base)``: the most arms (up to ``pool``) that race within ``budget``, then the
    largest ``base`` that still fits, so that spare calls go to more items per rung."""
    n = pool
    while n > 0 and halving_cost(n, n_items) > budget:
        n -= 1
    base = 1
    while n > 1 and base < n_items and halving_cost(n, n_items, base + 1) <= budget:
        base += 1
    return n, base


def search_templates(search: Search) -> str:
    """Race component-template candidates (:func:`~instructkit.optimize.templates.
    generate_candidates`) with successive halving on val, as many as the budget allows."""
    return race(search, template_pool(search))


def template_pool(search: Search) -> list[str]:
    """The ``candidates`` template candidates of ``search.spec`` (seeded), the initial left out."""
    return [
        c.text
        for c in generate_candidates(search.spec, search.candidates, seed=search.seed)
        if c.text != search.initial
    ]


def race(search: Search, pool: Sequence[str]) -> str:
    """The best of ``pool`` by successive halving on val, racing as many (from the front of
    ``pool``) as ``search.budget_left`` allows; the initial instruction when none fits."""
    n, base = fit_halving(len(pool), search.n_val, search.budget_left)
    arms = list(pool[:n])
    for survivors, items in halving_schedule(n, search.n_val, base) if n else []:
        means = {a: mean(search.evaluator.scores(a, range(items))) for a in arms[:survivors]}
        arms = sorted(arms[:survivors], key=lambda a: -means[a])  # stable: ties keep order
    return arms[0] if arms else search.initial


def mean(values: Sequence[float]) -> float:
    """The arithmetic mean."""
    return sum(values) / len(values)
