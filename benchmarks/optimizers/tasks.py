"""The tasks of the optimizer benchmark: data, fields, metric, initial instructions and splits.

    from tasks import TASKS
    task = TASKS["sentiment"]
    split = task.split(seed=0)             # Split(train, val, test) of dspy.Example
    program = task.program()               # the DSPy program with the initial instruction(s)
    metric = task.metric()                 # metric(example, prediction, *extra) -> float

Five tasks, each a file in ``data/`` written by ``data/make_data.py`` (authored here, balanced
labels, 81-110 rows):

| task | program | metric |
|---|---|---|
| ``sentiment`` | ``review -> sentiment`` (positive/negative) | names the right label |
| ``topic`` | ``message -> topic`` (billing, technical, shipping, account) | names the label |
| ``number`` | ``sentence -> number`` (the quantity, as digits) | exact match (format following) |
| ``city`` | ``sentence -> city`` (extraction) | token F1 (SQuAD) |
| ``triage`` | ``ticket -> summary``, then ``summary -> department`` | names the label |

Every task starts from a deliberately plain instruction (one per predictor) that a search can
improve on. Splits are seeded shuffles: ``train`` (what a method may learn from: examples for
the proposers), ``val`` (what the budget is spent on) and ``test`` (the rest; scored only after
the search, outside the budget). ``data/heldout_*`` files are reserved for a held-out
demonstration and are not tasks of this benchmark.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy

from instructkit.optimize import InstructionTask
from instructkit.optimize.metrics import resolve_metric
from instructkit.optimize.templates import TaskSpec

DATA = Path(__file__).parent / "data"
TRAIN, VAL = 20, 30  # items per split; test is the rest (31-60 items)


@dataclass(frozen=True)
class Stage:
    """One predictor of a task's program: its fields, task description and initial instruction."""

    name: str
    inputs: tuple[str, ...]
    output: str
    description: str
    initial: str
    labels: tuple[str, ...] = ()
    output_format: str | None = None

    def signature(self, instruction: str) -> Any:
        fields = f"{', '.join(self.inputs)} -> {self.output}"
        return dspy.Signature(fields).with_instructions(instruction)


@dataclass(frozen=True)
class Split:
    train: list[Any]
    val: list[Any]
    test: list[Any]


@dataclass(frozen=True)
class BenchTask:
    """A benchmark task: ``stages`` (one for a one-predictor task, two for ``triage``), the
    data file, the final target, the metric name (``label``, ``exact_match`` or ``f1``)."""

    name: str
    data: str
    stages: tuple[Stage, ...]
    target: str
    metric_name: str

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.stages[0].inputs

    @property
    def labels(self) -> tuple[str, ...]:
        return self.stages[-1].labels

    @property
    def initial(self) -> tuple[str, ...]:
        return tuple(stage.initial for stage in self.stages)

    @property
    def calls_per_item(self) -> int:
        """Task-model calls one item costs (one per predictor)."""
        return len(self.stages)

    def rows(self) -> list[dict[str, str]]:
        path = DATA / f"{self.data}.jsonl"
        return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]

    def split(self, seed: int) -> Split:
        rows = self.rows()
        random.Random(seed).shuffle(rows)
        examples = [dspy.Example(**r).with_inputs(*self.inputs) for r in rows]
        return Split(examples[:TRAIN], examples[TRAIN : TRAIN + VAL], examples[TRAIN + VAL :])

    def instruction_task(self) -> InstructionTask:
        """The one-predictor view (``InstructionTask``) used by our search methods."""
        stage = self.stages[0]
        return InstructionTask(inputs=stage.inputs, target=stage.output, labels=stage.labels)

    def program(self, instructions: Sequence[str] | None = None) -> Any:
        """The task's DSPy program with ``instructions`` (default: the initial ones)."""
        instructions = tuple(instructions or self.initial)
        if len(self.stages) == 1:
            return dspy.Predict(self.stages[0].signature(instructions[0]))
        return TwoStage(self.stages, instructions)

    def metric(self) -> Callable[..., float]:
        """``metric(example, prediction, *extra)``: DSPy's two-argument metric that also takes
        the trace arguments MIPROv2 (3) and GEPA (5) pass."""
        if self.metric_name == "label":
            stage = self.stages[-1]
            base = InstructionTask(
                inputs=stage.inputs, target=self.target, labels=stage.labels
            ).label_metric()
        else:
            _, base = resolve_metric(self.metric_name, self.target)

        def metric(example: Any, prediction: Any, *extra: Any) -> float:
            return float(base(example, prediction))

        metric.__name__ = self.metric_name
        return metric

    def spec(self, stage: int, examples: Sequence[Any]) -> TaskSpec:
        """The :class:`TaskSpec` of ``stage`` for component-template candidates."""
        s = self.stages[stage]
        rows = [
            {**{f: ex.get(f, "...") for f in s.inputs}, s.output: ex.get(s.output, "...")}
            for ex in examples[:8]
        ]
        return TaskSpec(
            description=s.description,
            inputs=list(s.inputs),
            output=s.output,
            labels=list(s.labels),
            examples=rows,
            output_format=s.output_format,
        )


class TwoStage(dspy.Module):
    """Two predictors in a chain: the first one's output is the second one's input."""

    def __init__(self, stages: Sequence[Stage], instructions: Sequence[str]) -> None:
        super().__init__()
        self.first_field, self.mid_field = stages[0].inputs[0], stages[0].output
        self.first = dspy.Predict(stages[0].signature(instructions[0]))
        self.second = dspy.Predict(stages[1].signature(instructions[1]))

    def forward(self, **inputs: Any) -> Any:
        middle = self.first(**inputs)
        return self.second(**{self.mid_field: getattr(middle, self.mid_field)})


SENTIMENT = ("positive", "negative")
TOPICS = ("billing", "technical", "shipping", "account")
DEPARTMENTS = ("billing", "technical", "shipping")

TASKS: dict[str, BenchTask] = {
    "sentiment": BenchTask(
        "sentiment",
        "sentiment",
        (
            Stage(
                "classify",
                ("review",),
                "sentiment",
                "classify the sentiment of a product, film or service review",
                "Read the review and say how the writer feels.",
                SENTIMENT,
            ),
        ),
        "sentiment",
        "label",
    ),
    "topic": BenchTask(
        "topic",
        "topic",
        (
            Stage(
                "classify",
                ("message",),
                "topic",
                "classify the topic of a customer support message",
                "What is this customer message about?",
                TOPICS,
            ),
        ),
        "topic",
        "label",
    ),
    "number": BenchTask(
        "number",
        "number",
        (
            Stage(
                "extract",
                ("sentence",),
                "number",
                "give the quantity mentioned in the sentence as a number written in digits",
                "Find the number in the sentence.",
                output_format="number",
            ),
        ),
        "number",
        "exact_match",
    ),
    "city": BenchTask(
        "city",
        "city",
        (
            Stage(
                "extract",
                ("sentence",),
                "city",
                "extract the name of the city mentioned in the sentence",
                "Which place is this about?",
                output_format="text",
            ),
        ),
        "city",
        "f1",  # exact match scored 0 for every instruction on SmolLM2 (it answers in sentences)
    ),
    "triage": BenchTask(
        "triage",
        "triage",
        (
            Stage(
                "summarize",
                ("ticket",),
                "summary",
                "summarize the customer's problem in a few words",
                "Summarize the ticket.",
                output_format="text",
            ),
            Stage(
                "route",
                ("summary",),
                "department",
                "route a summarized customer problem to the department that handles it",
                "Which team should handle this?",
                DEPARTMENTS,
            ),
        ),
        "department",
        "label",
    ),
}
