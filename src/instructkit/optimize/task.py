"""A one-predictor task read from a dataset, whose instruction is what gets optimized.

task = InstructionTask(inputs=("text",), target="sentiment", labels=("positive", "negative"))
task.examples(rows)                  # dspy.Example list; a bad row names itself
task.program("Classify the sentiment.")   # dspy.Predict("text -> sentiment") with it
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dspy

from instructkit.errors import ConfigError, DataFormatError
from instructkit.evaluate.metrics import label_match
from instructkit.optimize.metrics import MetricFn, named_label

__all__ = ["InstructionTask"]


@dataclass(frozen=True)
class InstructionTask:
    """A one-predictor task read from a dataset: ``inputs`` -> ``target`` (all text fields).

    ``labels``, when given, is the closed answer set: every row's target must be one of them
    (up to case and whitespace) and the default metric is :meth:`label_metric` (named
    ``label``); otherwise the default is ``exact_match``. ``extra`` names fields every row must
    hold that the metric reads but the model is not shown (e.g. IFEval's
    ``instruction_id_list`` and ``kwargs``); ``reference=False`` lets rows lack the target (a
    metric that checks the reply alone; the examples then carry ``""`` as the target).
    """

    inputs: tuple[str, ...]
    target: str
    labels: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    reference: bool = True

    def __post_init__(self) -> None:
        names = [*self.inputs, self.target]
        bad = [n for n in names if not n.isidentifier()]
        if not self.inputs or bad or len(set(names)) != len(names):
            raise ConfigError(
                f"task fields {names} are not usable: inputs {list(self.inputs)} must be "
                f"non-empty, distinct from the target '{self.target}', and Python identifiers.",
                fix="name the fields like text, question, answer.",
            )

    @property
    def default_metric(self) -> str | MetricFn:
        """:meth:`label_metric` with labels, else ``exact_match``."""
        return self.label_metric() if self.labels else "exact_match"

    def label_metric(self) -> MetricFn:
        """1.0 when the reply names the right label (:func:`named_label`), else 0.0."""
        if not self.labels:
            raise ConfigError("the metric 'label' needs the task's labels.", fix="give labels=.")
        labels, target = self.labels, self.target

        def label(example: Any, prediction: Any) -> float:
            named = named_label(str(prediction.get(target) or ""), labels)
            return float(named is not None and label_match(named, example[target]) == 1.0)

        return label

    def signature(self, instruction: str) -> Any:
        """The DSPy signature ``inputs -> target`` with ``instruction`` as its instructions."""
        fields: dict[str, Any] = {name: (str, dspy.InputField()) for name in self.inputs}
        fields[self.target] = (str, dspy.OutputField())
        return dspy.Signature(fields, instruction)

    def program(self, instruction: str) -> Any:
        """A ``dspy.Predict`` over :meth:`signature`."""
        return dspy.Predict(self.signature(instruction))

    def examples(self, rows: Sequence[Any], *, source: object | None = None) -> list[Any]:
        """Rows (mappings or ``dspy.Example``) as examples with the inputs marked, checked:
        a missing field or an off-label target raises DataFormatError naming the row (1-based;
        ``source`` names the file)."""
        if not rows:
            raise ConfigError("there are no items to score.", fix="give at least one row.")
        out = []
        for number, row in enumerate(rows, 1):
            record = _as_mapping(row, number, source)
            self._check_row(record, number, source)
            values = {name: record[name] for name in (*self.inputs, *self.extra)}
            values[self.target] = record[self.target] if self.reference else ""
            out.append(dspy.Example(**values).with_inputs(*self.inputs))
        return out

    def _check_row(self, record: Mapping[str, Any], number: int, source: object) -> None:
        needed = [*self.inputs, *([self.target] if self.reference else []), *self.extra]
        for name in needed:
            if record.get(name) is None:
                raise DataFormatError(
                    f"missing the field '{name}' that the task reads "
                    f"(inputs {list(self.inputs)}, target '{self.target}')",
                    path=source,
                    row=number,
                    field=name,
                    fix=f"give every row the fields {needed}.",
                )
        if (
            self.reference
            and self.labels
            and not label_match(str(record[self.target]), list(self.labels))
        ):
            raise DataFormatError(
                f"the target {record[self.target]!r} is not one of the labels {list(self.labels)}",
                path=source,
                row=number,
                field=self.target,
                fix="correct the row, or add the label to the task's labels.",
            )


def _as_mapping(row: Any, number: int, source: object) -> Mapping[str, Any]:
    if isinstance(row, dspy.Example):
        return dict(row.items())
    if isinstance(row, Mapping):
        return row
    raise DataFormatError(
        f"a row is a {type(row).__name__}, not an object with fields",
        path=source,
        row=number,
        fix="give each row as a dict (or a dspy.Example) of field -> value.",
    )
