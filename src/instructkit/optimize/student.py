"""What an instruction search runs on, built from a user's DSPy program or from the
``instructkit optimize prompt`` workflow.

Both instruction optimizers with DSPy's contract (:class:`~instructkit.optimize.evolutionary.
Evolutionary`, :class:`~instructkit.optimize.opro.OPRO`) score every candidate through the
workflow's :class:`~instructkit.optimize.search.Evaluator`, so budget accounting, resume and the
history file are the same in Python and on the command line::

    setup = program_setup(opt, "OPRO", student, trainset, valset, metric)   # compile()
    setup = search_setup(search, proposer_lm=search.proposer)               # a METHODS entry

:func:`program_setup` checks everything before any call (one predictor, ``dspy.Example`` items
with their fields, a metric that runs on a reference, a budget of at least one valset
evaluation) and opens the optimizer's own :class:`~instructkit.jobs.Job` (at ``history``, or in
memory without it). :func:`search_setup` takes what the workflow already built.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import dspy
from dspy.teleprompt.teleprompt import Teleprompter
from pydantic import BaseModel

from instructkit.config import load_config
from instructkit.errors import ConfigError, DataFormatError
from instructkit.jobs import Job, fingerprint
from instructkit.optimize.bridge import TASK, BudgetExceeded, CallCounter
from instructkit.optimize.metrics import MetricFn, metric_value, resolve_metric
from instructkit.optimize.propose import split_sentences
from instructkit.optimize.search import Evaluator, Search
from instructkit.optimize.templates import TaskSpec, infer_format

__all__ = [
    "InstructionOptimizer",
    "SearchSetup",
    "StudentTask",
    "Wiring",
    "check_examples",
    "check_wiring",
    "program_setup",
    "search_setup",
]


class Wiring(Protocol):
    """What an optimizer object holds (its constructor's arguments)."""

    task_lm: Any
    proposer_lm: Any
    counter: CallCounter
    budget: int
    settings: BaseModel
    adapter: Any
    history: Path | None
    fresh: bool
    progress: bool


@dataclass
class SearchSetup:
    """What one search runs on: the evaluator (its job journals every scored item and every
    proposer reply), the baseline instruction, the task (for proposals and text operators),
    its output field and labels, the program structure shown to a proposer, and the task-call
    budget, the baseline's evaluation included."""

    evaluator: Evaluator
    baseline: str
    spec: TaskSpec | None
    output: str
    labels: list[str]
    structure: str
    budget: int
    counter: CallCounter
    proposer_lm: Any
    progress: bool


@dataclass(frozen=True)
class StudentTask:
    """A user's one-predictor program as the evaluator's task: a copy per instruction."""

    student: Any
    target: str
    adapter: Any = None

    def program(self, instruction: str) -> Any:
        program = self.student.deepcopy()
        predictor = program.predictors()[0]
        predictor.signature = predictor.signature.with_instructions(instruction)
        return program if self.adapter is None else _WithAdapter(program, self.adapter)


class _WithAdapter(dspy.Module):
    """Runs a program under its own adapter (the evaluator's default is PlainAdapter)."""

    def __init__(self, program: Any, adapter: Any) -> None:
        super().__init__()
        self.program, self.adapter = program, adapter

    def forward(self, **inputs: Any) -> Any:
        with dspy.context(adapter=self.adapter):
            return self.program(**inputs)


class InstructionOptimizer(Teleprompter):
    """DSPy's optimizer contract for a search over the instruction of a one-predictor program,
    shared by :class:`~instructkit.optimize.evolutionary.Evolutionary` and
    :class:`~instructkit.optimize.opro.OPRO`.

    ``task_lm`` must be a :func:`~instructkit.optimize.bridge.bridge_lm` counted by ``counter``
    under the task role; ``proposer_lm`` has the proposer role. ``budget`` is in task calls.
    ``settings`` (the subclass's ``settings_model``) may be given whole or as keyword
    overrides. After :meth:`compile`, ``self.result`` holds what the search found.
    """

    name: ClassVar[str]
    settings_model: ClassVar[type[BaseModel]]

    def __init__(
        self,
        task_lm: Any,
        proposer_lm: Any | None,
        counter: CallCounter,
        budget: int,
        settings: BaseModel | None = None,
        *,
        adapter: Any = None,
        history: str | Path | None = None,
        fresh: bool = False,
        progress: bool = True,
        **overrides: Any,
    ) -> None:
        super().__init__()
        base = (settings or self.settings_model()).model_dump()
        self.settings = load_config(self.settings_model, **{**base, **overrides})
        self.task_lm, self.proposer_lm, self.counter = task_lm, proposer_lm, counter
        self.budget = budget
        self.adapter = adapter
        self.history = Path(history) if history is not None else None
        self.fresh, self.progress = fresh, progress
        self.result: Any = None
        check_wiring(self, self.name)

    def compile(
        self,
        student: Any,
        *,
        trainset: Sequence[Any],
        valset: Sequence[Any] | None = None,
        metric: str | MetricFn,
        teacher: Any = None,
    ) -> Any:
        """A deep copy of ``student`` whose predictor carries the best instruction found.

        Every check (predictors, data fields, metric, budget, LM wiring) runs before any call.
        """
        if teacher is not None:
            raise ConfigError(
                f"{self.name} searches instructions and takes no teacher program.",
                fix="pass trainset=, valset= and metric= only.",
            )
        started = time.monotonic()
        train = list(trainset)
        setup = program_setup(self, self.name, student, train, list(valset or train), metric)
        instruction, self.result = self.search(setup, started)
        return StudentTask(student, setup.output).program(instruction)

    def search(self, setup: SearchSetup, started: float) -> tuple[str, Any]:
        """Run the search on ``setup``: the best instruction and the result object."""
        raise NotImplementedError


class Counted(Protocol):
    """What :func:`check_wiring` reads of an optimizer."""

    task_lm: Any
    counter: CallCounter
    budget: int


def check_wiring(opt: Counted, name: str) -> None:
    """The budget is a whole number of calls and ``task_lm`` is counted by ``counter``."""
    if isinstance(opt.budget, bool) or not isinstance(opt.budget, int) or opt.budget < 1:
        raise ConfigError(
            f"{name}: budget={opt.budget!r} must be a number of task calls >= 1.",
            fix="pass the budget as a whole number of task-model calls.",
        )
    engine = getattr(opt.task_lm, "engine", None)
    if getattr(engine, "counter", None) is not opt.counter or getattr(engine, "role", None) != TASK:
        raise ConfigError(
            "task_lm is not counted by this counter under the task role, so the budget "
            "could not hold.",
            fix="build it with bridge_lm(lm, counter=counter, role='task').",
        )


def program_setup(
    opt: Wiring,
    name: str,
    student: Any,
    trainset: list[Any],
    valset: list[Any],
    metric: str | MetricFn,
) -> SearchSetup:
    """The setup of an optimizer's ``compile``: checks before any call, then its own job (in
    memory without ``history``) and evaluator over ``valset``."""
    predictor = _single_predictor(student, name)
    output = list(predictor.signature.output_fields)[-1]
    metric_pair = _preflight(opt, valset, trainset, metric, output)
    baseline = str(predictor.signature.instructions)
    fp = fingerprint(
        opt.settings,
        exclude=("generations", "patience", "steps"),  # a longer run continues the same search
        optimizer=name,
        valset=[dict(e.items()) for e in valset],
        trainset=[dict(e.items()) for e in trainset],
        student=str(predictor.signature),
        instruction=baseline,
        metric=metric_pair[0],
        task_lm=getattr(opt.task_lm, "model", ""),
        proposer_lm=getattr(opt.proposer_lm, "model", None),
        journal="one row per scored item",  # the format of the rows (older journals differ)
    )
    path = opt.history
    proposals = {"proposals": path.with_name(path.name + ".proposals.jsonl")} if path else None
    job = Job(path, fp, fresh=opt.fresh, journals=proposals)
    task = StudentTask(student, output, opt.adapter)
    evaluator = Evaluator(job, task, metric_pair, {"val": opt.task_lm}, {"val": valset})
    labels = list(getattr(opt.settings, "labels", []))
    spec = _task_spec(baseline, predictor, trainset, output, labels)
    return SearchSetup(
        evaluator=evaluator,
        baseline=baseline,
        spec=spec,
        output=output,
        labels=list(infer_format(spec)[1]) if spec else labels,
        structure=_structure(
            type(predictor).__name__, list(predictor.signature.input_fields), output
        ),
        budget=opt.budget,
        counter=opt.counter,
        proposer_lm=opt.proposer_lm,
        progress=opt.progress,
    )


def search_setup(search: Search) -> SearchSetup:
    """The setup of a ``METHODS`` entry: the workflow's evaluator, initial instruction (already
    scored on val) and proposer; the budget is what is left plus what the initial cost."""
    evaluator = search.evaluator
    initial_rows = evaluator.rows(search.initial, range(search.n_val))
    task = search.task
    return SearchSetup(
        evaluator=evaluator,
        baseline=search.initial,
        spec=search.spec,
        output=task.target,
        labels=list(infer_format(search.spec)[1]),
        structure=_structure("Predict", list(task.inputs), task.target),
        budget=search.budget_left + sum(int(r["calls"]) for r in initial_rows),
        counter=evaluator.lms["val"].engine.counter,
        proposer_lm=search.proposer,
        progress=False,  # the workflow shows its own bar
    )


def _structure(kind: str, inputs: Sequence[str], output: str) -> str:
    return f"{kind}({', '.join(inputs)} -> {output})"


# --------------------------------------------------------------------------------- the checks


def _preflight(
    opt: Wiring, valset: list[Any], trainset: list[Any], metric: str | MetricFn, output: str
) -> tuple[str, MetricFn]:
    """Data, metric and budget checks, all before any call; (metric name, metric)."""
    check_examples(valset, "valset" if valset is not trainset else "trainset")
    name, fn = resolve_metric(metric, target=output)
    metric_value(fn, name, valset[0], dspy.Prediction(**valset[0].labels()), 0)
    if opt.budget < len(valset):
        raise BudgetExceeded(
            f"a budget of {opt.budget} task calls is smaller than one evaluation of the "
            f"{len(valset)} valset items (the baseline is scored on all of them first).",
            fix=f"raise the budget to at least {len(valset)}; several times that to search.",
        )
    opt.counter.require(len(valset), TASK, "one evaluation of the valset")
    return name, fn


def _single_predictor(student: Any, name: str) -> Any:
    predictors = student.predictors() if hasattr(student, "predictors") else []
    if not predictors:
        raise ConfigError(
            f"the program {type(student).__name__} has no predictors whose instruction could "
            "be optimized.",
            fix="give a DSPy module that contains a dspy.Predict (or a module built on one).",
        )
    if len(predictors) > 1:
        raise ConfigError(
            f"the program has {len(predictors)} predictors; {name} optimizes the "
            "instruction of one predictor.",
            fix="optimize each predictor's instruction in a program of its own.",
        )
    return predictors[0]


def check_examples(examples: Sequence[Any], name: str) -> None:
    """Items are ``dspy.Example`` with inputs marked, and all carry the first item's fields."""
    if not examples:
        raise ConfigError(f"the {name} is empty.", fix="give at least one example.")
    for number, example in enumerate(examples, 1):
        if not isinstance(example, dspy.Example) or not example._input_keys:
            raise ConfigError(
                f"{name} item {number} is not a dspy.Example with its inputs marked.",
                fix="build items with dspy.Example(...).with_inputs('field', ...).",
            )
    first = examples[0]
    wanted = [*first._input_keys, *first.labels().keys()]
    for number, example in enumerate(examples, 1):
        for key in wanted:
            if example.get(key) is None:
                raise DataFormatError(
                    f"{name} item is missing a field the program reads or the metric scores",
                    row=number,
                    field=key,
                    fix=f"give every item the fields {wanted}.",
                )


def _task_spec(
    instruction: str, predictor: Any, rows: Sequence[Any], output: str, labels: Sequence[str]
) -> TaskSpec | None:
    """The task as a :class:`TaskSpec` (for the data summary, component sentences and
    exemplars), or None when the data does not fit one (e.g. an output missing from rows)."""
    first = split_sentences(instruction)[:1] or ["do the task"]
    inputs = list(predictor.signature.input_fields)
    examples = [
        {k: row.get(k) for k in (*inputs, output)}
        for row in rows[:50]
        if row.get(output) is not None
    ]
    try:
        return TaskSpec(
            description=first[0], inputs=inputs, output=output, labels=labels, examples=examples
        )
    except ConfigError:
        return None
