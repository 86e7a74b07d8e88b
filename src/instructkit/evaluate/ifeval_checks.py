"""The 25 IFEval checks (Zhou et al. 2023, arXiv:2311.07911) and the text splitting they use.

Each check is a plain function ``check(response, **kwargs) -> bool`` whose keyword arguments carry
the public kwargs names, so a row's ``kwargs`` dict can be passed as is::

    number_words("one two three", num_words=3, relation="at least")   # True
    no_comma("a, b")                                                   # False

The semantics follow the public reference implementation (google-research
``instruction_following_eval/instructions.py``) rule for rule; the places where this module can
only approximate it are marked "Approximation" below:

- sentence counting: the reference uses nltk's trained punkt model;
  :func:`~instructkit.evaluate.punkt.split_sentences` runs punkt's procedure with word lists
  probed from nltk in place of the model's corpus statistics (:mod:`instructkit.evaluate.punkt`);
- capital-word counting: the reference uses ``nltk.word_tokenize``; :func:`word_tokens` runs
  nltk's own Treebank word tokenizer (it needs no data files) on the sentences found above;
- keywords, forbidden words, section splitters and postscript markers are regular expressions,
  as in the reference (so the marker "P.S" also matches "p s" and "pos"), except that one that
  is not a valid expression ("C++") is matched literally where the reference would crash.

Where the reference draws a random value, these checks use the value given: a
``keywords:letter_frequency`` ``letter`` that is not one ASCII letter (public IFEval asks for
"#" at least 4 times) is counted as is, where the reference would count a random letter.

Word counting (``length_constraints:number_words``) is exact: the reference counts ``\\w+`` runs
(with the ``regex`` engine, as nltk >= 3.10 does).
Language checks use ``langdetect`` with a private detector factory seeded with 0 (the reference
leaves the seed unset, so its answers can vary between runs). When langdetect is not installed
they raise :class:`CannotRun` instead of guessing; when langdetect finds no features in the text
(digits only, say) the check counts as followed, as in the reference.
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from typing import Any

import regex

from instructkit.errors import InstructkitError
from instructkit.evaluate.punkt import split_sentences

__all__ = [
    "CannotRun",
    "RELATIONS",
    "CONSTRAINED_RESPONSES",
    "count_words",
    "count_sentences",
    "split_sentences",
    "word_tokens",
    "detect_language",
]

RELATIONS = ("less than", "at least")
CONSTRAINED_RESPONSES = ("My answer is yes.", "My answer is no.", "My answer is maybe.")
_WORD_RUN = regex.compile(r"\w+")


class CannotRun(InstructkitError):
    """A check cannot run here (an optional dependency is missing); it is not a failure."""


def _as_pattern(text: str) -> str:
    """``text`` as the reference uses it: as a regular expression ("P.S" also matches "p s"),
    or, where it is not a valid one ("C++"), literally instead of failing."""
    try:
        re.compile(text)
    except re.error:
        return re.escape(text)
    return text


def _compare(actual: int, relation: str, threshold: int) -> bool:
    """``actual < threshold`` for "less than", else ``actual >= threshold`` (as the reference)."""
    return actual < threshold if relation == RELATIONS[0] else actual >= threshold


# ------------------------------------------------------------------------------ text splitting


def count_words(text: str) -> int:
    r"""Number of ``\w+`` runs: the reference's ``RegexpTokenizer(r"\w+")``, exactly.

    nltk >= 3.10 compiles that pattern with the ``regex`` engine, whose ``\w`` includes the
    combining marks of scripts such as Kannada or Devanagari, so "ಹೌದು" is one word (Python's
    ``re``, which older nltk used, splits it in three). We count as current nltk does.
    """
    return len(_WORD_RUN.findall(text))


def count_sentences(text: str) -> int:
    """Number of sentences, by :func:`split_sentences`; 0 for blank text."""
    return len(split_sentences(text))


@functools.lru_cache(maxsize=1)
def _treebank() -> Any:
    from nltk.tokenize.destructive import NLTKWordTokenizer  # no data files needed

    return NLTKWordTokenizer()


def word_tokens(text: str) -> list[str]:
    """``nltk.word_tokenize``: each sentence (:func:`split_sentences`) split by nltk's Treebank
    word tokenizer, so "DON'T" is "DO" + "N'T", "CANNOT" is "CAN" + "NOT" and "AND/OR" is one."""
    tokenizer = _treebank()
    return [t for sentence in split_sentences(text) for t in tokenizer.tokenize(sentence)]


# ------------------------------------------------------------------------- language detection


@functools.lru_cache(maxsize=1)
def _seeded_factory(factory_cls: Any, profiles: str) -> Any:
    factory = factory_cls()
    factory.load_profile(profiles)
    factory.seed = 0  # on this instance only: langdetect's global DetectorFactory stays as is
    return factory


def detect_language(text: str) -> str | None:
    """langdetect's language code for ``text`` (seed 0); None when it finds no features.

    Raises :class:`CannotRun` when langdetect is not installed.
    """
    try:
        from langdetect import PROFILES_DIRECTORY, DetectorFactory, LangDetectException
    except ImportError as e:
        raise CannotRun(
            "langdetect is not installed, so the language of the response cannot be checked.",
            fix="pip install langdetect",
        ) from e
    return _detect(text, _seeded_factory(DetectorFactory, PROFILES_DIRECTORY), LangDetectException)


@functools.lru_cache(maxsize=256)  # a row's checks and loose variants ask about the same texts
def _detect(text: str, factory: Any, no_features: type[Exception]) -> str | None:
    detector = factory.create()
    detector.append(text)
    try:
        return str(detector.detect())
    except no_features:
        return None


def _is_language(text: str, language: str) -> bool:
    detected = detect_language(text)
    return True if detected is None else detected == language  # no features: followed (reference)


# ------------------------------------------------------------------------------------- checks
# Each takes the response and the row's kwargs by their public names.


def keywords_existence(response: str, *, keywords: list[str]) -> bool:
    """Every keyword occurs, case-insensitively, as a substring ("cat" is in "category")."""
    return all(re.search(_as_pattern(k), response, flags=re.IGNORECASE) for k in keywords)


def keywords_frequency(response: str, *, keyword: str, frequency: int, relation: str) -> bool:
    """The keyword (case-insensitive substring) occurs ``relation`` ``frequency`` times."""
    found = re.findall(_as_pattern(keyword.strip()), response, flags=re.IGNORECASE)
    return _compare(len(found), relation, frequency)


def keywords_forbidden_words(response: str, *, forbidden_words: list[str]) -> bool:
    """None of the words occurs as a whole word, case-insensitively."""
    return not any(
        re.search(r"\b" + _as_pattern(w) + r"\b", response, flags=re.IGNORECASE)
        for w in forbidden_words
    )


def keywords_letter_frequency(
    response: str, *, letter: str, let_frequency: int, let_relation: str
) -> bool:
    """The letter occurs (case-insensitively) ``let_relation`` ``let_frequency`` times."""
    count = Counter(response.lower())[letter.strip().lower()]
    return _compare(count, let_relation, let_frequency)


def language_response_language(response: str, *, language: str) -> bool:
    """langdetect says the response is in ``language`` (compared as given, so "zh" is never
    "zh-cn", as in the reference)."""
    return _is_language(response, language)


def number_sentences(response: str, *, num_sentences: int, relation: str) -> bool:
    """The sentence count stands in ``relation`` to ``num_sentences``."""
    return _compare(count_sentences(response), relation, num_sentences)


def number_paragraphs(response: str, *, num_paragraphs: int) -> bool:
    """Exactly ``num_paragraphs`` paragraphs separated by ``***``; an empty one inside fails."""
    paragraphs = re.split(r"\s?\*\*\*\s?", response)
    count = len(paragraphs)
    for index, paragraph in enumerate(paragraphs):
        if not paragraph.strip():
            if 0 < index < len(paragraphs) - 1:
                return False
            count -= 1
    return count == num_paragraphs


def number_words(response: str, *, num_words: int, relation: str) -> bool:
    """The word count (``\\w+`` runs) stands in ``relation`` to ``num_words``."""
    return _compare(count_words(response), relation, num_words)


def nth_paragraph_first_word(
    response: str, *, num_paragraphs: int, nth_paragraph: int, first_word: str
) -> bool:
    """``num_paragraphs`` paragraphs split on "\\n\\n" and paragraph n starts with the word.

    As in the reference, blank paragraphs do not count, but paragraph n is looked up among all
    the pieces, blank ones included. The first word is lowercased, loses leading quotes and is
    cut at the first of . , ? ! ' ".
    """
    paragraphs = response.split("\n\n")
    count = sum(1 for p in paragraphs if p.strip())
    if nth_paragraph > count:
        return False
    paragraph = paragraphs[nth_paragraph - 1].strip()
    if not paragraph:
        return False
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    head = re.match(r"[^.,?!'\"]*", word)
    found = head.group().lower() if head else ""
    return count == num_paragraphs and found == first_word.lower()


def number_placeholders(response: str, *, num_placeholders: int) -> bool:
    """At least ``num_placeholders`` square-bracket placeholders such as [address]."""
    return len(re.findall(r"\[.*?\]", response)) >= num_placeholders


def postscript(response: str, *, postscript_marker: str) -> bool:
    """A line contains the marker ("P.S." and "P.P.S" also match "p. s." spellings)."""
    marker = postscript_marker.strip()
    if marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + _as_pattern(marker.lower()) + r".*$"
    return bool(re.findall(pattern, response.lower(), flags=re.MULTILINE))


def number_bullet_lists(response: str, *, num_bullets: int) -> bool:
    """Exactly ``num_bullets`` lines that start with "*" (not "**") or "-" (so "---" counts)."""
    stars = re.findall(r"^\s*\*[^\*].*$", response, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", response, flags=re.MULTILINE)
    return len(stars) + len(dashes) == num_bullets


def constrained_response(response: str) -> bool:
    """The response contains one of "My answer is yes." / "... no." / "... maybe."."""
    text = response.strip()
    return any(option in text for option in CONSTRAINED_RESPONSES)


def number_highlighted_sections(response: str, *, num_highlights: int) -> bool:
    """At least ``num_highlights`` non-blank *single* or **double** starred spans on one line.

    As in the reference, both patterns are counted; "**bold**" still counts once, because the
    single-star pattern only finds the blank spans "**" in it.
    """
    single = re.findall(r"\*[^\n\*]*\*", response)
    double = re.findall(r"\*\*[^\n\*]*\*\*", response)
    count = sum(1 for h in single if h.strip("*").strip())
    count += sum(1 for h in double if h.removeprefix("**").removesuffix("**").strip())
    return count >= num_highlights


def multiple_sections(response: str, *, section_spliter: str, num_sections: int) -> bool:
    """At least ``num_sections`` case-sensitive "<spliter> <number>" markers (e.g. "Section 1")."""
    pattern = r"\s?" + _as_pattern(section_spliter.strip()) + r"\s?\d+\s?"
    return len(re.split(pattern, response)) - 1 >= num_sections


def json_format(response: str) -> bool:
    """The response, without a ``` / ```json fence, parses as JSON."""
    text = response.strip()
    for fence in ("```json", "```Json", "```JSON", "```"):
        text = text.removeprefix(fence)
    text = text.removesuffix("```").strip()
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def title(response: str) -> bool:
    """A non-blank title in double angular brackets on one line, such as <<poem of joy>>."""
    titles = re.findall(r"<<[^\n]+>>", response)
    return any(t.lstrip("<").rstrip(">").strip() for t in titles)


def two_responses(response: str) -> bool:
    """Two different non-blank responses separated by "******" (blank ends are allowed)."""
    parts = response.split("******")
    kept = []
    for index, part in enumerate(parts):
        if part.strip():
            kept.append(part.strip())
        elif 0 < index < len(parts) - 1:
            return False
    return len(kept) == 2 and kept[0] != kept[1]


def repeat_prompt(response: str, *, prompt_to_repeat: str) -> bool:
    """The response starts with the prompt, case-insensitively, ignoring outer whitespace."""
    return response.strip().lower().startswith(prompt_to_repeat.strip().lower())


def end_checker(response: str, *, end_phrase: str) -> bool:
    """The response (outer whitespace and double quotes removed) ends with the phrase,
    case-insensitively."""
    return response.strip().strip('"').lower().endswith(end_phrase.strip().lower())


def capital_word_frequency(response: str, *, capital_frequency: int, capital_relation: str) -> bool:
    """Words in all capitals (tokens for which ``str.isupper`` holds, "I" included) stand in
    ``capital_relation`` to ``capital_frequency``."""
    count = sum(1 for token in word_tokens(response) if token.isupper())
    return _compare(count, capital_relation, capital_frequency)


def english_capital(response: str) -> bool:
    """All cased letters are capitals and langdetect says English."""
    return response.isupper() and _is_language(response, "en")


def english_lowercase(response: str) -> bool:
    """All cased letters are lowercase and langdetect says English."""
    return response.islower() and _is_language(response, "en")


def no_comma(response: str) -> bool:
    """No "," anywhere (other comma characters such as "，" are allowed, as in the reference)."""
    return "," not in response


def quotation(response: str) -> bool:
    """The stripped response is at least two characters that start and end with '"'."""
    text = response.strip()
    return len(text) > 1 and text[0] == '"' and text[-1] == '"'
