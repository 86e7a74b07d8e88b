"""Sentence splitting that follows the decisions of nltk's punkt english model, without nltk.

IFEval's reference counts sentences with nltk's pretrained punkt tokenizer (Kiss & Strunk 2006,
"Unsupervised Multilingual Sentence Boundary Detection"). This module implements punkt's
decision procedure itself, so the places where a sentence may end, the tokens it looks at and
the order of its rules are the same:

1. Candidate ends are ``.``, ``?`` and ``!`` followed by whitespace and a token, or by one of
   ``)";}]*:@'({[!?``, a curly quote or a guillemet. Of several candidates inside one
   whitespace-free run only the last counts.
2. Around each candidate, the word before it and the token after it are split into punkt tokens
   and annotated: a lone ``.``/``?``/``!`` ends a sentence; a token ending in "." does unless it
   is a known abbreviation ("Mr.", "U.S.") or ends in ".." (an ellipsis is only marked).
3. A second pass over each token pair reverses or adds breaks: a known collocation ("9. Review")
   never breaks; after an abbreviation or ellipsis a capitalized word that starts sentences
   ("The", "However") ends the sentence; after an initial ("J.") or a number ("1.") a
   following lowercase word means no break, and so does a capitalized word after an initial
   unless punkt has seen it in lowercase.
4. Closing quotes and brackets at the start of a sentence move back to the one before it.

Approximation: punkt's model also holds what it learned from its training corpus about every
word's capitalization, a list of sentence starters and of collocations. This module stands in
for those with the short lists below and ``resources/punkt_words.txt``: for 10,628 frequent
English words, found by probing nltk, whether punkt has seen them in lowercase and whether
also capitalized mid-sentence. A lowercase word is never taken for a sentence start. The
decisions that depend on the corpus statistics (an abbreviation, ellipsis or initial followed
by a capitalized word) can therefore differ from nltk's for rare words; everything else
follows its procedure.
:mod:`benchmarks/ifeval_agreement.py` measures the agreement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

__all__ = ["split_sentences", "punkt_tokens"]

# The english model's abbreviations (lowercase, without the final period; it learned them from
# newswire): titles, months, US states, single letters and dotted initials. Note what it does
# not hold: "e.g.", "i.e.", "etc.", "no.", "fig.", "p.s." end sentences there, "ok." does not.
ABBREVIATIONS = frozenset(
    "mr mrs ms messrs dr prof st jr sr gen sen rep reps lt col maj adm inc corp co cie ltd bros "
    "cos jan feb aug sep sept oct nov dec tues wed fri calif fla conn ariz ill mich minn pa va "
    "wash ore ga ala colo ct kan ky nev okla tenn vt wis ft ave vs yr chg mg ok sw "
    "c d e f g h k l m n p r s t v w u.s u.k u.n n.y n.j d.c a.m p.m ph.d u.s.a u.s.s.r a.d s.a "
    "l.a n.v b.v j.p h.m a.g n.c s.c r.i n.h w.va a.a a.c a.h a.m.e a.s a.t b.f c.i.t c.o.m.b "
    "c.v d.h d.w e.f e.h e.l e.m f.g f.j g.d g.f g.k h.c h.f i.m.s j.b j.c j.j j.k j.r l.f l.p "
    "m.b.a m.d.c m.j n.d n.m p.a.m r.a r.h r.j r.k r.t s.a.y s.g s.p.a s.s t.j w.c w.r w.w".split()
)

# Capitalized, these start a sentence even after an abbreviation or an ellipsis.
SENTENCE_STARTERS = frozenset(
    "according although among both but despite even he however i if in indeed instead it many "
    "meanwhile moreover most nevertheless nonetheless nor sales separately similarly since so "
    "some the there these they this though thus under when while yet".split()
)

# Word pairs across a period that the model holds for collocations: no sentence break between
# them ("9. Review", "J. Walter"). "##number##" stands for any number.
COLLOCATIONS = frozenset(
    [
        *(
            ("##number##", w)
            for w in "abreast aes business cbot colgate commodities cooper corrections credit "
            "dividend financing genentech henley insider international leisure letters notable "
            "pay-fone pegasus pepper review rj wedgestone who zimmer".split()
        ),
        *(("b", w) for w in "edelman levine smith stewart wigton".split()),
        *(("i", w) for w in ("magnin", "toussie")),
        *(("j", w) for w in ("aron", "fialka", "walter")),
        ("o", "ludcke"),
    ]
)
# Words seen in lowercase besides those of resources/punkt_words.txt (which holds words of two
# letters or more), for the "known lowercase" test after an initial.
_LOWERCASE_WORDS = SENTENCE_STARTERS | frozenset(
    "a an and or not no we you she her his its our their my your that those what which who "
    "how why where after before as at by for from of on to with also then one all each".split()
)

_END = (".", "?", "!")
_PUNCTUATION = (";", ":", ",", ".", "!", "?")
_QUOTES = "\u2018\u2019\u201c\u201d\u00ab\u00bb"  # curly quotes and guillemets
_NON_WORD = rf"[)\";}}\]*:@'({{\[{_QUOTES}!?]"
_MULTI = r"(?:-{2,}|\.{2,}|(?:\.\s){2,}\.)"
# Punkt's word tokens: a multi-character run, or a word that starts with none of ("`{[:;&#*@)}]-,
# and runs until whitespace, punctuation, a multi-character run or a word-final comma, or else
# any single character.
_WORD = re.compile(
    rf"""{_MULTI}
    |(?=[^("`{{\[:;&\#*@)}}\]\-,])\S+?(?=\s|$|{_NON_WORD}|{_MULTI}|,(?=$|\s|{_NON_WORD}|{_MULTI}))
    |\S""",
    re.VERBOSE,
)
_CANDIDATE = re.compile(r"[.?!](?=(?P<after>" + _NON_WORD + r"|\s+(?P<next>\S+)))")
_REALIGN = re.compile(rf"[\"')\]}}{_QUOTES}]+?(?:\s+|(?=--)|$)", re.MULTILINE)
_NUMBER = re.compile(r"^-?[.,]?\d[\d,.-]*\.?$")
_INITIAL = re.compile(r"[^\W\d]\.$")
_ELLIPSIS = re.compile(r"\.\.+$")

Ortho = Literal[True, False, "unknown"]


@dataclass
class _Token:
    text: str
    sentbreak: bool = False
    abbr: bool = False
    ellipsis: bool = False

    @property
    def kind(self) -> str:
        """The lowercase form, with numbers collapsed to one type."""
        return _NUMBER.sub("##number##", self.text.lower())

    @property
    def kind_no_period(self) -> str:
        k = self.kind
        return k[:-1] if len(k) > 1 and k.endswith(".") else k

    @property
    def kind_no_sentperiod(self) -> str:
        return self.kind_no_period if self.sentbreak else self.kind

    @property
    def first_upper(self) -> bool:
        return self.text[:1].isupper()

    @property
    def first_lower(self) -> bool:
        return self.text[:1].islower()


def punkt_tokens(text: str) -> list[str]:
    """Punkt's word tokens of ``text`` (used to annotate the context of a candidate end)."""
    return _WORD.findall(text)


def _first_pass(tok: _Token) -> None:
    t = tok.text
    if t in _END:
        tok.sentbreak = True
    elif _ELLIPSIS.match(t):
        tok.ellipsis = True
    elif t.endswith(".") and not t.endswith(".."):
        word = t[:-1].lower()
        if word in ABBREVIATIONS or word.split("-")[-1] in ABBREVIATIONS:
            tok.abbr = True
        else:
            tok.sentbreak = True


@cache
def _word_lists() -> dict[str, frozenset[str]]:
    """``resources/punkt_words.txt``: {"start": ..., "lowercase": ...} (see its header)."""
    text = resources.files("instructkit.resources").joinpath("punkt_words.txt")
    sections: dict[str, set[str]] = {}
    current: set[str] | None = None
    for line in text.read_text(encoding="utf-8").splitlines():
        if line.startswith("["):
            current = sections.setdefault(line[1 : line.index("]")], set())
        elif current is not None and not line.startswith("#"):
            current.update(line.split())
    return {name: frozenset(words) for name, words in sections.items()}


def _starts_capitalized(kind: str) -> bool:
    """Punkt has seen ``kind`` in lowercase and never capitalized mid-sentence."""
    return kind in _word_lists()["start"]


def _seen_lowercase(kind: str) -> bool:
    lists = _word_lists()
    return kind in lists["start"] or kind in lists["lowercase"] or kind in _LOWERCASE_WORDS


def _starts_sentence(tok: _Token) -> Ortho:
    """Whether ``tok`` begins a sentence, judged by its capitalization (see the approximation)."""
    if tok.text in _PUNCTUATION:
        return False
    if tok.first_lower:
        return False
    if tok.first_upper and _starts_capitalized(tok.kind_no_sentperiod):
        return True
    return "unknown"


def _second_pass(tok: _Token, nxt: _Token) -> None:
    if not tok.text.endswith("."):
        return
    if (tok.kind_no_period, nxt.kind_no_sentperiod) in COLLOCATIONS:
        tok.sentbreak = False
        tok.abbr = True
        return
    initial = bool(_INITIAL.match(tok.text))
    if (tok.abbr or tok.ellipsis) and not initial:
        if _starts_sentence(nxt) is True:
            tok.sentbreak = True
            return
        if nxt.first_upper and nxt.kind_no_sentperiod in SENTENCE_STARTERS:
            tok.sentbreak = True
            return
    if initial or tok.kind_no_period == "##number##":
        starts = _starts_sentence(nxt)
        known_lower = _seen_lowercase(nxt.kind_no_sentperiod)
        if starts is False or (
            starts == "unknown" and initial and nxt.first_upper and not known_lower
        ):
            tok.sentbreak = False
            tok.abbr = True


def _has_break(context: str) -> bool:
    """A token of ``context`` ends a sentence and another token follows it."""
    tokens = [_Token(t) for t in punkt_tokens(context)]
    for tok in tokens:
        _first_pass(tok)
    for tok, nxt in zip(tokens, tokens[1:], strict=False):
        _second_pass(tok, nxt)
    return any(t.sentbreak for t in tokens[:-1])


def _candidates(text: str) -> list[tuple[re.Match[str], str]]:
    """Each candidate end with its context (the word before it, the end, what follows); of
    candidates with no whitespace between them only the last is kept."""
    out: list[tuple[re.Match[str], str]] = []
    prev: tuple[re.Match[str], int] | None = None  # match, start of the word before it
    prev_stop = 0
    for m in _CANDIDATE.finditer(text):
        before = text[prev_stop : m.start()]
        space = max(before.rfind(c) for c in " \t\n\r\x0b\x0c")
        # A whitespace at offset 0 counts as none, as in nltk.
        word_start = prev_stop + space + 1 if space > 0 else (prev[1] if prev else 0)
        if prev is not None and prev_stop <= word_start:
            pm, pstart = prev
            out.append((pm, text[pstart : pm.start()] + pm.group() + pm.group("after")))
        prev, prev_stop = (m, word_start), m.start()
    if prev is not None:
        pm, pstart = prev
        out.append((pm, text[pstart : pm.start()] + pm.group() + pm.group("after")))
    return out


def _spans(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    last = 0
    for m, context in _candidates(text):
        if _has_break(context):
            spans.append((last, m.end()))
            last = m.start("next") if m.group("next") else m.end()
    spans.append((last, len(text.rstrip())))
    return spans


def _realign(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Move closing quotes and brackets that open a sentence to the end of the one before."""
    out: list[tuple[int, int]] = []
    shift = 0
    for i, (start, stop) in enumerate(spans):
        start += shift
        if i + 1 == len(spans):
            if text[start:stop]:
                out.append((start, stop))
            continue
        nstart, nstop = spans[i + 1]
        m = _REALIGN.match(text[nstart:nstop])
        if m:
            out.append((start, nstart + len(m.group().rstrip())))
            shift = m.end()
        else:
            shift = 0
            if text[start:stop]:
                out.append((start, stop))
    return out


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` as punkt's english model would split it (see the module doc)."""
    return [text[a:b] for a, b in _realign(text, _spans(text))]
