"""The 25 IFEval checks (Zhou et al. 2023, arXiv:2311.07911) and the text splitting they use.

Each check is a plain function ``check(response, **kwargs) -> bool`` whose keyword arguments carry
the public kwargs names, so a row's ``kwargs`` dict can be passed as is::

    number_words("one two three", num_words=3, relation="at least")   # True
    no_comma("a, b")                                                   # False

The semantics follow the public reference implementation (google-research
``instruction_following_eval/instructions.py``) rule for rule; the places where this module can
only approximate it are marked "Approximation" below:

- sentence counting: the reference uses nltk's trained punkt model; :func:`split_sentences` is a
  regex splitter that imitates it (see its docstring);
- capital-word counting: the reference uses ``nltk.word_tokenize``; :func:`word_tokens` imitates
  the parts of it that change the count (clitics such as "n't" and "'s" are separate tokens,
  punctuation is split off, hyphenated words stay whole);
- keywords, forbidden words, section splitters and postscript markers are regex-escaped, where
  the reference pastes them into a regex unescaped (identical for the plain words of the public
  data; here "C++" or "e.g." match literally instead of raising or matching any character).

Word counting (``length_constraints:number_words``) is exact: the reference counts ``\\w+`` runs.
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

from instructkit.errors import InstructkitError

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


class CannotRun(InstructkitError):
    """A check cannot run here (an optional dependency is missing); it is not a failure."""


def _compare(actual: int, relation: str, threshold: int) -> bool:
    """``actual < threshold`` for "less than", else ``actual >= threshold`` (as the reference)."""
    return actual < threshold if relation == RELATIONS[0] else actual >= threshold


# ------------------------------------------------------------------------------ text splitting


def count_words(text: str) -> int:
    r"""Number of ``\w+`` runs: the reference's ``RegexpTokenizer(r"\w+")``, exactly."""
    return len(re.findall(r"\w+", text))


# Approximation of punkt's english model: a few abbreviations it knows. Titles never end a
# sentence; the others do only before a capitalized frequent sentence starter.
_TITLES = frozenset(
    "mr mrs ms messrs dr prof st rev hon gen sen rep gov capt lt col sgt maj mt fr".split()
)
_ABBREVIATIONS = frozenset(
    "e.g i.e etc vs cf al approx dept est inc ltd co corp jr sr a.m p.m u.s u.k u.n "
    "jan feb mar apr jun jul aug sep sept oct nov dec fig".split()
)
_SENTENCE_STARTERS = frozenset(
    "the a an this that these those it its he she they we i you there here in on at for "
    "but and so if when while as after before however then also my our your his her their "
    "some many most all each one what why how".split()
)
_SENTENCE_END = re.compile(r"^(?P<core>.*?)(?P<punct>[.?!]+)[\"'\u201d\u2019)\]}*_]*$")
_OPENERS = "\"'\u201c\u2018([{*_"


def _ends_sentence(core: str, punct: str, next_token: str) -> bool:
    """Punkt's decision at a token that ends in sentence punctuation, approximately."""
    nxt = next_token.lstrip(_OPENERS)
    starts_upper = nxt[:1].isupper()
    starts_lower = nxt[:1].islower()
    if "?" in punct or "!" in punct:
        return True
    if len(punct) > 1:  # an ellipsis ends a sentence only before a capital
        return starts_upper
    word = core.lstrip(_OPENERS).lower()
    if not word:
        return True
    if word in _TITLES:
        return False
    if (
        word in _ABBREVIATIONS
        or re.fullmatch(r"[^\W\d_]", word)  # an initial: "J. Smith"
        or re.fullmatch(r"(?:[^\W\d_]\.)+[^\W\d_]", word)  # an acronym: "U.S.A."
    ):
        return starts_upper and re.sub(r"\W+$", "", nxt.lower()) in _SENTENCE_STARTERS
    if re.fullmatch(r"-?[.,]?\d[\d,.-]*", word):  # a number, as in a numbered list "1. "
        return not starts_lower
    return True


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``, imitating nltk's punkt english model (which the reference uses).

    Approximation of punkt: a sentence ends at a token (a whitespace-delimited run) that ends in
    ``.``, ``?`` or ``!`` (closing quotes and brackets may follow) and is followed by more text.
    ``?`` and ``!`` always end one. A single ``.`` ends one unless the word is a title ("Mr.",
    "Dr."), or a known abbreviation ("e.g.", "etc."), an initial ("J.") or an acronym ("U.S.")
    that is not followed by a capitalized frequent sentence starter ("The", "It", ...); after a
    number ("1.") it ends one unless a lowercase word follows. An ellipsis ends one only before a
    capital. Newlines alone never end a sentence, and "3.5" or "example.com" hold no break.
    """
    tokens = list(re.finditer(r"\S+", text))
    sentences: list[str] = []
    start = 0
    for token, following in zip(tokens, tokens[1:], strict=False):
        match = _SENTENCE_END.match(token.group())
        if match and _ends_sentence(match["core"], match["punct"], following.group()):
            sentences.append(text[start : token.end()].strip())
            start = following.start()
    if tokens:
        sentences.append(text[start:].strip())
    return sentences


def count_sentences(text: str) -> int:
    """Number of sentences, by :func:`split_sentences`; 0 for blank text."""
    return len(split_sentences(text))


_CLITIC = re.compile(r"(?i)^(.+?)(n't|'s|'re|'ve|'ll|'d|'m)$")


def word_tokens(text: str) -> list[str]:
    """Words and punctuation, imitating ``nltk.word_tokenize`` closely enough to count capitals.

    Approximation: punctuation is split off, hyphenated and dotted words stay whole ("WELL-KNOWN",
    "U.S.A"), and clitics are separate tokens ("DON'T" -> "DO", "N'T"; "IT'S" -> "IT", "'S").
    """
    tokens: list[str] = []
    for token in re.findall(r"\w+(?:[-.'\u2019]\w+)*|[^\w\s]", text):
        clitic = _CLITIC.match(token.replace("\u2019", "'"))
        if clitic:
            tokens.extend([clitic[1], clitic[2]])
        else:
            tokens.append(token)
    return tokens


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
    return all(re.search(re.escape(k), response, flags=re.IGNORECASE) for k in keywords)


def keywords_frequency(response: str, *, keyword: str, frequency: int, relation: str) -> bool:
    """The keyword (case-insensitive substring) occurs ``relation`` ``frequency`` times."""
    found = re.findall(re.escape(keyword.strip()), response, flags=re.IGNORECASE)
    return _compare(len(found), relation, frequency)


def keywords_forbidden_words(response: str, *, forbidden_words: list[str]) -> bool:
    """None of the words occurs as a whole word, case-insensitively."""
    return not any(
        re.search(r"\b" + re.escape(w) + r"\b", response, flags=re.IGNORECASE)
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
        pattern = r"\s*" + re.escape(marker.lower()) + r".*$"
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
    pattern = r"\s?" + re.escape(section_spliter.strip()) + r"\s?\d+\s?"
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
