"""LLM as a judge: single-answer grading (1-10) and position-swapped pairwise comparison.

Following MT-Bench (Zheng et al. 2023, "Judging LLM-as-a-Judge with MT-Bench and Chatbot
Arena"), any :class:`~instructkit.lm.base.LM` can grade one answer on a 1-10 scale, optionally
against a reference answer, or compare two answers to the same question. Usage::

    result = grade(judge_lm, [("What is 2+2?", "4"), ...], reference=["4", ...])
    result.mean, result.scores, result.unparseable       # scores: float, or None if unparseable

    pair = compare(judge_lm, answers_a, answers_b)       # lists of (question, answer)
    pair.wins, pair.losses, pair.ties, pair.agreement    # wins/losses from A's side

A pairwise item is judged twice, once with A shown first and once with B shown first, so that
a judge's preference for a position cancels (MT-Bench's "swap positions"): the orders must agree
for a win; if they disagree the item is a tie, and ``agreement`` is the share of items whose two
orders agree. A judgment that cannot be parsed (or a grade outside 1-10) is never dropped: its
score or outcome is None, it is counted in ``unparseable``, and the raw judge text is kept.

Requests are deterministic (temperature 0). With ``journal=path`` each judge answer is appended
to a JSONL :class:`~instructkit.jobs.Job` keyed by a hash of the judge model, prompt
and parameters, so a re-run (after a crash or with more items) only asks what is missing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from instructkit.jobs import Job, fingerprint
from instructkit.lm.base import LM, ChatRequest, request_key

__all__ = [
    "JUDGE_SYSTEM",
    "GRADE_PROMPT",
    "GRADE_PROMPT_WITH_REFERENCE",
    "PAIRWISE_PROMPT",
    "PAIRWISE_PROMPT_WITH_REFERENCE",
    "JudgeItem",
    "Grade",
    "JudgeResult",
    "PairwiseOutcome",
    "PairwiseResult",
    "parse_rating",
    "parse_verdict",
    "grade",
    "compare",
]

# --- prompts (data) --------------------------------------------------------------------------

JUDGE_SYSTEM = "You are a fair and careful evaluator of answers written by AI assistants."

_GRADE_TASK = (
    "Assess how well the assistant's answer below serves the user's question. Consider whether "
    "it is helpful, relevant, correct, sufficiently detailed and clearly written.{ref_hint} "
    "First explain your assessment in a few sentences, staying objective. Then give a score "
    'from 1 (very poor) to 10 (excellent) on its own line, exactly in the form "Rating: [[N]]", '
    'for example "Rating: [[6]]".\n\n'
)
GRADE_PROMPT = (
    _GRADE_TASK.format(ref_hint="")
    + "[Question]\n{question}\n\n[The assistant's answer]\n{answer}\n[End of answer]"
)
GRADE_PROMPT_WITH_REFERENCE = (
    _GRADE_TASK.format(
        ref_hint=" A reference answer is given: compare the assistant's answer with it to find "
        "mistakes, since correctness matters most."
    )
    + "[Question]\n{question}\n\n[Reference answer]\n{reference}\n[End of reference answer]\n\n"
    "[The assistant's answer]\n{answer}\n[End of answer]"
)

_PAIRWISE_TASK = (
    "Two AI assistants answered the same user question. Decide which answer serves the user "
    "better, considering helpfulness, relevance, correctness, depth and clarity.{ref_hint} The "
    "order in which the answers are shown, their length and the assistants' names must not "
    "influence you. Explain your comparison briefly, then end with your verdict on its own "
    'line: "[[A]]" if assistant A\'s answer is better, "[[B]]" if assistant B\'s answer is '
    'better, or "[[C]]" if they are equally good.\n\n'
)
_PAIR_ANSWERS = (
    "[Assistant A's answer]\n{answer_1}\n[End of assistant A's answer]\n\n"
    "[Assistant B's answer]\n{answer_2}\n[End of assistant B's answer]"
)
PAIRWISE_PROMPT = _PAIRWISE_TASK.format(ref_hint="") + "[Question]\n{question}\n\n" + _PAIR_ANSWERS
PAIRWISE_PROMPT_WITH_REFERENCE = (
    _PAIRWISE_TASK.format(
        ref_hint=" A reference answer is given: check both answers against it for mistakes."
    )
    + "[Question]\n{question}\n\n[Reference answer]\n{reference}\n[End of reference answer]\n\n"
    + _PAIR_ANSWERS
)

# --- parsing ---------------------------------------------------------------------------------

_NUMBER = r"(\d+(?:\.\d+)?)"
# Tried in order; the first pattern that occurs decides, and its last occurrence wins (a judge
# may quote the requested format before giving its own rating).
_RATING_PATTERNS = (
    re.compile(r"\[\[\s*" + _NUMBER + r"\s*\]\]"),
    re.compile(r"rating[\s*:=]*\[?\s*" + _NUMBER, re.IGNORECASE),  # also "**Rating:** 7"
    re.compile(r"(?<![\d.])" + _NUMBER + r"\s*/\s*10(?!\d)"),
)
_VERDICT_PATTERNS = (
    re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE),
    # letters are case-sensitive here, so that "verdict: a tie" does not read as "A"
    re.compile(
        r"(?i:verdict)[\s*:=]*(?i:is[\s*:=]*)?(?i:assistant\s+|a\s+)?\[?\s*(A|B|C|(?i:tie))\b"
    ),
)


def parse_rating(text: str) -> tuple[float | None, str | None]:
    """(score, None) for a 1-10 rating in ``text``; (None, reason) when there is none or it is
    out of range. Accepts "Rating: [[7]]", "[[7.5]]", "Rating: 7", "7/10"."""
    for pattern in _RATING_PATTERNS:
        found = pattern.findall(text)
        if found:
            score = float(found[-1])
            if not 1.0 <= score <= 10.0:
                return None, f"rating {found[-1]} is outside 1-10"
            return score, None
    return None, "no rating found"


def parse_verdict(text: str) -> str | None:
    """The verdict "A", "B" or "C" (tie) in "[[A]]" (or "Verdict: A") form; None if absent."""
    for pattern in _VERDICT_PATTERNS:
        found = pattern.findall(text)
        if found:
            verdict = found[-1].upper()
            return "C" if verdict == "TIE" else verdict
    return None


# --- results ---------------------------------------------------------------------------------


class JudgeItem(NamedTuple):
    """A question and the answer to judge; a plain ``(question, answer)`` tuple works too."""

    question: str
    answer: str


@dataclass(frozen=True)
class Grade:
    """One graded answer: ``score`` in 1-10, or None and ``error`` says why; ``raw`` judge text."""

    score: float | None
    raw: str
    error: str | None = None


@dataclass
class JudgeResult:
    """Single-answer grades of one judge, in item order."""

    judge: str
    grades: list[Grade]

    @property
    def scores(self) -> list[float | None]:
        return [g.score for g in self.grades]

    @property
    def parsed(self) -> int:
        return sum(g.score is not None for g in self.grades)

    @property
    def unparseable(self) -> int:
        return len(self.grades) - self.parsed

    @property
    def mean(self) -> float | None:
        """Mean over parsed grades (None if there is none); see ``unparseable`` for the rest."""
        scores = [s for s in self.scores if s is not None]
        return sum(scores) / len(scores) if scores else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "judge": self.judge,
            "n": len(self.grades),
            "mean": self.mean,
            "parsed": self.parsed,
            "unparseable": self.unparseable,
            "items": [{"score": g.score, "error": g.error, "raw": g.raw} for g in self.grades],
        }


@dataclass(frozen=True)
class PairwiseOutcome:
    """One item judged in both orders. ``outcome``: +1 A better, -1 B better, 0 tie, None if
    either order was unparseable. Verdicts are as the judge gave them ("A" = first position):
    ``verdict_ab`` with A shown first, ``verdict_ba`` with B shown first."""

    outcome: int | None
    verdict_ab: str | None
    verdict_ba: str | None
    raw_ab: str
    raw_ba: str

    @property
    def agree(self) -> bool | None:
        """Whether both orders name the same winner (or both a tie); None if unparseable."""
        if self.verdict_ab is None or self.verdict_ba is None:
            return None
        return _side(self.verdict_ab, swapped=False) == _side(self.verdict_ba, swapped=True)


@dataclass
class PairwiseResult:
    """Pairwise comparison of systems A and B by one judge; counts are from A's side."""

    judge: str
    outcomes: list[PairwiseOutcome]

    @property
    def per_item(self) -> list[int | None]:
        return [o.outcome for o in self.outcomes]

    def _count(self, value: int | None) -> int:
        return sum(o.outcome == value for o in self.outcomes)

    @property
    def wins(self) -> int:
        return self._count(1)

    @property
    def losses(self) -> int:
        return self._count(-1)

    @property
    def ties(self) -> int:
        """Both orders said tie, or the orders disagreed (see ``inconsistent``)."""
        return self._count(0)

    @property
    def unparseable(self) -> int:
        return self._count(None)

    @property
    def inconsistent(self) -> int:
        """Items whose two orders disagreed (counted as ties)."""
        return sum(o.agree is False for o in self.outcomes)

    @property
    def agreement(self) -> float | None:
        """Judge agreement: share of parsed items whose two orders gave the same result."""
        agrees = [o.agree for o in self.outcomes if o.agree is not None]
        return sum(agrees) / len(agrees) if agrees else None

    @property
    def win_rate(self) -> float | None:
        """(wins + ties / 2) / parsed items: A's win rate, ties counting half."""
        n = len(self.outcomes) - self.unparseable
        return (self.wins + 0.5 * self.ties) / n if n else None

    def to_dict(self) -> dict[str, Any]:
        keys = ("wins", "losses", "ties", "unparseable", "inconsistent", "agreement", "win_rate")
        items = [
            {
                "outcome": o.outcome,
                "verdict_ab": o.verdict_ab,
                "verdict_ba": o.verdict_ba,
                "raw_ab": o.raw_ab,
                "raw_ba": o.raw_ba,
            }
            for o in self.outcomes
        ]
        counts = {k: getattr(self, k) for k in keys}
        return {"judge": self.judge, "n": len(self.outcomes), **counts, "items": items}


def _side(verdict: str, *, swapped: bool) -> int:
    """A positional verdict as +1 (system A better), -1 (B better) or 0 (tie)."""
    value = {"A": 1, "B": -1, "C": 0}[verdict]
    return -value if swapped else value


def _combine(verdict_ab: str | None, verdict_ba: str | None) -> int | None:
    if verdict_ab is None or verdict_ba is None:
        return None
    first, second = _side(verdict_ab, swapped=False), _side(verdict_ba, swapped=True)
    return first if first == second else 0


# --- asking the judge ------------------------------------------------------------------------


def _request(prompt: str, max_tokens: int) -> ChatRequest:
    return ChatRequest(
        (("system", JUDGE_SYSTEM), ("user", prompt)), temperature=0.0, max_tokens=max_tokens
    )


def _ask(
    lm: LM,
    requests: Sequence[ChatRequest],
    *,
    journal: str | Path | None,
    batch_size: int,
    progress: bool,
) -> list[str]:
    """Judge texts for ``requests`` in order; journaled answers reused, duplicates asked once."""
    keys = [request_key(lm.name, r) for r in requests]
    fp = fingerprint({"kind": "judge"})  # entries are keyed by model, prompt and parameters
    log = Job(journal, fp) if journal is not None else None
    done = {r["key"]: r["text"] for r in (log.records if log else []) if "key" in r}
    todo: dict[str, ChatRequest] = {}
    for key, request in zip(keys, requests, strict=True):
        if key not in done:
            todo.setdefault(key, request)
    pending = list(todo.items())
    for start in range(0, len(pending), batch_size):
        chunk = pending[start : start + batch_size]
        completions = lm.complete([r for _, r in chunk], progress=progress)
        rows = [{"key": k, "text": c.text} for (k, _), c in zip(chunk, completions, strict=True)]
        if log is not None:
            log.append(rows)  # durable before the next batch: a crash loses at most this one
        done.update((row["key"], row["text"]) for row in rows)
    return [done[k] for k in keys]


def _pairs(items: Sequence[tuple[str, str]], name: str) -> list[tuple[str, str]]:
    out = []
    for i, item in enumerate(items):
        if len(item) != 2:
            raise ValueError(f"{name}[{i}] is not a (question, answer) pair: {item!r}")
        out.append((str(item[0]), str(item[1])))
    return out


def _references(reference: Sequence[str | None] | None, n: int) -> list[str | None]:
    if reference is None:
        return [None] * n
    if len(reference) != n:
        raise ValueError(f"{n} items but {len(reference)} references: give one per item")
    return list(reference)


def grade(
    lm: LM,
    items: Sequence[tuple[str, str]],
    reference: Sequence[str | None] | None = None,
    *,
    journal: str | Path | None = None,
    max_tokens: int = 1024,
    batch_size: int = 16,
    progress: bool = False,
) -> JudgeResult:
    """Grade each (question, answer) from 1 to 10, against ``reference[i]`` where one is given."""
    pairs = _pairs(items, "items")
    prompts = [
        GRADE_PROMPT.format(question=q, answer=a)
        if ref is None
        else GRADE_PROMPT_WITH_REFERENCE.format(question=q, answer=a, reference=ref)
        for (q, a), ref in zip(pairs, _references(reference, len(pairs)), strict=True)
    ]
    requests = [_request(p, max_tokens) for p in prompts]
    texts = _ask(lm, requests, journal=journal, batch_size=batch_size, progress=progress)
    return JudgeResult(lm.name, [_grade(t) for t in texts])


def _grade(text: str) -> Grade:
    score, error = parse_rating(text)
    return Grade(score, text, error)


def _pair_prompt(question: str, first: str, second: str, reference: str | None) -> str:
    if reference is None:
        return PAIRWISE_PROMPT.format(question=question, answer_1=first, answer_2=second)
    return PAIRWISE_PROMPT_WITH_REFERENCE.format(
        question=question, answer_1=first, answer_2=second, reference=reference
    )


def compare(
    lm: LM,
    items_a: Sequence[tuple[str, str]],
    items_b: Sequence[tuple[str, str]],
    reference: Sequence[str | None] | None = None,
    *,
    journal: str | Path | None = None,
    max_tokens: int = 1024,
    batch_size: int = 16,
    progress: bool = False,
) -> PairwiseResult:
    """Compare A's and B's answers to the same questions, each item judged in both orders."""
    a, b = _pairs(items_a, "items_a"), _pairs(items_b, "items_b")
    if len(a) != len(b):
        raise ValueError(f"{len(a)} answers from A but {len(b)} from B: give one each per item")
    for i, ((qa, _), (qb, _)) in enumerate(zip(a, b, strict=True)):
        if qa != qb:
            raise ValueError(f"item {i}: A and B answer different questions ({qa!r} vs {qb!r})")
    refs = _references(reference, len(a))
    prompts = []
    for (q, ans_a), (_, ans_b), ref in zip(a, b, refs, strict=True):
        prompts += [_pair_prompt(q, ans_a, ans_b, ref), _pair_prompt(q, ans_b, ans_a, ref)]
    requests = [_request(p, max_tokens) for p in prompts]
    texts = _ask(lm, requests, journal=journal, batch_size=batch_size, progress=progress)
    outcomes = []
    for raw_ab, raw_ba in zip(texts[0::2], texts[1::2], strict=True):
        v_ab, v_ba = parse_verdict(raw_ab), parse_verdict(raw_ba)
        outcomes.append(PairwiseOutcome(_combine(v_ab, v_ba), v_ab, v_ba, raw_ab, raw_ba))
    return PairwiseResult(lm.name, outcomes)
