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
score or outcome is None, it is counted in ``unparseable`` and named in ``unparseable_ids``
(``ids=`` names the items; default: their positions), its raw judge text is kept, and a warning
is logged with the first ten ids. :func:`parse_score` is the one score parser of the project
(any scale: the judge's 1-10, the data-quality judge's 1-5).

Scoring. ``scoring="text"`` (default) parses the verdict the judge writes. ``"probabilities"``
follows G-Eval (Liu et al. 2023, "G-Eval: NLG Evaluation using GPT-4 with Better Human
Alignment"): the judge's answer is started with "Rating: [[" and the score is the expected
grade, sum(p_i * i) / sum(p_i) over the exact probabilities of "1".."10" (each a full token
sequence, so "10" counts right however it is tokenized); pairwise, the verdict is the likeliest
of "A", "B", "C" after "[[". It needs an LM with the
:class:`~instructkit.lm.base.ScoresChoices` capability (the local backend, or a cache over it)
and always yields a verdict, even from a 135M model that cannot follow the output format.

Requests are deterministic (temperature 0) and a progress bar counts them (``progress=False``
hides it). With ``journal=`` (a path, or a :class:`~instructkit.jobs.Job` whose journal named
"judge", else its main journal, takes the rows) each batch of answers is durable before the next
is asked, keyed by a hash of the judge model, prompt and parameters: a re-run (after a crash, a
timeout, Ctrl+C, or with more items) asks only what is missing, and answers that arrived from a
batch that failed part-way (an exception's ``completed``, see
:class:`~instructkit.lm.openai.OpenAILM`) are kept too.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from tqdm.auto import tqdm

from instructkit.errors import ConfigError, LMError
from instructkit.jobs import Job, fingerprint
from instructkit.lm.base import (
    LM,
    ChatRequest,
    Completion,
    choice_key,
    request_key,
    require_choice_scores,
)

__all__ = [
    "JUDGE_SYSTEM",
    "GRADE_PROMPT",
    "GRADE_PROMPT_WITH_REFERENCE",
    "PAIRWISE_PROMPT",
    "PAIRWISE_PROMPT_WITH_REFERENCE",
    "GRADE_PREFIX",
    "GRADES",
    "VERDICT_PREFIX",
    "VERDICTS",
    "Scoring",
    "JudgeItem",
    "ParsedScore",
    "Grade",
    "JudgeResult",
    "PairwiseOutcome",
    "PairwiseResult",
    "parse_score",
    "parse_verdict",
    "choice_probabilities",
    "expected_grade",
    "grade",
    "compare",
]

log = logging.getLogger(__name__)

Scoring = Literal["text", "probabilities"]
_MAIN, _JUDGE = "out", "judge"  # Job journal names: its main one, or one named "judge"

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
# Probability scoring: the answer starts with the prefix, the choices are what may follow.
GRADE_PREFIX, GRADES = "Rating: [[", tuple(str(i) for i in range(1, 11))
VERDICT_PREFIX, VERDICTS = "[[", ("A", "B", "C")
PAIRWISE_PROMPT_WITH_REFERENCE = (
    _PAIRWISE_TASK.format(
        ref_hint=" A reference answer is given: check both answers against it for mistakes."
    )
    + "[Question]\n{question}\n\n[Reference answer]\n{reference}\n[End of reference answer]\n\n"
    + _PAIR_ANSWERS
)

# --- parsing ---------------------------------------------------------------------------------

_NUMBER = r"(\d+(?:\.\d+)?)"
_VERDICT_PATTERNS = (
    re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE),
    # letters are case-sensitive here, so that "verdict: a tie" does not read as "A"
    re.compile(
        r"(?i:verdict)[\s*:=]*(?i:is[\s*:=]*)?(?i:assistant\s+|a\s+)?\[?\s*(A|B|C|(?i:tie))\b"
    ),
)


class ParsedScore(NamedTuple):
    """A score read from a judgment: ``score`` on the scale, or None and ``error`` says why."""

    score: float | None
    error: str | None


@functools.lru_cache(maxsize=8)
def _score_patterns(top: int) -> tuple[re.Pattern[str], ...]:
    of_top = rf"\s*(?:/\s*{top}|out\s+of\s+{top})"
    return (
        re.compile(r"\[\[\s*" + _NUMBER + r"\s*\]\]"),  # "[[7]]", "Rating: [[7.5]]"
        re.compile(r"\b(?:rating|score)\b[\s*:=]*\[?\s*" + _NUMBER, re.IGNORECASE),
        re.compile(r"^\W*" + _NUMBER + rf"(?:{of_top})?\W*$", re.MULTILINE | re.IGNORECASE),
        re.compile(r"(?<![\d.])" + _NUMBER + of_top + r"(?!\d)", re.IGNORECASE),
    )


def parse_score(text: str, scale: tuple[int, int] = (1, 10)) -> ParsedScore:
    """The score on ``scale`` (inclusive) in a judge's text, the one parser of every judge.

    Tried in order, the first form found decides: "[[7]]" (MT-Bench's "Rating: [[7]]"); a
    keyed "Rating: 7" / "Score: 4" / "**Score:** 4.5/5"; a line holding only a number ("4",
    "**5**", "4/5"); a number "out of" the top ("7/10", "4 out of 5") when the text gives only
    one such value. For the first two the last occurrence wins (a judge may quote the requested
    format, or revise itself, before its own score). A value outside the scale is an error,
    never clipped.
    """
    low, top = scale
    brackets, keyed, alone, out_of = _score_patterns(top)
    found: str | None = None
    for pattern in (brackets, keyed):
        if hits := pattern.findall(text):
            found = hits[-1]
            break
    else:
        if match := alone.search(text):
            found = match.group(1)
        elif hits := out_of.findall(text):
            if len(set(map(float, hits))) > 1:
                return ParsedScore(None, f"several scores ({', '.join(hits)}) and none marked")
            found = hits[0]
    if found is None:
        return ParsedScore(None, "no score found")
    if not low <= float(found) <= top:
        return ParsedScore(None, f"score {found} is outside {low}-{top}")
    return ParsedScore(float(found), None)


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
    """One graded answer: ``score`` in 1-10, or None and ``error`` says why; ``raw`` judge text.

    With probability scoring, ``probabilities`` holds p(grade) for "1".."10" (normalized over
    them) and ``score`` is their expected value.
    """

    score: float | None
    raw: str
    error: str | None = None
    id: str = ""
    probabilities: dict[str, float] | None = None


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
    def unparseable_ids(self) -> list[str]:
        return [g.id for g in self.grades if g.score is None]

    @property
    def mean(self) -> float | None:
        """Mean over parsed grades (None if there is none); see ``unparseable`` for the rest."""
        scores = [s for s in self.scores if s is not None]
        return sum(scores) / len(scores) if scores else None

    def to_dict(self) -> dict[str, Any]:
        items = [
            {"id": g.id, "score": g.score, "error": g.error, "raw": g.raw}
            | ({"probabilities": g.probabilities} if g.probabilities is not None else {})
            for g in self.grades
        ]
        return {
            "judge": self.judge,
            "n": len(self.grades),
            "mean": self.mean,
            "parsed": self.parsed,
            "unparseable": self.unparseable,
            "unparseable_ids": self.unparseable_ids,
            "items": items,
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
    id: str = ""

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
    def unparseable_ids(self) -> list[str]:
        return [o.id for o in self.outcomes if o.outcome is None]

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
        keys = ("wins", "losses", "ties", "unparseable", "unparseable_ids", "inconsistent")
        items = [
            {
                "id": o.id,
                "outcome": o.outcome,
                "verdict_ab": o.verdict_ab,
                "verdict_ba": o.verdict_ba,
                "raw_ab": o.raw_ab,
                "raw_ba": o.raw_ba,
            }
            for o in self.outcomes
        ]
        counts = {k: getattr(self, k) for k in (*keys, "agreement", "win_rate")}
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


def _warn_unparseable(judge: str, ids: list[str], n: int) -> None:
    if ids:
        shown = ", ".join(ids[:10]) + (f", ... ({len(ids) - 10} more)" if len(ids) > 10 else "")
        log.warning(
            "judge %s: %d of %d verdicts could not be parsed (ids: %s); their raw text is kept "
            'in the result. A small judge model may do better with scoring="probabilities".',
            judge,
            len(ids),
            n,
            shown,
        )


# --- probability scoring (G-Eval) ------------------------------------------------------------


def choice_probabilities(logprobs: dict[str, float]) -> dict[str, float]:
    """Log-probabilities of the choices, normalized over them: p_i / sum(p_j)."""
    top = max(logprobs.values())
    weights = {c: math.exp(lp - top) for c, lp in logprobs.items()}  # no underflow to 0/0
    total = sum(weights.values())
    return {c: w / total for c, w in weights.items()}


def expected_grade(logprobs: dict[str, float]) -> tuple[float, dict[str, float]]:
    """G-Eval's score sum(p_i * i) / sum(p_i) over numeric choices, and the normalized p_i."""
    probs = choice_probabilities(logprobs)
    return sum(float(c) * p for c, p in probs.items()), probs


def _describe(probs: dict[str, float]) -> str:
    return " ".join(f"p({c})={p:.3f}" for c, p in probs.items())


# --- asking the judge ------------------------------------------------------------------------


def _request(prompt: str, max_tokens: int) -> ChatRequest:
    return ChatRequest(
        (("system", JUDGE_SYSTEM), ("user", prompt)), temperature=0.0, max_tokens=max_tokens
    )


def _open_journal(journal: str | Path | Job | None) -> tuple[Job | None, str]:
    """The job and the name of its journal that holds judge answers."""
    if journal is None:
        return None, _MAIN
    if isinstance(journal, Job):
        return journal, _JUDGE if _JUDGE in journal.paths else _MAIN
    return Job(journal, fingerprint({"kind": "judge"})), _MAIN  # rows are keyed by model+prompt


def _payload(answer: Completion | dict[str, float]) -> dict[str, Any]:
    if isinstance(answer, Completion):
        return {"text": answer.text}
    return {"logprobs": answer}


def _answers(
    ask: Callable[[list[ChatRequest]], Sequence[Completion | dict[str, float]]],
    requests: Sequence[ChatRequest],
    keys: list[str],
    *,
    journal: str | Path | Job | None,
    batch_size: int,
    progress: str | None,
) -> list[dict[str, Any]]:
    """The judge's answer row per request, in order: journaled rows are reused, identical
    requests asked once, and each batch is durable before the next is asked; on a failure,
    the answers that did arrive (an exception's ``completed``, see OpenAILM) are kept too."""
    job, name = _open_journal(journal)
    done = {r["key"]: r for r in (job.records_of(name) if job else []) if "key" in r}
    todo: dict[str, ChatRequest] = {}
    for key, request in zip(keys, requests, strict=True):
        if key not in done:
            todo.setdefault(key, request)
    pending, unique = list(todo.items()), len(set(keys))

    def record(answered: list[tuple[str, Completion | dict[str, float]]]) -> None:
        rows = [{"key": k, **_payload(a)} for k, a in answered]
        if job is not None:
            job.append(rows, to=name)
        done.update((row["key"], row) for row in rows)

    disable = progress is None
    with tqdm(total=unique, initial=unique - len(pending), desc=progress, disable=disable) as bar:
        for start in range(0, len(pending), batch_size):
            chunk = pending[start : start + batch_size]
            try:
                answers = ask([r for _, r in chunk])
            except BaseException as e:  # KeyboardInterrupt too: keep what did arrive
                partial = getattr(e, "completed", None) or {}
                record([(chunk[i][0], a) for i, a in sorted(partial.items())])
                raise
            if len(answers) != len(chunk):
                raise LMError(f"the judge answered {len(answers)} of {len(chunk)} requests.")
            record([(k, a) for (k, _), a in zip(chunk, answers, strict=True)])
            bar.update(len(chunk))
    return [done[k] for k in keys]


def _ask(
    lm: LM,
    requests: list[ChatRequest],
    scoring: Scoring,
    choices: tuple[str, str, tuple[str, ...]],
    *,
    journal: str | Path | Job | None,
    batch_size: int,
    progress: bool,
) -> list[dict[str, Any]]:
    """Answer rows: ``{"text"}`` for text scoring; for probabilities, ``{"logprobs"}`` of the
    options after the prefix, ``choices`` being (label for the progress bar, prefix, options)."""
    label, prefix, options = choices
    kw: dict[str, Any] = {"journal": journal, "batch_size": batch_size}
    kw["progress"] = f"judge {lm.name} ({label})" if progress else None
    if scoring == "text":
        keys = [request_key(lm.name, r) for r in requests]
        return _answers(lambda rs: lm.complete(rs), requests, keys, **kw)
    if scoring != "probabilities":
        raise ConfigError(
            f"unknown judge scoring '{scoring}'.", fix='use "text" or "probabilities".'
        )
    scorer = require_choice_scores(lm)
    keys = [choice_key(lm.name, r, prefix, options) for r in requests]
    return _answers(lambda rs: scorer.choice_logprobs(rs, prefix, options), requests, keys, **kw)


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


def _ids(ids: Sequence[str] | None, n: int) -> list[str]:
    if ids is None:
        return [str(i) for i in range(n)]
    if len(ids) != n:
        raise ValueError(f"{n} items but {len(ids)} ids: give one per item")
    return [str(i) for i in ids]


def grade(
    lm: LM,
    items: Sequence[tuple[str, str]],
    reference: Sequence[str | None] | None = None,
    *,
    ids: Sequence[str] | None = None,
    journal: str | Path | Job | None = None,
    scoring: Scoring = "text",
    max_tokens: int = 1024,
    batch_size: int = 16,
    progress: bool = True,
) -> JudgeResult:
    """Grade each (question, answer) from 1 to 10, against ``reference[i]`` where one is given.

    ``ids`` name the items in warnings and results (default: their positions). ``journal`` (a
    path or a :class:`~instructkit.jobs.Job`) makes the run resumable. ``scoring="text"``
    parses the generated "Rating: [[N]]"; ``"probabilities"`` takes G-Eval's expected grade
    from a local judge's probabilities of "1".."10" after "Rating: [[".
    """
    pairs = _pairs(items, "items")
    names = _ids(ids, len(pairs))
    prompts = [
        GRADE_PROMPT.format(question=q, answer=a)
        if ref is None
        else GRADE_PROMPT_WITH_REFERENCE.format(question=q, answer=a, reference=ref)
        for (q, a), ref in zip(pairs, _references(reference, len(pairs)), strict=True)
    ]
    requests = [_request(p, max_tokens) for p in prompts]
    choices = ("grade", GRADE_PREFIX, GRADES)
    rows = _ask(
        lm, requests, scoring, choices, journal=journal, batch_size=batch_size, progress=progress
    )
    result = JudgeResult(lm.name, [_grade(row, i) for row, i in zip(rows, names, strict=True)])
    _warn_unparseable(lm.name, result.unparseable_ids, len(result.grades))
    return result


def _grade(row: dict[str, Any], item_id: str) -> Grade:
    if "logprobs" in row:
        expected, probs = expected_grade(row["logprobs"])
        return Grade(expected, _describe(probs), None, item_id, probs)
    parsed = parse_score(row["text"], (1, 10))
    return Grade(parsed.score, row["text"], parsed.error, item_id)


def _verdict(row: dict[str, Any]) -> tuple[str | None, str]:
    """(verdict, raw) of one judged order: the likeliest of A/B/C, or the parsed text."""
    if "logprobs" in row:
        probs = choice_probabilities(row["logprobs"])
        return max(probs, key=probs.__getitem__), _describe(probs)
    return parse_verdict(row["text"]), row["text"]


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
    ids: Sequence[str] | None = None,
    journal: str | Path | Job | None = None,
    scoring: Scoring = "text",
    max_tokens: int = 1024,
    batch_size: int = 16,
    progress: bool = True,
) -> PairwiseResult:
    """Compare A's and B's answers to the same questions, each item judged in both orders.

    ``ids``, ``journal`` and ``scoring`` as in :func:`grade`; with ``"probabilities"`` each
    order's verdict is the likeliest of "A", "B", "C" after "[[".
    """
    a, b = _pairs(items_a, "items_a"), _pairs(items_b, "items_b")
    if len(a) != len(b):
        raise ValueError(f"{len(a)} answers from A but {len(b)} from B: give one each per item")
    for i, ((qa, _), (qb, _)) in enumerate(zip(a, b, strict=True)):
        if qa != qb:
            raise ValueError(f"item {i}: A and B answer different questions ({qa!r} vs {qb!r})")
    names, refs = _ids(ids, len(a)), _references(reference, len(a))
    prompts = []
    for (q, ans_a), (_, ans_b), ref in zip(a, b, refs, strict=True):
        prompts += [_pair_prompt(q, ans_a, ans_b, ref), _pair_prompt(q, ans_b, ans_a, ref)]
    requests = [_request(p, max_tokens) for p in prompts]
    choices = ("pairwise", VERDICT_PREFIX, VERDICTS)
    rows = _ask(
        lm, requests, scoring, choices, journal=journal, batch_size=batch_size, progress=progress
    )
    outcomes = []
    for row_ab, row_ba, item_id in zip(rows[0::2], rows[1::2], names, strict=True):
        (v_ab, raw_ab), (v_ba, raw_ba) = _verdict(row_ab), _verdict(row_ba)
        outcomes.append(PairwiseOutcome(_combine(v_ab, v_ba), v_ab, v_ba, raw_ab, raw_ba, item_id))
    result = PairwiseResult(lm.name, outcomes)
    _warn_unparseable(lm.name, result.unparseable_ids, len(outcomes))
    return result
