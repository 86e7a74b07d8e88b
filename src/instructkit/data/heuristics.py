"""Heuristic quality checks of one record: lengths, refusals, copying, format, repetition,
garbage and unsafe phrases.

Each check is a small pure function ``(conversation, cfg) -> [(reason, detail), ...]`` with its
thresholds in :class:`~instructkit.data.quality_config.QualityConfig`; the text measures they
use live in :mod:`instructkit.data.text_measures`. Each looks at every (user, assistant)
exchange and names the turn when a conversation has several. :func:`heuristic_verdict` runs the
checks named in ``cfg.filters`` and records the measures the quality report summarizes::

    check_refusal(conv, QualityConfig())          # [("refusal", "the response says 'i cannot'")]
    verdict = heuristic_verdict(conv, cfg)        # Verdict(reasons, flags, scores)
    verdict.kept                                  # no reason to drop it
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from instructkit.data.quality_config import QualityConfig
from instructkit.data.records import Conversation, Message
from instructkit.data.similarity import rouge_l_f, rouge_tokens
from instructkit.data.text_measures import (
    copy_score,
    find_phrase,
    format_problem,
    garbage_ratio,
    repetition_ratio,
    word_count,
)
from instructkit.errors import ConfigError

__all__ = [
    "Reason",
    "Verdict",
    "HEURISTICS",
    "exchanges",
    "check_instruction_length",
    "check_response_length",
    "check_refusal",
    "check_copy",
    "check_format",
    "check_repetition",
    "check_garbage",
    "check_unsafe",
    "record_scores",
    "load_unsafe_words",
    "with_unsafe_words_file",
    "heuristic_verdict",
]

Reason = tuple[str, str]  # (reason name, detail for people)


@dataclass
class Verdict:
    """What the filter decided for one record."""

    reasons: list[Reason] = field(default_factory=list)  # why it is dropped; empty: kept
    flags: list[Reason] = field(default_factory=list)  # noted, yet kept (unparsed judgments)
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def kept(self) -> bool:
        return not self.reasons


def exchanges(conv: Conversation) -> list[tuple[Message, str]]:
    """(user message, assistant response) pairs in order; a trailing user turn has none."""
    turns = conv.turns
    return [
        (user, reply.content)
        for user, reply in zip(turns[::2], turns[1::2], strict=False)
        if user.role == "user" and reply.role == "assistant"
    ]


def _per_exchange(
    conv: Conversation, reason: str, check: Callable[[Message, str], str | None]
) -> list[Reason]:
    pairs = exchanges(conv)
    out = []
    for k, (user, response) in enumerate(pairs):
        detail = check(user, response)
        if detail:
            out.append((reason, f"turn {k + 1}: {detail}" if len(pairs) > 1 else detail))
    return out


def _bounds(value: int, lo: int, hi: int, what: str, key: str) -> str | None:
    if value < lo:
        return f"{value} {what} < min_{key}={lo}"
    if value > hi:
        return f"{value} {what} > max_{key}={hi}"
    return None


def check_instruction_length(conv: Conversation, cfg: QualityConfig) -> list[Reason]:
    """Instruction (with its Alpaca input) outside the word bounds."""

    def check(user: Message, _: str) -> str | None:
        n = word_count(user.text)
        lo, hi = cfg.min_instruction_words, cfg.max_instruction_words
        return _bounds(n, lo, hi, "instruction words", "instruction_words")

    return _per_exchange(conv, "instruction_length", check)


def check_response_length(conv: Conversation, cfg: QualityConfig) -> list[Reason]:
    """Response outside the word or character bounds."""

    def check(_: Message, response: str) -> str | None:
        lo, hi = cfg.min_response_words, cfg.max_response_words
        words = _bounds(word_count(response), lo, hi, "response words", "response_words")
        lo, hi = cfg.min_response_chars, cfg.max_response_chars
        return words or _bounds(len(response), lo, hi, "response chars", "response_chars")

    return _per_exchange(conv, "response_length", check)


def check_refusal(conv: Conversation, cfg: QualityConfig) -> list[Reason]:
    """A refusal or AI disclaimer phrase anywhere in the response."""

    def check(_: Message, response: str) -> str | None:
        phrase = find_phrase(cfg.refusal_phrases, response)
        return f"the response says {phrase!r}" if phrase else None

    return _per_exchange(conv, "refusal", check)


def check_copy(conv: Conversation, cfg: QualityConfig) -> list[Reason]:
    """The response repeats the instruction (Alpaca input excluded: edits may echo it)."""

    def check(user: Message, response: str) -> str | None:
        inst, resp = rouge_tokens(user.content), rouge_tokens(response)
        score = rouge_l_f(inst, resp)
        if score >= cfg.max_copy_rouge:
            return (
                f"ROUGE-L {score:.2f} with the instruction >= max_copy_rouge={cfg.max_copy_rouge}"
            )
        if len(resp) >= cfg.copy_min_words and f" {' '.join(resp)} " in f" {' '.join(inst)} ":
            return f"the response ({len(resp)} words) appears verbatim in the instruction"
        return None

    return _per_exchange(conv, "copy", check)


def check_format(conv: Conversation, cfg: QualityConfig) -> list[Reason]:
    """Unbalanced code fences, JSON / N items / a list asked for but not given, truncation."""
    return _per_exchange(
        conv, "format", lambda u, r: format_problem(u.content, r, cfg.truncation_min_words)
    )


def check_repetition(conv: Conversation, cfg: QualityConfig) -> list[Reason]:
    """Repeated word n-gram share of the response above ``max_repetition``."""

    def check(_: Message, response: str) -> str | None:
        ratio = repetition_ratio(response, cfg.repetition_ngram)
        if ratio > cfg.max_repetition:
            n = cfg.repetition_ngram
            return f"{ratio:.2f} of {n}-grams repeat > max_repetition={cfg.max_repetition}"
        return None

    return _per_exchange(conv, "repetition", check)


def check_garbage(conv: Conversation, cfg: QualityConfig) -> list[Reason]:
    """Non-text character share of the response above ``max_garbage``."""

    def check(_: Message, response: str) -> str | None:
        ratio = garbage_ratio(response)
        long_enough = sum(not c.isspace() for c in response) >= cfg.garbage_min_chars
        if long_enough and ratio > cfg.max_garbage:
            return f"{ratio:.2f} of characters are not text > max_garbage={cfg.max_garbage}"
        return None

    return _per_exchange(conv, "garbage", check)


def check_unsafe(conv: Conversation, cfg: QualityConfig) -> list[Reason]:
    """A phrase of the unsafe list in the instruction or the response."""

    def check(user: Message, response: str) -> str | None:
        for where, text in (("instruction", user.text), ("response", response)):
            phrase = find_phrase(cfg.unsafe_words, text)
            if phrase:
                return f"the {where} contains {phrase!r}"
        return None

    return _per_exchange(conv, "unsafe", check)


HEURISTICS: dict[str, Callable[[Conversation, QualityConfig], list[Reason]]] = {
    "instruction_length": check_instruction_length,
    "response_length": check_response_length,
    "refusal": check_refusal,
    "copy": check_copy,
    "format": check_format,
    "repetition": check_repetition,
    "garbage": check_garbage,
    "unsafe": check_unsafe,
}


def record_scores(conv: Conversation, cfg: QualityConfig) -> dict[str, float]:
    """Per-record numbers for the report: the largest value over the record's exchanges."""
    pairs = exchanges(conv)
    if not pairs:
        return {}
    return {
        "instruction_words": max(word_count(u.text) for u, _ in pairs),
        "response_words": max(word_count(r) for _, r in pairs),
        "response_chars": max(len(r) for _, r in pairs),
        "repetition": max(repetition_ratio(r, cfg.repetition_ngram) for _, r in pairs),
        "copy": max(copy_score(u.content, r) for u, r in pairs),
        "garbage": max(garbage_ratio(r) for _, r in pairs),
    }


def load_unsafe_words(path: str | Path) -> list[str]:
    """One phrase a line; blank lines and lines starting with '#' are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ConfigError(
            f"unsafe_words_file {path}: {e.strerror or e}.", fix="check the path."
        ) from e
    return [s for line in lines if (s := line.strip()) and not s.startswith("#")]


def with_unsafe_words_file(cfg: QualityConfig) -> QualityConfig:
    """``cfg`` with the phrases of ``unsafe_words_file`` added to ``unsafe_words`` (read once)."""
    if not cfg.unsafe_words_file:
        return cfg
    extra = load_unsafe_words(cfg.unsafe_words_file)
    update = {"unsafe_words": [*cfg.unsafe_words, *extra], "unsafe_words_file": None}
    return cfg.model_copy(update=update)


def heuristic_verdict(conv: Conversation, cfg: QualityConfig) -> Verdict:
    """The reasons of every check in ``cfg.filters``, and the record's measures."""
    if not exchanges(conv):
        return Verdict([("no_response", "the record has no user/assistant exchange")])
    reasons = [r for name in cfg.filters for r in HEURISTICS[name](conv, cfg)]
    return Verdict(reasons, [], record_scores(conv, cfg))
