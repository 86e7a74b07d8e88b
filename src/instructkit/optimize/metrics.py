"""Metrics for scoring DSPy programs: instructkit's per-item metrics by name, or a callable.

A metric here has DSPy's signature, ``metric(example, prediction) -> float``.
:func:`resolve_metric` turns a name of an instructkit per-item metric into one, applied to the
output field ``target``: ``exact_match`` (SQuAD EM), ``accuracy``/``label_match`` (label match
up to case and whitespace), ``f1``, ``rouge_l``, ``bleu``/``chrf`` (sentence-level), ``answer``
(:func:`~instructkit.evaluate.checks.score_answer`), all from :mod:`instructkit.evaluate`.
:func:`named_label` is the lenient reading behind a labelled task's ``label`` metric
(:meth:`~instructkit.optimize.task.InstructionTask.label_metric`). :func:`metric_value` calls a
metric and turns a failure or a non-number into a ConfigError naming the item.
:func:`ifeval_metric` scores a reply with the IFEval checks of
:mod:`instructkit.evaluate.ifeval` (no reference needed)::

    name, metric = resolve_metric("f1", target="answer")
    metric_value(metric, name, example, prediction, index=0)       # float
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from instructkit.errors import ConfigError
from instructkit.evaluate.checks import normalize_answer, score_answer
from instructkit.evaluate.ifeval import followed_share, parse_ifeval_row
from instructkit.evaluate.metrics import (
    exact_match,
    label_match,
    rouge_l,
    sentence_bleu,
    sentence_chrf,
    token_f1,
)

__all__ = [
    "IFEVAL_FIELDS",
    "ITEM_METRICS",
    "MetricFn",
    "check_ifeval_fields",
    "ifeval_metric",
    "metric_value",
    "named_label",
    "resolve_metric",
]

IFEVAL_FIELDS = ("instruction_id_list", "kwargs")  # what an IFEval row adds to its prompt

MetricFn = Callable[[Any, Any], float]  # (dspy.Example, dspy.Prediction) -> score

ITEM_METRICS: dict[str, Callable[[str, Any], float]] = {
    "exact_match": exact_match,
    "accuracy": label_match,
    "label_match": label_match,
    "f1": token_f1,
    "rouge_l": rouge_l,
    "bleu": sentence_bleu,
    "chrf": sentence_chrf,
    "answer": lambda text, refs: max(
        score_answer(text, r) for r in ([refs] if isinstance(refs, str) else refs)
    ),
}


def named_label(reply: str, labels: Sequence[str]) -> str | None:
    """The one label that ``reply`` names, or None.

    The reply is normalized as for exact match (first line, lowercase, no punctuation,
    articles or "Answer:"); it names a label when it equals it, or else when exactly one label
    occurs in it as whole words ("The text is positive." -> positive; "positive or negative"
    -> None). Small models rarely answer with the bare label, hence this lenience.
    """
    text = normalize_answer(reply)
    normalized = {normalize_answer(label): label for label in labels}
    if text in normalized:
        return normalized[text]
    padded = f" {text} "
    found = [label for norm, label in normalized.items() if norm and f" {norm} " in padded]
    return found[0] if len(found) == 1 else None


def resolve_metric(metric: str | MetricFn, target: str | None = None) -> tuple[str, MetricFn]:
    """(name, ``metric(example, prediction) -> float``) for a metric name or callable."""
    if callable(metric):
        return getattr(metric, "__name__", type(metric).__name__), metric
    if metric not in ITEM_METRICS:
        raise ConfigError(
            f"unknown metric '{metric}'.",
            fix=f"use one of: {', '.join(ITEM_METRICS)}, or a callable (example, prediction).",
        )
    if target is None:
        raise ConfigError(
            f"the metric '{metric}' needs the name of the output field it scores.",
            fix="pass target='<output field>'.",
        )
    item = ITEM_METRICS[metric]

    def named(example: Any, prediction: Any) -> float:
        value = prediction.get(target) if hasattr(prediction, "get") else None
        return float(item("" if value is None else str(value), example[target]))

    named.__name__ = metric
    return metric, named


def metric_value(metric: MetricFn, name: str, example: Any, prediction: Any, index: int) -> float:
    try:
        value = metric(example, prediction)
    except Exception as exc:
        raise ConfigError(
            f"the metric '{name}' failed on item {index}: {type(exc).__name__}: {exc}",
            fix="a metric takes (example, prediction) and returns a number.",
        ) from exc
    if isinstance(value, bool) or isinstance(value, (int, float)):
        if math.isfinite(float(value)):
            return float(value)
    raise ConfigError(
        f"the metric '{name}' returned {value!r} on item {index}, not a finite number.",
        fix="return a float (e.g. 1.0 for correct, 0.0 for wrong).",
    )


def ifeval_metric(prompt_field: str, target: str) -> MetricFn:
    """IFEval (Zhou et al. 2023) as a per-item metric: the share of the example's instructions
    (``instruction_id_list`` with its ``kwargs``) that the reply in ``target`` follows, strict
    (on the reply as it is: IFEval's headline mode). A check that cannot run here is left out;
    a blank reply, or one whose checks could not run at all, scores 0.0. The checks are
    :func:`instructkit.evaluate.ifeval.followed_share`; ``prompt_field`` holds the prompt."""

    def ifeval(example: Any, prediction: Any) -> float:
        response = str(prediction.get(target) or "")
        return followed_share(parse_ifeval_row(_ifeval_value(example, prompt_field, response)))

    return ifeval


def check_ifeval_fields(row: Any, prompt_field: str, *, path: Any, row_no: int) -> None:
    """The row's ``instruction_id_list`` and ``kwargs`` are valid IFEval (known ids, kwargs of
    the right types): a DataFormatError names the file, the row and the field."""
    parse_ifeval_row(_ifeval_value(row, prompt_field, "-"), path=path, row=row_no)


def _ifeval_value(row: Any, prompt_field: str, response: str) -> dict[str, Any]:
    return {
        "prompt": str(row.get(prompt_field) or "-"),
        "response": response,
        **{name: row.get(name) for name in IFEVAL_FIELDS},
    }
