"""Text measures behind the quality heuristics: small pure functions over one string.

Word counts, phrase matching in a folded form, code-fence handling, n-gram repetition, copying
of the instruction, the share of unreadable characters, list and JSON detection, signs of a
truncated response, and format problems against what the instruction asks for (a count of
items, a list, JSON). :mod:`instructkit.data.heuristics` turns them into filter reasons::

    repetition_ratio("a b c a b c a b c")  # share of repeated word 3-grams
    format_problem("List three fruits.", "1. apple\n2. pear", min_words=1)
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

from instructkit.data.similarity import rouge_l_f, rouge_tokens

__all__ = [
    "word_count",
    "fold",
    "find_phrase",
    "strip_code_blocks",
    "repetition_ratio",
    "copy_score",
    "garbage_ratio",
    "count_list_items",
    "contains_json",
    "truncation",
    "format_problem",
]

_WORD_RE = re.compile(r"\w+")
_FENCE = "```"


def word_count(text: str) -> int:
    return len(text.split())


def fold(text: str) -> str:
    """Lowercase, straight apostrophes, single spaces: the form phrase lists are matched in."""
    return " ".join(text.lower().replace("\u2019", "'").replace("\u2018", "'").split())


@lru_cache(maxsize=32)
def _phrase_pattern(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    """Any of ``phrases`` as whole words (longest first); None for an empty list."""
    folded = sorted({fold(p) for p in phrases if p.strip()}, key=len, reverse=True)
    if not folded:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, folded)) + r")(?!\w)")


def find_phrase(phrases: Sequence[str], text: str) -> str | None:
    pattern = _phrase_pattern(tuple(phrases))
    match = pattern.search(fold(text)) if pattern else None
    return match.group(0) if match else None


def _fence_toggles(line: str) -> bool:
    """A line opens or closes a code block: it starts with ``` and has an odd number of them."""
    stripped = line.strip()
    return stripped.startswith(_FENCE) and stripped.count(_FENCE) % 2 == 1


def strip_code_blocks(text: str) -> str:
    """``text`` without fenced code blocks (an unclosed block runs to the end)."""
    kept, in_code = [], False
    for line in text.split("\n"):
        if _fence_toggles(line):
            in_code = not in_code
        elif not in_code:
            kept.append(line)
    return "\n".join(kept)


def repetition_ratio(text: str, n: int = 3) -> float:
    """Share of word n-grams that repeat an earlier one: 1 - distinct/total (code excluded)."""
    tokens = _WORD_RE.findall(strip_code_blocks(text).lower())
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def copy_score(instruction: str, response: str) -> float:
    """ROUGE-L F1 between the instruction and the response."""
    return rouge_l_f(rouge_tokens(instruction), rouge_tokens(response))


def _is_text_char(c: str) -> bool:
    """Letters, digits, punctuation and marks of any script, and printable ASCII."""
    return (c.isascii() and c.isprintable()) or unicodedata.category(c)[0] in "LNPMZ"


def garbage_ratio(text: str) -> float:
    """Share of non-space characters outside code blocks that are not text.

    Not text: symbols beyond ASCII (emoji, box drawing, U+FFFD), control and private-use
    characters. ASCII punctuation counts as text so that math, markdown and tables pass.
    """
    chars = [c for c in strip_code_blocks(text) if not c.isspace()]
    return sum(not _is_text_char(c) for c in chars) / len(chars) if chars else 0.0


_NUMBERED_ITEM = re.compile(r"^ {0,3}(?:\*\*|#+ *)?\d{1,3}[.)](?:\*\*)?\s", re.M)
_BULLET_ITEM = re.compile(r"^ {0,3}[-*\u2022+]\s+\S", re.M)


def count_list_items(text: str) -> int:
    """Top-level numbered items, or bullet items when there are none (code excluded)."""
    body = strip_code_blocks(text)
    return len(_NUMBERED_ITEM.findall(body)) or len(_BULLET_ITEM.findall(body))


def contains_json(text: str, max_tries: int = 50) -> bool:
    """Whether a JSON object or array starts somewhere in ``text`` (fenced or not)."""
    body = text.replace(_FENCE + "json", "").replace(_FENCE, "")
    decoder = json.JSONDecoder()
    for i, match in enumerate(re.finditer(r"[\[{]", body)):
        if i >= max_tries:
            break
        try:
            value, _ = decoder.raw_decode(body, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict | list):
            return True
    return False


_STRUCTURED_LINE = re.compile(r"^(?:[-*\u2022+]\s|\d+[.)]\s|#|\||>|`)")


def truncation(text: str, min_words: int = 10) -> str | None:
    """Why ``text`` looks cut off, or None: it ends with "...", or its last line is prose of
    at least ``min_words`` words that stops on a letter, comma, colon or semicolon."""
    body = text.rstrip()
    if body.endswith(("...", "\u2026")):
        return "the response ends with '...'"
    last = body.split("\n")[-1].strip() if body else ""
    if not last or _STRUCTURED_LINE.match(last) or word_count(last) < min_words:
        return None
    if last[-1].isalpha() or last[-1] in ",:;":
        return f"the response stops mid-sentence ('...{last[-30:]}')"
    return None


_NUMBER_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7}
_NUMBER_WORDS |= {"eight": 8, "nine": 9, "ten": 10}
_ASKS_COUNT = re.compile(
    r"\b(?:list|name|give(?: me)?|provide|suggest|generate|write|create|come up with|"
    r"brainstorm|enumerate|identify|recommend|outline|share)\s+"
    r"(\d{1,2}|two|three|four|five|six|seven|eight|nine|ten)\s+(\w+)",
    re.I,
)
# Units that a count in an instruction may measure instead of list items.
_NOT_ITEMS = frozenset(
    "word words sentence sentences paragraph paragraphs line lines character characters letter "
    "letters syllable syllables stanza stanzas verse verses minute minutes hour hours day days "
    "week weeks month months year years time times page pages digit digits".split()
)
_ASKS_LIST = re.compile(
    r"\b(?:in|as|using|with|into)\s+(?:a\s+)?(?:bullet(?:ed)?[- ]?points?|bullet(?:ed)?\s+list|"
    r"numbered\s+list)\b",
    re.I,
)
_ASKS_JSON = re.compile(
    r"\b(?:in|as|into|return|output|respond with|reply with|answer with)\s+"
    r"(?:(?:a|an|the|valid|only|proper)\s+)*json\b",
    re.I,
)


def _asked_count(instruction: str) -> int | None:
    """N when the instruction asks for N items ("List 5 fruits"), else None."""
    match = _ASKS_COUNT.search(instruction)
    if not match or match.group(2).lower() in _NOT_ITEMS:
        return None
    raw = match.group(1).lower()
    return int(raw) if raw.isdigit() else _NUMBER_WORDS[raw]


def format_problem(instruction: str, response: str, min_words: int) -> str | None:
    toggles = sum(_fence_toggles(line) for line in response.split("\n"))
    if toggles % 2:
        return f"unbalanced code fences ({toggles} ``` lines)"
    if _ASKS_JSON.search(instruction) and not contains_json(response):
        return "the instruction asks for JSON; the response holds no JSON object or array"
    items = count_list_items(response)
    wanted = _asked_count(instruction)
    if wanted is not None and items >= 2 and items != wanted:
        return f"the instruction asks for {wanted} items; the response lists {items}"
    if _ASKS_LIST.search(instruction) and items < 2:
        return "the instruction asks for a bulleted or numbered list; the response has none"
    return truncation(response, min_words)
