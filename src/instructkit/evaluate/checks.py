"""Answer checks: strict exact match, lenient answer extraction and format compliance.

Three per-item scores, each 0.0 or 1.0, shown side by side so that a reader can tell how much of
a gain is format and how much is content::

    item = {"answer": "negative", "format": "label", "options": ["positive", "negative"]}
    score_item(item, "The review is negative.")   # {"strict": 0.0, "lenient": 1.0, "format": 0.0}
    score_answer("The answer is: Paris.", "Paris")          # 1.0 (strict, on bare strings)

**strict** (:func:`strict_score`, :func:`score_answer`): normalized exact match, as in SQuAD.
:func:`normalize_answer` keeps the first line of a response, drops a leading "Answer:" or "The
answer is", lowercases, removes punctuation (but keeps a decimal point or minus sign that belongs
to a number) and the articles a/an/the, and collapses whitespace. The score is 1.0 when the
normalized response equals the normalized reference, or when a chain-of-thought response says
"So the answer is X" (X being the rest of that line) and X equals the reference. No substring
matching: "Paris, France" does not match "Paris". A ``json`` item's response must also contain
a JSON object, since normalization drops the braces and quotes that make it JSON. Articles go
too, so "(A) negative" strictly matches "negative" (as in SQuAD; lenient and format see "(A)").

**lenient** (:func:`lenient_score`): the reference found *as the response's answer*. A strict
match always counts. Otherwise the answer span is the text after the first "answer is" /
"answer:" (any case, e.g. "So the answer is", "Answer:") up to the end of its line, or else the
first non-empty line; then only its first sentence. The first marker and the first line count,
not later ones, because a small model that goes on to invent further examples committed to its
first answer. In the span, by the item's ``format``:

* ``label`` (the answer is one of ``options``): every option named in the span (whole words,
  after normalization) is collected, except where the word just before it is a negation (not,
  never, isn't, doesn't, ...), so "Not positive, negative" names only "negative". Choice letters
  map to options by position: "(B)", "B)", "B.", "B:" at the start, a bare "B", "option B" name
  the second option. For yes/no options, "true"/"yeah"/"yep" mean yes and "false"/"nope" mean
  no. The span scores 1.0 only when it names exactly one option and that is the reference:
  "positive or negative?" names two and scores 0.0 (hedging earns nothing).
* ``number``: numbers are digits ("12", "12.0", "1,200", "-3") or English number words from
  zero to ninety-nine ("twelve", "twenty-one", "twenty one"); "12.0" equals 12. When the span
  has an "=", only the text after the last "=" counts ("3 + 4 = 7"). The span scores 1.0 when
  all its numbers are one value and that is the reference; several different values are 0.0.
* ``word`` (a short free answer): the normalized reference occurs in the span as whole words
  and is not negated: "The capital of France is Paris." scores 1.0 for "Paris".
* ``json``: the first JSON object anywhere in the response (code fences allowed) equals the
  reference object: the same keys (case-insensitive) and the same values, strings compared
  after normalization and numbers as numbers.
* ``list``: the response's list equals the reference list (comma-separated in the item, in
  order): bullet or numbered lines at the top of the response ("- a", "1. a"), or else the
  span split at commas, semicolons and " and ", after a "Label:" prefix is dropped.

**format** (:func:`format_score`): the response is in the shape the instruction asked for,
right or wrong. It looks where strict looks (the first line, or the "So the answer is" tail):
``label`` one of the options or a bare choice letter; ``number`` a single number (digits or a
number word); ``word`` a short answer of at most max(3, 2 x the reference's words) words;
``json`` the whole response (code fences allowed) is a JSON object with the reference's keys;
``list`` a list (as for lenient, without a prefix) of as many items as the reference, each at
most as many words as the reference's longest item.

An item without ``format`` is ``label`` when it has ``options``, ``number`` when its answer is a
number, else ``word`` (:func:`item_format`).
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping, Sequence
from typing import Any

from instructkit.errors import DataFormatError

__all__ = [
    "SCORES",
    "FORMATS",
    "normalize_answer",
    "score_answer",
    "answer_span",
    "parse_numbers",
    "item_format",
    "strict_score",
    "lenient_score",
    "format_score",
    "score_item",
]

FORMATS = ("label", "number", "word", "json", "list")

_PREFIX = re.compile(r"^\s*(?:the answer is\s*:?|answer\s*:)\s*")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_COT = re.compile(r"so the answer is", re.IGNORECASE)
_PUNCT = frozenset(string.punctuation)
_MARKER = re.compile(r"\banswer\s*(?:is\b\s*:?|:)", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_NEGATIONS = frozenset(
    {"not", "never", "isnt", "wasnt", "arent", "werent", "doesnt", "dont", "didnt"}
)
_YES_NO = {"yes": ("yes", "true", "yeah", "yep"), "no": ("no", "false", "nope")}
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_WORD_NUMBERS = {w: i for i, w in enumerate(_UNITS)} | {
    t + u: 20 + 10 * i + j for i, t in enumerate(_TENS) for j, u in enumerate(["", *_UNITS[1:10]])
}  # "twenty-one" normalizes to "twentyone"
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+")
_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?```$", re.DOTALL)


# --- strict: normalized exact match ------------------------------------------------------------


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


def _strict_spans(response: str) -> list[str]:
    """The raw texts strict compares: the first line and the "So the answer is" tail."""
    first = response.strip().split("\n", 1)[0]
    tail = _cot_answer(response)
    return [first] if tail is None else [first, tail]


# --- item fields -------------------------------------------------------------------------------


def item_format(item: Mapping[str, Any]) -> str:
    """The item's ``format``, or the one its fields imply (label, number or word)."""
    fmt = item.get("format")
    if fmt is None:
        if item.get("options"):
            return "label"
        return "number" if len(parse_numbers(str(item.get("answer", "")))) == 1 else "word"
    if fmt not in FORMATS:
        raise DataFormatError(
            f"item '{item.get('id')}' has format {fmt!r}.",
            field="format",
            fix=f"use one of: {', '.join(FORMATS)}.",
        )
    if fmt == "label" and not item.get("options"):
        raise DataFormatError(
            f"item '{item.get('id')}' has format 'label' but no options.",
            field="options",
            fix='list the labels, e.g. "options": ["positive", "negative"].',
        )
    return str(fmt)


def _answer(item: Mapping[str, Any]) -> str:
    answer = item.get("answer")
    if not isinstance(answer, str) or not answer.strip():
        raise DataFormatError(
            f"item '{item.get('id')}' has no answer string.",
            field="answer",
            fix="give the item a non-empty string 'answer'.",
        )
    return answer


def _options(item: Mapping[str, Any]) -> list[str]:
    return [str(o) for o in item.get("options") or []]


# --- lenient: the reference found as the response's answer ------------------------------------


def answer_span(response: str) -> str:
    """The raw text lenient reads: after the first "answer is"/"answer:" to the end of its line,
    else the first non-empty line; then its first sentence."""
    match = _MARKER.search(response)
    if match:
        span = response[match.end() :].split("\n", 1)[0]
    else:
        span = next((line for line in response.splitlines() if line.strip()), "")
    return _SENTENCE_END.split(span.strip(), maxsplit=1)[0]


def parse_numbers(text: str) -> list[float]:
    """The numbers in ``text``: digits ("1,200", "-3", "12.0") and words zero to ninety-nine."""
    tokens = normalize_answer(text).split()
    out: list[float] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if _NUMBER.fullmatch(tok):
            out.append(float(tok))
        elif tok in _WORD_NUMBERS:
            value = _WORD_NUMBERS[tok]
            nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
            if tok in _TENS and nxt in _UNITS[1:10]:  # "twenty one"
                value, i = value + _WORD_NUMBERS[nxt], i + 1
            out.append(float(value))
        i += 1
    return out


def _occurs(tokens: Sequence[str], phrase: Sequence[str]) -> bool:
    """``phrase`` occurs in ``tokens`` as whole words, not right after a negation."""
    n = len(phrase)
    for i in range(len(tokens) - n + 1 if n else 0):
        if list(tokens[i : i + n]) == list(phrase) and (i == 0 or tokens[i - 1] not in _NEGATIONS):
            return True
    return False


_LETTER_PATTERNS = (
    re.compile(r"\(([A-Za-z])\)"),
    re.compile(r"^([A-Z])(?:[.):]|$)"),
    re.compile(r"\b(?:option|choice)\s+\(?([A-Za-z])\b", re.IGNORECASE),
)


def _letters(span: str, n_options: int) -> set[int]:
    """Option indices the span names by choice letter: (B), B), B., B:, a bare B, option B."""
    found = set()
    for pattern in _LETTER_PATTERNS:
        for letter in pattern.findall(span.strip()):
            index = ord(letter.upper()) - ord("A")
            if 0 <= index < n_options:
                found.add(index)
    return found


def _named_options(span: str, options: Sequence[str]) -> set[str]:
    """Normalized options the span names, by word (or a yes/no synonym) or by choice letter."""
    tokens = normalize_answer(span).split()
    names = [normalize_answer(o) for o in options]
    yes_no = set(names) == {"yes", "no"}
    found = {
        name
        for name in names
        if any(_occurs(tokens, w.split()) for w in (_YES_NO[name] if yes_no else (name,)))
    }
    return found | {names[i] for i in _letters(span, len(options))}


def _single_number(span: str) -> float | None:
    """The one value the span's numbers agree on (after the last "="), else None."""
    values = set(parse_numbers(span.rsplit("=", 1)[-1]))
    return values.pop() if len(values) == 1 else None


def _json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (anywhere), or None."""
    decoder = json.JSONDecoder()
    for start in (i for i, ch in enumerate(text) if ch == "{"):
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _canon(value: Any) -> Any:
    """A JSON value in comparable form: numbers as floats, strings normalized, keys lowercased."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        numbers = parse_numbers(value)
        text = normalize_answer(value)
        return numbers[0] if len(numbers) == 1 and len(text.split()) == 1 else text
    if isinstance(value, list):
        return tuple(_canon(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k).strip().lower(), repr(_canon(v))) for k, v in value.items()))
    return repr(value)


def _list_items(response: str, *, lenient: bool) -> list[str]:
    """A list answer's normalized items: bullet/numbered lines at the top, else the span split
    at commas, semicolons and " and " (lenient: the answer span, after any "Label:" prefix)."""
    lines = [line for line in response.strip().splitlines() if line.strip()]
    bullets = []
    for line in lines:
        if not _BULLET.match(line):
            break
        bullets.append(_BULLET.sub("", line, count=1))
    if bullets:
        parts = bullets
    else:
        span = answer_span(response) if lenient else (lines[0] if lines else "")
        if lenient:
            span = span.rsplit(":", 1)[-1]
        parts = re.split(r",|;|\band\b", span)
    return [normalize_answer(p) for p in parts if normalize_answer(p)]


def _reference_items(answer: str) -> list[str]:
    return [normalize_answer(p) for p in answer.split(",") if normalize_answer(p)]


def _lenient_match(item: Mapping[str, Any], response: str, fmt: str) -> bool:
    answer = _answer(item)
    if fmt == "json":
        got, ref = _json_object(response), _json_object(answer)
        return got is not None and ref is not None and _canon(got) == _canon(ref)
    if fmt == "list":
        return _list_items(response, lenient=True) == _reference_items(answer)
    span = answer_span(response)
    if fmt == "label":
        named = _named_options(span, _options(item))
        return named == {normalize_answer(answer)}
    if fmt == "number":
        value, refs = _single_number(span), parse_numbers(answer)
        return value is not None and len(refs) == 1 and abs(value - refs[0]) < 1e-9
    target = normalize_answer(answer).split()
    return _occurs(normalize_answer(span).split(), target)


# --- format: the shape the instruction asked for ----------------------------------------------


def _unfence(text: str) -> str:
    """The text inside a Markdown code fence (```json ... ```), or the stripped text."""
    text = text.strip()
    match = _FENCE.match(text)
    return match.group(1).strip() if match else text


def _is_number(text: str) -> bool:
    tokens = normalize_answer(text).split()
    if len(tokens) == 1:
        return bool(_NUMBER.fullmatch(tokens[0])) or tokens[0] in _WORD_NUMBERS
    return len(tokens) == 2 and tokens[0] in _TENS and tokens[1] in _UNITS[1:10]


def _format_match(item: Mapping[str, Any], response: str, fmt: str) -> bool:
    answer = _answer(item)
    if fmt == "json":
        try:
            value = json.loads(_unfence(response))
        except json.JSONDecodeError:
            return False
        keys = {str(k).strip().lower() for k in _json_object(answer) or {}}
        return isinstance(value, dict) and {str(k).strip().lower() for k in value} == keys
    if fmt == "list":
        items, ref_items = _list_items(response, lenient=False), _reference_items(answer)
        longest = max((len(w.split()) for w in ref_items), default=1)
        return len(items) == len(ref_items) and all(len(g.split()) <= longest for g in items)
    spans = _strict_spans(response)
    if fmt == "label":
        names = {normalize_answer(o) for o in _options(item)}
        return any(normalize_answer(s) in names or _bare_letter(s, len(names)) for s in spans)
    if fmt == "number":
        return any(_is_number(s) for s in spans)
    limit = max(3, 2 * len(normalize_answer(answer).split()))
    return any(0 < len(normalize_answer(s).split()) <= limit for s in spans)


def _bare_letter(span: str, n_options: int) -> bool:
    """The span is only a choice letter: "B", "(B)", "B.", "B)"."""
    span = _PREFIX.sub("", span.lower(), count=1).upper()
    match = re.fullmatch(r"\s*\(?([A-Z])\)?[.:]?\s*", span)
    return match is not None and 0 <= ord(match.group(1).upper()) - ord("A") < n_options


# --- the three metrics -------------------------------------------------------------------------


def strict_score(item: Mapping[str, Any], response: str) -> float:
    """Normalized exact match of the response's first line (or CoT tail) with the answer; a
    ``json`` item's response must also be JSON (normalization drops the braces and quotes)."""
    if item_format(item) == "json" and not _json_object(response):
        return 0.0
    return score_answer(response, _answer(item))


def lenient_score(item: Mapping[str, Any], response: str) -> float:
    """1.0 if the reference is found as the response's answer (rules in the module docstring)."""
    if strict_score(item, response):
        return 1.0
    return float(_lenient_match(item, response, item_format(item)))


def format_score(item: Mapping[str, Any], response: str) -> float:
    """1.0 if the response has the answer shape the item's format asks for, right or wrong."""
    return float(_format_match(item, response, item_format(item)))


SCORES = ("strict", "lenient", "format")  # the keys of score_item's result, in that order


def score_item(item: Mapping[str, Any], response: str) -> dict[str, float]:
    """``{"strict", "lenient", "format"}`` scores of one response to one task item."""
    return {
        "strict": strict_score(item, response),
        "lenient": lenient_score(item, response),
        "format": format_score(item, response),
    }
