"""IFEval: verifiable instruction following (Zhou et al. 2023, "Instruction-Following Evaluation
for Large Language Models", arXiv:2311.07911).

The input is IFEval's JSONL, one prompt per row (``key``, ``prompt``, ``instruction_id_list``,
``kwargs``: a list of dicts parallel to the ids) plus the model's ``response``. Every instruction
is checked twice, as in the reference implementation:

- strict: on the response as it is;
- loose: on 8 variants (the response, without its first line, its last line, or both, and each
  of those with every "*" removed); it passes if any variant passes.

A blank response (or variant) follows no instruction. Scores are the prompt-level accuracy (all
of a prompt's instructions followed) and the instruction-level accuracy, strict and loose, overall
and per instruction id and per category (the part before ":"). A check that cannot run here
(a language check without langdetect installed) is ``None``, never a guess: it is left out of
the denominators and counted under ``not_run``; a prompt with such a check counts at prompt level
only if another of its checks already failed. Usage::

    report = evaluate_ifeval_file("ifeval_responses.jsonl", "ifeval_results.jsonl")
    print(report.format())

    rows, rejects = load_ifeval("ifeval_responses.jsonl", skip_invalid=True)
    report = score_ifeval(rows)
    report.prompt_level.strict.value        # e.g. 0.41

The checks themselves live in :mod:`instructkit.evaluate.ifeval_checks`.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from instructkit.data.formats import Reject, save_rejects
from instructkit.data.sources import read_source_rows
from instructkit.errors import DataFormatError
from instructkit.evaluate import ifeval_checks as checks
from instructkit.evaluate.results import EvalResults, now, save_eval_results
from instructkit.io import BadLine, beside, write_jsonl

__all__ = [
    "INSTRUCTIONS",
    "Instruction",
    "IFEvalRow",
    "CheckResult",
    "RowResult",
    "Accuracy",
    "Scores",
    "IFEvalReport",
    "loose_variants",
    "parse_ifeval_row",
    "load_ifeval",
    "check_row",
    "followed_share",
    "summarize_ifeval",
    "score_ifeval",
    "evaluate_ifeval_file",
    "ifeval_results",
    "ifeval_results_path",
    "ifeval_rejects_path",
]

Mode = Literal["strict", "loose"]
# Kinds of kwargs: count (int >= 0), position (int >= 1), relation, text, letter, words.
Kind = Literal["count", "position", "relation", "text", "letter", "words"]


@dataclass(frozen=True)
class Instruction:
    """One IFEval instruction type: its public id, its check and the kwargs the check takes."""

    id: str
    check: Callable[..., bool]
    params: Mapping[str, Kind] = field(default_factory=dict)


_ENTRIES = (
    Instruction("keywords:existence", checks.keywords_existence, {"keywords": "words"}),
    Instruction(
        "keywords:frequency",
        checks.keywords_frequency,
        {"keyword": "text", "frequency": "count", "relation": "relation"},
    ),
    Instruction(
        "keywords:forbidden_words", checks.keywords_forbidden_words, {"forbidden_words": "words"}
    ),
    Instruction(
        "keywords:letter_frequency",
        checks.keywords_letter_frequency,
        {"letter": "letter", "let_frequency": "count", "let_relation": "relation"},
    ),
    Instruction(
        "language:response_language", checks.language_response_language, {"language": "text"}
    ),
    Instruction(
        "length_constraints:number_sentences",
        checks.number_sentences,
        {"num_sentences": "count", "relation": "relation"},
    ),
    Instruction(
        "length_constraints:number_paragraphs",
        checks.number_paragraphs,
        {"num_paragraphs": "count"},
    ),
    Instruction(
        "length_constraints:number_words",
        checks.number_words,
        {"num_words": "count", "relation": "relation"},
    ),
    Instruction(
        "length_constraints:nth_paragraph_first_word",
        checks.nth_paragraph_first_word,
        {"num_paragraphs": "count", "nth_paragraph": "position", "first_word": "text"},
    ),
    Instruction(
        "detectable_content:number_placeholders",
        checks.number_placeholders,
        {"num_placeholders": "count"},
    ),
    Instruction("detectable_content:postscript", checks.postscript, {"postscript_marker": "text"}),
    Instruction(
        "detectable_format:number_bullet_lists",
        checks.number_bullet_lists,
        {"num_bullets": "count"},
    ),
    Instruction("detectable_format:constrained_response", checks.constrained_response),
    Instruction(
        "detectable_format:number_highlighted_sections",
        checks.number_highlighted_sections,
        {"num_highlights": "count"},
    ),
    Instruction(
        "detectable_format:multiple_sections",
        checks.multiple_sections,
        {"section_spliter": "text", "num_sections": "count"},
    ),
    Instruction("detectable_format:json_format", checks.json_format),
    Instruction("detectable_format:title", checks.title),
    Instruction("combination:two_responses", checks.two_responses),
    Instruction("combination:repeat_prompt", checks.repeat_prompt, {"prompt_to_repeat": "text"}),
    Instruction("startend:end_checker", checks.end_checker, {"end_phrase": "text"}),
    Instruction(
        "change_case:capital_word_frequency",
        checks.capital_word_frequency,
        {"capital_frequency": "count", "capital_relation": "relation"},
    ),
    Instruction("change_case:english_capital", checks.english_capital),
    Instruction("change_case:english_lowercase", checks.english_lowercase),
    Instruction("punctuation:no_comma", checks.no_comma),
    Instruction("startend:quotation", checks.quotation),
)
INSTRUCTIONS: Mapping[str, Instruction] = MappingProxyType({i.id: i for i in _ENTRIES})

# ------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class IFEvalRow:
    """A validated input row; ``kwargs[i]`` holds only the kwargs instruction i uses."""

    key: int | str | None
    prompt: str
    response: str
    instruction_id_list: tuple[str, ...]
    kwargs: tuple[dict[str, Any], ...]
    row: int | None = None


@dataclass(frozen=True)
class CheckResult:
    """One instruction of one row: followed (True/False) or could not run (None, see note)."""

    instruction_id: str
    strict: bool | None
    loose: bool | None
    note: str | None = None


def _all(values: Iterable[bool | None]) -> bool | None:
    """False if any is False, else None if any is None, else True."""
    values = list(values)
    return False if False in values else None if None in values else True


@dataclass(frozen=True)
class RowResult:
    """The checks of one row, in the order of its instruction_id_list."""

    key: int | str | None
    prompt: str
    response: str
    checks: tuple[CheckResult, ...]
    row: int | None = None

    def follow_instruction_list(self, mode: Mode) -> list[bool | None]:
        return [getattr(c, mode) for c in self.checks]

    def follow_all_instructions(self, mode: Mode) -> bool | None:
        """False if a check failed, None if none failed but one could not run, else True."""
        return _all(self.follow_instruction_list(mode))

    def to_dict(self) -> dict[str, Any]:
        """One output line: the reference's fields, for strict and loose."""
        modes: tuple[Mode, ...] = ("strict", "loose")
        return {
            "key": self.key,
            "row": self.row,
            "prompt": self.prompt,
            "response": self.response,
            "instruction_id_list": [c.instruction_id for c in self.checks],
            **{
                m: {
                    "follow_all_instructions": self.follow_all_instructions(m),
                    "follow_instruction_list": self.follow_instruction_list(m),
                }
                for m in modes
            },
            "not_run": [
                {"instruction_id": c.instruction_id, "note": c.note} for c in self.checks if c.note
            ],
        }


@dataclass(frozen=True)
class Accuracy:
    """``correct`` of ``total`` that ran; ``not_run`` were left out of ``total``."""

    correct: int = 0
    total: int = 0
    not_run: int = 0

    @property
    def value(self) -> float | None:
        return self.correct / self.total if self.total else None

    @classmethod
    def of(cls, outcomes: Iterable[bool | None]) -> Accuracy:
        outcomes = list(outcomes)
        correct, wrong = outcomes.count(True), outcomes.count(False)
        return cls(correct, correct + wrong, outcomes.count(None))

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.value,
            "correct": self.correct,
            "total": self.total,
            "not_run": self.not_run,
        }


@dataclass(frozen=True)
class Scores:
    """Strict and loose accuracy of one level or group."""

    strict: Accuracy
    loose: Accuracy

    def to_dict(self) -> dict[str, Any]:
        return {"strict": self.strict.to_dict(), "loose": self.loose.to_dict()}


@dataclass(frozen=True)
class IFEvalReport:
    """Prompt- and instruction-level accuracy, per instruction id and category, and the rows."""

    prompt_level: Scores
    instruction_level: Scores
    by_instruction: dict[str, Scores]
    by_category: dict[str, Scores]
    notes: tuple[str, ...] = ()
    results: tuple[RowResult, ...] = ()
    rejects: tuple[Reject, ...] = ()

    @property
    def n_prompts(self) -> int:
        return len(self.results)

    def to_dict(self) -> dict[str, Any]:
        """The summary (not the per-row results), JSON-ready."""
        return {
            "n_prompts": self.n_prompts,
            "n_rejected": len(self.rejects),
            "prompt_level": self.prompt_level.to_dict(),
            "instruction_level": self.instruction_level.to_dict(),
            "by_category": {k: v.to_dict() for k, v in self.by_category.items()},
            "by_instruction": {k: v.to_dict() for k, v in self.by_instruction.items()},
            "notes": list(self.notes),
            "rejects": [{"row": r.row, "field": r.field, "reason": r.reason} for r in self.rejects],
        }

    def format(self) -> str:
        """A plain-text table for the terminal."""
        lines = [f"IFEval: {self.n_prompts} prompts" + _rejected(len(self.rejects))]
        lines.append(f"{'':46} {'strict':>8} {'loose':>8} {'n':>6}")
        lines += [_line("prompt-level", self.prompt_level)]
        lines += [_line("instruction-level", self.instruction_level), ""]
        lines += [_line(k, v) for k, v in self.by_category.items()] + [""]
        lines += [_line(k, v) for k, v in self.by_instruction.items()]
        not_run = self.instruction_level.strict.not_run + self.instruction_level.loose.not_run
        if not_run:
            lines += [
                "",
                f"not run (left out of the scores): {self.instruction_level.strict.not_run}"
                f" strict and {self.instruction_level.loose.not_run} loose checks",
            ]
            lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)


def _rejected(n: int) -> str:
    return f" ({n} rejected rows skipped)" if n else ""


def _pct(accuracy: Accuracy) -> str:
    return "n/a" if accuracy.value is None else f"{accuracy.value:.4f}"


def _line(name: str, scores: Scores) -> str:
    n = scores.strict.total + scores.strict.not_run
    return f"{name:46} {_pct(scores.strict):>8} {_pct(scores.loose):>8} {n:>6}"


# ------------------------------------------------------------------------------------ scoring


def loose_variants(response: str) -> list[str]:
    """The 8 texts the loose check tries, in the reference's order."""
    lines = response.split("\n")
    cut = [
        "\n".join(lines[1:]).strip(),
        "\n".join(lines[:-1]).strip(),
        "\n".join(lines[1:-1]).strip(),
    ]
    return [response, response.replace("*", ""), *cut, *(t.replace("*", "") for t in cut)]


def _attempt(check: Callable[..., bool], text: str, kwargs: dict[str, Any]) -> bool | str:
    """The check's verdict on ``text`` (False when blank), or why it could not run."""
    if not text.strip():
        return False
    try:
        return bool(check(text, **kwargs))
    except checks.CannotRun as e:
        return str(e)


def _verdict(outcomes: Iterable[bool | str]) -> tuple[bool | None, str | None]:
    """Any True wins (and stops the search); else the first reason it could not run; else False."""
    reason = None
    for outcome in outcomes:
        if outcome is True:
            return True, None
        if isinstance(outcome, str) and reason is None:
            reason = outcome
    return (None, reason) if reason else (False, None)


def _check_one(instruction_id: str, kwargs: dict[str, Any], response: str) -> CheckResult:
    check = INSTRUCTIONS[instruction_id].check
    strict, strict_note = _verdict([_attempt(check, response, kwargs)])
    if strict:
        return CheckResult(instruction_id, True, True)
    loose, loose_note = _verdict(_attempt(check, v, kwargs) for v in loose_variants(response))
    return CheckResult(instruction_id, strict, loose, strict_note or loose_note)


def check_row(row: IFEvalRow) -> RowResult:
    """Run every instruction of the row, strict and loose."""
    results = tuple(
        _check_one(iid, kw, row.response)
        for iid, kw in zip(row.instruction_id_list, row.kwargs, strict=True)
    )
    return RowResult(row.key, row.prompt, row.response, results, row.row)


def followed_share(row: IFEvalRow, mode: Mode = "strict") -> float:
    """The share of ``row``'s instructions its response follows (checks that cannot run here
    are left out); 0.0 for a blank response or when no check could run. A graded score: the
    per-item metric of instruction optimization and the verifier reward of RL."""
    if not row.response.strip():
        return 0.0
    ran = [v for v in check_row(row).follow_instruction_list(mode) if v is not None]
    return sum(ran) / len(ran) if ran else 0.0


def _group(results: Iterable[RowResult], name: Callable[[str], str]) -> dict[str, Scores]:
    outcomes: dict[str, list[CheckResult]] = {}
    for result in results:
        for c in result.checks:
            outcomes.setdefault(name(c.instruction_id), []).append(c)
    return {
        k: Scores(Accuracy.of(c.strict for c in cs), Accuracy.of(c.loose for c in cs))
        for k, cs in sorted(outcomes.items())
    }


def summarize_ifeval(results: Iterable[RowResult], rejects: Iterable[Reject] = ()) -> IFEvalReport:
    """Aggregate row results into prompt-level, instruction-level and per-id accuracy."""
    results = tuple(results)
    every = [c for r in results for c in r.checks]
    return IFEvalReport(
        prompt_level=Scores(
            Accuracy.of(r.follow_all_instructions("strict") for r in results),
            Accuracy.of(r.follow_all_instructions("loose") for r in results),
        ),
        instruction_level=Scores(
            Accuracy.of(c.strict for c in every), Accuracy.of(c.loose for c in every)
        ),
        by_instruction=_group(results, lambda iid: iid),
        by_category=_group(results, lambda iid: iid.split(":")[0]),
        notes=tuple(dict.fromkeys(c.note for c in every if c.note)),
        results=results,
        rejects=tuple(rejects),
    )


def score_ifeval(rows: Iterable[IFEvalRow | Mapping[str, Any]]) -> IFEvalReport:
    """Check and aggregate rows: :class:`IFEvalRow` from :func:`load_ifeval`, or plain dicts,
    which are validated first (their row number is their position, from 1)."""
    parsed = [
        r if isinstance(r, IFEvalRow) else parse_ifeval_row(r, row=i)
        for i, r in enumerate(rows, start=1)
    ]
    return summarize_ifeval(check_row(r) for r in parsed)


def evaluate_ifeval_file(
    in_path: str | Path,
    out_path: str | Path,
    skip_invalid: bool = False,
    *,
    system: str | None = None,
) -> IFEvalReport:
    """Score a responses file and write, beside one result line per row (see
    RowResult.to_dict) at ``out_path``: its results JSON (:func:`ifeval_results_path`, the
    schema ``eval report`` reads; the system is named ``system`` or the input's stem) and,
    with ``skip_invalid``, the bad rows with their reasons (:func:`ifeval_rejects_path`)."""
    rows, rejects = load_ifeval(in_path, skip_invalid=skip_invalid)
    report = summarize_ifeval((check_row(r) for r in rows), rejects)
    write_jsonl((r.to_dict() for r in report.results), out_path)
    if skip_invalid:
        save_rejects(rejects, ifeval_rejects_path(out_path))
    name = system or Path(in_path).stem
    save_eval_results(ifeval_results(report, name), ifeval_results_path(out_path))
    return report


def ifeval_results_path(out_path: str | Path) -> Path:
    """``scored.jsonl`` -> ``scored.results.json``."""
    return beside(out_path, ".results.json")


def ifeval_rejects_path(out_path: str | Path) -> Path:
    """``scored.jsonl`` -> ``scored.rejects.jsonl``."""
    return beside(out_path, ".rejects.jsonl")


def ifeval_results(report: IFEvalReport, system: str, title: str | None = None) -> EvalResults:
    """The report as :class:`~instructkit.evaluate.results.EvalResults` (one system; task
    "ifeval" with prompt-level strict accuracy per prompt; the IFEval section in full)."""
    scores = [float(bool(r.follow_all_instructions("strict"))) for r in report.results]
    per_item = [
        {"id": str(r.key if r.key is not None else r.row), "task": "ifeval", "scores": {system: x}}
        for r, x in zip(report.results, scores, strict=True)
    ]
    mean = sum(scores) / len(scores) if scores else None
    accuracies = {
        "prompt_strict": report.prompt_level.strict.value,
        "prompt_loose": report.prompt_level.loose.value,
        "instruction_strict": report.instruction_level.strict.value,
        "instruction_loose": report.instruction_level.loose.value,
    }
    row = {
        "metric": "prompt_strict",
        "n": len(per_item),
        "scores": {system: mean},
        "metrics": {k: {system: v} for k, v in accuracies.items()},
    }
    return EvalResults.model_validate(
        {
            "title": title or f"IFEval: {system}",
            "created": now(),
            "systems": [system],
            "tasks": {"ifeval": row},
            "per_item": per_item,
            "ifeval": {system: report.to_dict()},
        }
    )


# ---------------------------------------------------------------------------- loading, checking

_SKIP_HINT = "pass skip_invalid=True (--skip-invalid) to set bad rows aside."


@dataclass(frozen=True)
class _At:
    """Where a row came from, so that errors name the file, row, key and field."""

    path: object = None
    row: int | None = None
    key: object = None

    def error(
        self, message: str, name: str | None = None, fix: str | None = None
    ) -> DataFormatError:
        where = f"key {self.key!r}: " if self.key is not None else ""
        return DataFormatError(where + message, path=self.path, row=self.row, field=name, fix=fix)


def _describe(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    text = text if len(text) <= 40 else text[:37] + "..."
    if value is None:
        return "null"
    kinds = {bool: "a boolean", str: "a string", list: "a list", dict: "an object"}
    kind = kinds.get(type(value), "a number" if isinstance(value, int | float) else "a value")
    return f"{kind} ({text})"


def _parse_value(kind: Kind, value: object) -> Any:
    """The kwarg as the check needs it; ValueError(what is wrong) otherwise."""
    if kind in ("count", "position"):
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # 3.0: pandas writes nullable integer columns as floats
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected a whole number, got {_describe(value)}.")
        low = 0 if kind == "count" else 1
        if value < low:
            raise ValueError(f"expected a number >= {low}, got {value}.")
        return value
    if kind == "relation":
        if value not in checks.RELATIONS:
            raise ValueError(f"expected one of {checks.RELATIONS}, got {_describe(value)}.")
        return value
    if kind == "words":
        if not (isinstance(value, list) and value and all(_is_text(w) for w in value)):
            raise ValueError(f"expected a non-empty list of strings, got {_describe(value)}.")
        return list(value)
    if not _is_text(value) or (kind == "letter" and len(str(value)) != 1):
        wanted = "a single letter" if kind == "letter" else "a non-empty string"
        raise ValueError(f"expected {wanted}, got {_describe(value)}.")
    return value


def _is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _parse_kwargs(instruction: Instruction, raw: object, name: str, at: _At) -> dict[str, Any]:
    """The kwargs instruction ``instruction`` uses. Null values are dropped first: the public
    files carry every kwarg name of every instruction, null where unused."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise at.error(f"expected an object, got {_describe(raw)}.", name, "use {} or an object.")
    given = {k: v for k, v in raw.items() if v is not None}
    params = instruction.params
    accepted = ", ".join(params) or "none"
    for extra in sorted(given.keys() - params.keys()):
        msg = f"'{instruction.id}' takes no kwarg '{extra}' (it takes: {accepted})."
        raise at.error(msg, f"{name}.{extra}", f"drop '{extra}' or set it to null.")
    out = {}
    for param, kind in params.items():
        if param not in given:
            # The reference would draw a random value here; a score must not depend on chance.
            msg = f"'{instruction.id}' needs kwarg '{param}', which is missing or null."
            raise at.error(msg, f"{name}.{param}", f"set '{param}' as in the IFEval input file.")
        try:
            out[param] = _parse_value(kind, given[param])
        except ValueError as e:
            raise at.error(str(e), f"{name}.{param}", f"give '{param}' {_FIX[kind]}.") from e
    if out.get("nth_paragraph", 0) > out.get("num_paragraphs", 1 << 62):
        msg = f"nth_paragraph {out['nth_paragraph']} > num_paragraphs {out['num_paragraphs']}."
        raise at.error(msg, f"{name}.nth_paragraph", "use 1 <= nth_paragraph <= num_paragraphs.")
    return out


_FIX: dict[Kind, str] = {
    "count": "as a whole number >= 0, such as 3",
    "position": "as a whole number >= 1, such as 2",
    "relation": 'as "less than" or "at least"',
    "text": "as a non-empty string",
    "letter": 'as one letter, such as "a"',
    "words": 'as a list of strings, such as ["apple", "pear"]',
}


def _instruction(value: object, name: str, at: _At) -> Instruction:
    if isinstance(value, str) and value in INSTRUCTIONS:
        return INSTRUCTIONS[value]
    guess = difflib.get_close_matches(str(value), list(INSTRUCTIONS), n=1, cutoff=0.0)
    nearest = guess[0] if guess else next(iter(INSTRUCTIONS))
    msg = f"unknown instruction id {_describe(value)}; the nearest valid id is '{nearest}'."
    raise at.error(msg, name, f"use one of the {len(INSTRUCTIONS)} IFEval ids, e.g. '{nearest}'.")


def _need_text(row: dict[str, Any], name: str, at: _At, fix: str) -> str:
    if name not in row:
        raise at.error(f"missing '{name}' (the row has {', '.join(row) or 'no keys'}).", name, fix)
    if not isinstance(row[name], str):
        raise at.error(f"expected a string, got {_describe(row[name])}.", name, fix)
    text: str = row[name]
    return text


def _need_list(row: dict[str, Any], name: str, at: _At, fix: str) -> list[Any]:
    value = row.get(name)
    if not isinstance(value, list) or not value:
        raise at.error(f"expected a non-empty list, got {_describe(value)}.", name, fix)
    return value


def parse_ifeval_row(
    value: object, *, path: str | Path | None = None, row: int | None = None
) -> IFEvalRow:
    """Validate one input row; DataFormatError names the file, row, key and field."""
    at = _At(path, row)
    if isinstance(value, BadLine):
        raise at.error(f"not valid JSON: {value.message}.", fix="repair the line.")
    if not isinstance(value, dict):
        raise at.error(
            f"expected a JSON object, got {_describe(value)}.", fix="one object per row."
        )
    key = value.get("key")
    if isinstance(key, bool) or not isinstance(key, int | str | None):
        raise at.error(f"expected a number or string, got {_describe(key)}.", "key", "fix the key.")
    at = _At(path, row, key)
    prompt = _need_text(value, "prompt", at, "keep the IFEval 'prompt' in every row.")
    response = _need_text(
        value, "response", at, "generate a response for every prompt and store it as 'response'."
    )
    ids = _need_list(value, "instruction_id_list", at, "keep IFEval's 'instruction_id_list'.")
    kwargs = value.get("kwargs")
    if not isinstance(kwargs, list) or len(kwargs) != len(ids):
        msg = (
            f"expected a list of {len(ids)} objects (one per instruction), got {_describe(kwargs)}."
        )
        raise at.error(msg, "kwargs", "give one kwargs object per instruction id, {} if none.")
    instructions = [_instruction(iid, f"instruction_id_list[{i}]", at) for i, iid in enumerate(ids)]
    parsed = tuple(
        _parse_kwargs(ins, kw, f"kwargs[{i}]", at)
        for i, (ins, kw) in enumerate(zip(instructions, kwargs, strict=True))
    )
    return IFEvalRow(key, prompt, response, tuple(i.id for i in instructions), parsed, row)


def load_ifeval(
    path: str | Path, skip_invalid: bool = False
) -> tuple[list[IFEvalRow], list[Reject]]:
    """Read and validate an IFEval responses file (.jsonl or .json).

    Without ``skip_invalid`` the first bad row raises DataFormatError; with it, bad rows come
    back as :class:`~instructkit.data.formats.Reject` entries (row, field, reason, raw row).
    """
    rows: list[IFEvalRow] = []
    rejects: list[Reject] = []
    for row_no, value in read_source_rows(path):
        try:
            rows.append(parse_ifeval_row(value, path=path, row=row_no))
        except DataFormatError as e:
            if not skip_invalid:
                fix = f"{e.fix.rstrip('. ')}, or {_SKIP_HINT}" if e.fix else _SKIP_HINT
                raise DataFormatError(
                    e.reason, path=path, row=row_no, field=e.field, fix=fix
                ) from e
            raw = value.text if isinstance(value, BadLine) else value
            rejects.append(Reject(str(path), row_no, e.field, e.reason + f" Fix: {e.fix}", raw))
    if not rows:
        raise DataFormatError("no row is valid.", path=path, fix="see the rejects and repair them.")
    return rows, rejects
