"""Answer checks: normalized exact match of a short answer, as in SQuAD-style evaluation.

``normalize_answer`` keeps the first line of a response, drops a leading "Answer:" or "The answer
is", lowercases, removes punctuation (but keeps a decimal point or minus sign that belongs to a
number) and the articles a/an/the, and collapses whitespace. ``score_answer`` is 1.0 when the
normalized response equals the normalized reference, or when a chain-of-thought response says
"So the answer is X" (X being the rest of that line) and X equals the reference; otherwise 0.0.
There is no substring matching: "Paris, France" does not match "Paris". Usage::

    score_answer("The answer is: Paris.", "Paris")          # 1.0
    score_answer("3 + 4 = 7. So the answer is 7.", "7")      # 1.0
    score_answer("Paris is the capital", "Paris")            # 0.0
"""

from __future__ import annotations

import re
import string

__all__ = ["normalize_answer", "score_answer"]

_PREFIX = re.compile(r"^\s*(?:the answer is\s*:?|answer\s*:)\s*")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_COT = re.compile(r"so the answer is", re.IGNORECASE)
_PUNCT = frozenset(string.punctuation)


def _strip_punctuation(text: str) -> str:
    """Drop punctuation except "." between digits (3.5) and "-" that starts a number (-2)."""
    out = []
    for i, ch in enumerate(text):
        if ch not in _PUNCT:
            out.append(ch)
            continue
        before = text[i - 1] if i > 0 else " "
        after = text[i + 1] if i + 1 < len(text) else " "
        if ch == "." and before.isdigit() and after.isdigit():
            out.append(ch)
        elif ch == "-" and after.isdigit() and not before.isalnum():
            out.append(ch)
    return "".join(out)


def normalize_answer(text: str) -> str:
    """First line, no "answer:" prefix, lowercase, no punctuation or articles, single spaces."""
    first = text.strip().split("\n", 1)[0].lower()
    first = _PREFIX.sub("", first, count=1)
    first = _strip_punctuation(first)
    first = _ARTICLES.sub(" ", first)
    return " ".join(first.split())


def _cot_answer(response: str) -> str | None:
    """X in the first "So the answer is X" of the response, X running to the end of its line.

    The first one, like the first line for direct answers: a small model that goes on to invent
    further exemplars should be scored on the answer it committed to.
    """
    match = _COT.search(response)
    return response[match.end() :].split("\n", 1)[0] if match else None


def score_answer(response: str, answer: str) -> float:
    """1.0 if the response (or its final "So the answer is X") matches the answer, else 0.0."""
    target = normalize_answer(answer)
    if not target:
        return 0.0
    if normalize_answer(response) == target:
        return 1.0
    tail = _cot_answer(response)
    return 1.0 if tail is not None and normalize_answer(tail) == target else 0.0
