"""Candidate instructions from component templates: the first pool of instruction optimization.

An instruction is assembled from one alternative per component kind -- role, task statement,
input description, output format, constraints, reasoning steps, in that order, joined into one
paragraph -- and filled from a :class:`TaskSpec`: the task description, the input and output
field names and the label set. The alternatives are data
(:mod:`instructkit.optimize.components`; the bundled ``resources/instruction_components.yaml``
by default), as FLAN writes one task's many phrasings as templates (Wei et al. 2021). Usage::

    spec = TaskSpec(
        description="classify the sentiment of a movie review",
        inputs=["text"], output="label", labels=["positive", "negative"],
        examples=[{"text": "A joy from start to finish.", "label": "positive"}],
    )
    for cand in generate_candidates(spec, 8, seed=0):
        print(cand.components, cand.text)
    print(describe_data(spec))  # a grounded data summary for an LM proposer

This is the proposal step of APE (Zhou et al. 2022, "Large Language Models Are Human-Level
Prompt Engineers"): a pool of candidates that a search then scores and refines. APE asks an LM
to propose instructions from demonstrations; here the first pool needs no model, so a search
starts from several well-formed instructions that differ from each other, and
:func:`describe_data` gives a later LM proposer a summary of the data grounded in the examples.
Choices taken:

- diversity: combinations are picked greedily by max-min Hamming distance over the component
  choices (the next one differs from every kept one in as many kinds as possible), ties broken
  by the summed distance, then by a seeded random order;
- validity: an instruction names every input field, the output field and its format (for a
  label set: every label; for numbers and JSON: says so);
- deduplication: exact after :func:`~instructkit.data.similarity.normalize_for_exact`, then
  ROUGE-L >= ``near_dup_threshold`` (default 0.7, Self-Instruct's rule) against every kept one.
"""

from __future__ import annotations

import json
import math
import random
import re
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from instructkit.data.similarity import normalize_for_exact, rouge_l_f, rouge_tokens
from instructkit.errors import ConfigError
from instructkit.optimize.components import (
    FORMATS,
    KINDS,
    NONE,
    Component,
    ComponentLibrary,
    load_components,
)

__all__ = [
    "KINDS",
    "FORMATS",
    "Component",
    "ComponentLibrary",
    "TaskSpec",
    "Candidate",
    "Rejected",
    "Proposals",
    "load_components",
    "infer_format",
    "render_candidate",
    "instruction_problems",
    "propose_candidates",
    "generate_candidates",
    "describe_data",
]

_FORMAT_WORDS = {
    "number": re.compile(r"\b(numbers?|numeric|integers?|digits?)\b", re.IGNORECASE),
    "json": re.compile(r"\bjson\b", re.IGNORECASE),
}
_MAX_COMBINATIONS = 4096  # a larger library is sampled, in the seeded order


# ------------------------------------------------------------------------------------- types


@dataclass(frozen=True)
class TaskSpec:
    """What an instruction is for: a task, its fields, its labels and a few example rows.

    ``description`` is an imperative phrase ("classify the sentiment of a movie review");
    ``examples`` are rows holding every input field and the output field. ``output_format``
    (label, number, text, json) is inferred when None: see :func:`infer_format`. Problems are
    reported together as one ConfigError.
    """

    description: str
    inputs: Sequence[str]
    output: str
    labels: Sequence[str] = ()
    examples: Sequence[Mapping[str, Any]] = ()
    output_format: str | None = None

    def __post_init__(self) -> None:
        for name in ("inputs", "labels", "examples"):
            value = getattr(self, name)
            if isinstance(value, (str, Mapping)):
                raise ConfigError(
                    f"task spec: '{name}' must be a list, got {value!r}.",
                    fix=f"wrap it in a list, e.g. {name}=[{value!r}].",
                )
            object.__setattr__(self, name, tuple(value))
        if problems := _spec_problems(self):
            raise ConfigError(
                "task spec: " + "; ".join(problems) + ".",
                fix="name the input fields and the output field, and give rows with all of them.",
            )


@dataclass(frozen=True)
class Candidate:
    """A candidate instruction and the component id of each kind that made it."""

    text: str
    components: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rejected:
    """A combination that was not kept, and why (invalid, exact or near duplicate)."""

    components: Mapping[str, str]
    text: str
    reason: str


@dataclass(frozen=True)
class Proposals:
    """The kept candidates (in pick order) and every rejected combination with its reason."""

    candidates: list[Candidate]
    rejected: list[Rejected]


# ----------------------------------------------------------------------------------- the spec


def _spec_problems(spec: TaskSpec) -> list[str]:
    problems = []
    if not isinstance(spec.description, str) or not spec.description.strip(" ."):
        problems.append("the description is empty")
    if not spec.inputs:
        problems.append("no input fields")
    if not isinstance(spec.output, str) or not spec.output:
        problems.append("no output field")
    names = [*spec.inputs, spec.output]
    problems += [f"'{n}' is not a field name" for n in names if n and not _is_name(n)]
    if len(set(names)) < len(names):
        problems.append(f"a field name repeats in inputs + output {names}")
    if spec.labels and (
        len(set(spec.labels)) != len(spec.labels)
        or len(spec.labels) < 2
        or not all(isinstance(x, str) and x.strip() for x in spec.labels)
    ):
        problems.append(f"labels {list(spec.labels)} must be 2 or more distinct strings")
    if spec.output_format not in (None, *FORMATS):
        problems.append(f"output_format '{spec.output_format}' is not one of {', '.join(FORMATS)}")
    if (spec.output_format == "label") != bool(spec.labels) and spec.output_format is not None:
        problems.append("output_format 'label' goes with labels, and labels with 'label'")
    for i, row in enumerate(spec.examples):
        missing = [n for n in names if not isinstance(row, Mapping) or row.get(n) is None]
        if missing:
            problems.append(f"examples[{i}] has no {', '.join(map(repr, missing))}")
        elif spec.labels and str(row[spec.output]) not in spec.labels:
            problems.append(f"examples[{i}] has {spec.output}={row[spec.output]!r}, not a label")
    return problems


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and value.isidentifier()


def infer_format(spec: TaskSpec) -> tuple[str, tuple[str, ...]]:
    """(output format, label set) of ``spec``: as given, else inferred from labels and examples.

    Labels given -> label. Otherwise from the example outputs: all numbers -> number; all JSON
    objects or arrays -> json; short outputs (<= 3 words) where some value repeats -> label, the
    label set being the values seen (pass ``labels`` when the examples may not show them all);
    anything else, or no examples -> text.
    """
    if spec.output_format is not None or spec.labels:
        return spec.output_format or "label", tuple(spec.labels)
    outs = [row[spec.output] for row in spec.examples]
    if outs and all(map(_is_number, outs)):
        return "number", ()
    if outs and all(map(_is_json, outs)):
        return "json", ()
    texts = [str(o).strip() for o in outs]
    seen = tuple(dict.fromkeys(texts))
    if 2 <= len(seen) < len(texts) and all(len(t.split()) <= 3 for t in texts):
        return "label", seen
    return "text", ()


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _is_json(value: Any) -> bool:
    if isinstance(value, (dict, list)):
        return True
    if not isinstance(value, str) or value.strip()[:1] not in ("{", "["):
        return False
    try:
        return isinstance(json.loads(value), (dict, list))
    except ValueError:
        return False


# ---------------------------------------------------------------------- rendering and checks


def render_candidate(
    spec: TaskSpec, components: Mapping[str, str], library: ComponentLibrary | None = None
) -> Candidate:
    """Fill the chosen alternative of each kind (kind -> id; "none" leaves an optional kind out)."""
    library = library or load_components()
    fmt, labels = infer_format(spec)
    chosen = {}
    for kind in KINDS:
        if kind not in components and kind not in library.optional:
            raise ConfigError(f"no {kind} component chosen.", fix=f"pass components['{kind}'].")
        comp = library.get(kind, components.get(kind, NONE))
        if comp is not None and fmt not in comp.formats:
            raise ConfigError(
                f"{kind} component '{comp.id}' is for {sorted(comp.formats)}, "
                f"but the output of this task is {fmt}.",
                fix="choose an alternative whose formats include the task's output format.",
            )
        chosen[kind] = comp
    return _render(chosen, _values(spec, labels))


def _render(chosen: Mapping[str, Component | None], values: dict[str, str]) -> Candidate:
    parts = [c.text.format_map(values) for c in chosen.values() if c is not None]
    ids = {kind: c.id if c is not None else NONE for kind, c in chosen.items()}
    return Candidate(" ".join(parts), ids)


def _values(spec: TaskSpec, labels: Sequence[str]) -> dict[str, str]:
    """Placeholder values: the task as a phrase, field names in backticks, labels by commas."""
    task = spec.description.strip().rstrip(".").strip()
    first = task.split()[0]
    if len(first) > 1 and first[0].isupper() and first[1:] == first[1:].lower():
        task = task[0].lower() + task[1:]  # "Classify ..." reads "Your task is to classify ..."
    names = [f"`{n}`" for n in spec.inputs]
    inputs = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return {
        "task": task,
        "inputs": inputs,
        "output": f"`{spec.output}`",
        "labels": ", ".join(labels),
    }


def instruction_problems(text: str, spec: TaskSpec) -> list[str]:
    """Why ``text`` is not a usable instruction for ``spec`` (empty list: it is).

    It must name every input field, the output field (for a label set: list every label
    instead) and the format: the labels, or a word saying number / JSON.
    """
    fmt, labels = infer_format(spec)
    problems = [
        f"does not name the input field '{n}'" for n in spec.inputs if not _mentions(text, n)
    ]
    if fmt == "label":
        if missing := [x for x in labels if not _mentions(text, x)]:
            problems.append(f"does not list the label(s) {missing}")
    elif not _mentions(text, spec.output):
        problems.append(f"does not name the output field '{spec.output}'")
    if fmt in _FORMAT_WORDS and not _FORMAT_WORDS[fmt].search(text):
        problems.append(
            f"does not say that the output is {'a number' if fmt == 'number' else 'JSON'}"
        )
    return problems


def _mentions(text: str, word: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE) is not None


# --------------------------------------------------------------------------------- generation


def generate_candidates(
    spec: TaskSpec,
    n: int,
    *,
    seed: int,
    components: ComponentLibrary | None = None,
    near_dup_threshold: float = 0.7,
) -> list[Candidate]:
    """Up to ``n`` valid, distinct, diverse instructions for ``spec`` (fewer only when the
    library has no more); :func:`propose_candidates` also returns the rejects and reasons."""
    return propose_candidates(
        spec, n, seed=seed, components=components, near_dup_threshold=near_dup_threshold
    ).candidates


def propose_candidates(
    spec: TaskSpec,
    n: int,
    *,
    seed: int,
    components: ComponentLibrary | None = None,
    near_dup_threshold: float = 0.7,
) -> Proposals:
    """Pick combinations in max-min diversity order; keep the valid, non-duplicate ones."""
    if n < 1 or not 0.0 < near_dup_threshold <= 1.0:
        raise ConfigError(
            f"n={n}, near_dup_threshold={near_dup_threshold} is out of range.",
            fix="use n >= 1 and 0 < near_dup_threshold <= 1.",
        )
    library = components or load_components()
    fmt, labels = infer_format(spec)
    choices = _choices(library, fmt)
    combos = _combinations(choices, random.Random(seed))
    picker, values = _MaxMinPicker(combos), _values(spec, labels)
    kept: list[Candidate] = []
    rejected: list[Rejected] = []
    seen: dict[str, int] = {}
    pool: list[list[str]] = []
    while len(kept) < n and (i := picker.pick()) is not None:
        row = combos[i].tolist()
        cand = _render({k: choices[k][j] for k, j in zip(KINDS, row, strict=True)}, values)
        if reason := _rejection(cand.text, spec, seen, pool, near_dup_threshold):
            rejected.append(Rejected(cand.components, cand.text, reason))
            continue
        seen[normalize_for_exact(cand.text)] = len(kept)
        pool.append(rouge_tokens(cand.text))
        kept.append(cand)
        picker.accept(i)
    return Proposals(kept, rejected)


def _choices(library: ComponentLibrary, fmt: str) -> dict[str, list[Component | None]]:
    """Per kind, the alternatives that suit ``fmt`` (None = left out, for optional kinds)."""
    choices: dict[str, list[Component | None]] = {}
    for kind in KINDS:
        fitting: list[Component | None] = [
            c for c in library.alternatives[kind] if fmt in c.formats
        ]
        if kind in library.optional:
            fitting.append(None)
        if not fitting:
            raise ConfigError(
                f"{library.source} has no {kind} alternative for the output format '{fmt}'.",
                fix=f"add a {kind} alternative with formats including {fmt}.",
            )
        choices[kind] = fitting
    return choices


def _combinations(
    choices: Mapping[str, Sequence[Component | None]], rng: random.Random
) -> np.ndarray:
    """(N, len(KINDS)) alternative indices in a seeded random order, without excluded pairs."""
    sizes = [len(choices[k]) for k in KINDS]
    total = math.prod(sizes)
    rows = []
    for code in rng.sample(range(total), min(total, _MAX_COMBINATIONS)):
        row = []
        for size in reversed(sizes):
            code, j = divmod(code, size)
            row.append(j)
        row.reverse()
        picked = [c for k, j in zip(KINDS, row, strict=True) if (c := choices[k][j]) is not None]
        ids = {c.id for c in picked}
        if not any(c.excludes & ids for c in picked):
            rows.append(row)
    if not rows:
        raise ConfigError("every combination of components is excluded.", fix="relax 'excludes'.")
    return np.array(rows, dtype=np.int64)


class _MaxMinPicker:
    """Greedy max-min Hamming order: next is the open combination farthest from all accepted.

    Ties go to the larger summed distance, then to the earlier row (the rows are in seeded
    random order). Only accepted picks move the distances, so rejects cost no diversity.
    """

    def __init__(self, combos: np.ndarray) -> None:
        self.combos = combos  # (N, K)
        n, k = combos.shape
        self.min_dist = np.full(n, k, dtype=np.int64)  # (N,)
        self.sum_dist = np.zeros(n, dtype=np.int64)  # (N,)
        self.open = np.ones(n, dtype=bool)  # (N,)
        self.scale = k * n + 1  # sum_dist < scale, so min_dist dominates the key

    def pick(self) -> int | None:
        if not self.open.any():
            return None
        key = np.where(self.open, self.min_dist * self.scale + self.sum_dist, -1)
        i = int(np.argmax(key))  # first maximum: the earliest row wins ties
        self.open[i] = False
        return i

    def accept(self, i: int) -> None:
        dist = (self.combos != self.combos[i]).sum(axis=1)  # (N,)
        np.minimum(self.min_dist, dist, out=self.min_dist)
        self.sum_dist += dist


def _rejection(
    text: str, spec: TaskSpec, seen: Mapping[str, int], pool: Sequence[list[str]], threshold: float
) -> str | None:
    """Why ``text`` cannot join the kept candidates (``pool`` holds their ROUGE tokens)."""
    if problems := instruction_problems(text, spec):
        return "; ".join(problems)
    if (j := seen.get(normalize_for_exact(text))) is not None:
        return f"exact duplicate of candidate {j}"
    tokens = rouge_tokens(text)
    for j, other in enumerate(pool):
        if (sim := rouge_l_f(tokens, other)) >= threshold:
            return f"near duplicate of candidate {j} (ROUGE-L {sim:.2f})"
    return None


# ------------------------------------------------------------------------------ data summary


def describe_data(spec: TaskSpec) -> str:
    """A short summary of the task's data, grounded in its examples, for an LM proposer.

    Lines: the task; the fields and output format; the label distribution (or the range of
    numbers, or output lengths in words); input lengths in words; the first example.
    """
    fmt, labels = infer_format(spec)
    kind = f"one of: {', '.join(labels)}" if fmt == "label" else fmt
    lines = [
        f"Task: {_values(spec, labels)['task']}.",
        f"Inputs: {', '.join(spec.inputs)}. Output: {spec.output} ({kind}).",
    ]
    rows = spec.examples
    if not rows:
        return "\n".join([*lines, "No examples were given."])
    outs = [row[spec.output] for row in rows]
    lines.append(f"{len(rows)} example{'s' if len(rows) > 1 else ''}.")
    if fmt == "label":
        counts = Counter(str(o).strip() for o in outs)
        shares = [f"{x} {counts[x]} ({counts[x] / len(outs):.0%})" for x in labels]
        lines.append("Labels: " + ", ".join(shares) + ".")
    elif fmt == "number":
        lines.append(f"Output values: {_spread([float(o) for o in outs], '{:g}')}.")
    else:
        lines.append(f"Output length in words: {_spread([_words(o) for o in outs], '{:g}')}.")
    for name in spec.inputs:
        lines.append(
            f"Input {name} length in words: {_spread([_words(r[name]) for r in rows], '{:g}')}."
        )
    shown = "; ".join(f"{k}: {_short(rows[0][k])}" for k in (*spec.inputs, spec.output))
    return "\n".join([*lines, f"Example: {shown}"])


def _words(value: Any) -> float:
    text = value if isinstance(value, str) else json.dumps(value)
    return float(len(text.split()))


def _spread(values: Sequence[float], fmt: str) -> str:
    lo, mid, hi = min(values), statistics.median(values), max(values)
    return f"{fmt.format(lo)} to {fmt.format(hi)}, median {fmt.format(mid)}"


def _short(value: Any, limit: int = 160) -> str:
    text = " ".join((value if isinstance(value, str) else json.dumps(value)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
