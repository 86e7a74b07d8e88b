"""Quality filtering and deduplication of instruction data: heuristics, an LLM judge, dedup.

Heuristics are small pure functions ``(conversation, cfg) -> [(reason, detail), ...]``, one per
concern (lengths, refusals, copying, format, repetition, garbage, unsafe words), with thresholds
in :class:`QualityConfig`; the text measures they use live in
:mod:`instructkit.data.text_measures`. Each looks at every (user, assistant) exchange; a
preference pair is checked through its chosen conversation, the response it teaches. An
optional LLM judge rates the records that pass the heuristics from 1 to 5 and drops those below
``judge_threshold``
(AlpaGasus: Chen et al. 2023, "AlpaGasus: Training a Better Alpaca with Fewer Data", which kept
ChatGPT ratings >= 4.5); judgments are journaled, so a killed run resumes without re-judging.
:func:`dedup_records` drops exact (normalized) and near (ROUGE-L) duplicates, keeping the first
occurrence. Usage::

    result = filter_records(loaded.records, QualityConfig(), judge_lm=lm)
    print(result.report.format())
    run_filter("train.json", "clean.json", QualityConfig())  # `instructkit data filter`
    run_dedup("train.json", "unique.json", DedupConfig(threshold=0.7))  # `instructkit data dedup`
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from instructkit.data.formats import LoadResult, load_records, save_records, to_row
from instructkit.data.records import Conversation, Message, PreferencePair, Record
from instructkit.data.similarity import (
    exact_duplicates,
    filter_near_duplicates,
    rouge_l_f,
    rouge_tokens,
)
from instructkit.data.text_measures import (
    copy_score,
    find_phrase,
    format_problem,
    garbage_ratio,
    repetition_ratio,
    word_count,
)
from instructkit.errors import ConfigError, InstructkitError, LMError
from instructkit.io import write_atomic, write_jsonl
from instructkit.jobs import Job, fingerprint
from instructkit.lm.base import LM, ChatRequest, request_key

__all__ = [
    "Reason",
    "HEURISTICS",
    "DEFAULT_REFUSAL_PHRASES",
    "DEFAULT_UNSAFE_WORDS",
    "QualityConfig",
    "DedupConfig",
    "Verdict",
    "QualityReport",
    "QualityResult",
    "Duplicate",
    "DedupResult",
    "QualityRun",
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
    "judge_request",
    "parse_score",
    "judge_conversations",
    "filter_records",
    "dedup_text",
    "dedup_records",
    "run_filter",
    "run_dedup",
]

Reason = tuple[str, str]  # (reason name, detail for people)

DEFAULT_REFUSAL_PHRASES: tuple[str, ...] = tuple(
    "as an ai|as a language model|as an ai language model|i'm sorry|i am sorry|i apologize|"
    "i cannot|i can't assist|i can't help with|i can't provide|i'm unable to|i am unable to|"
    "i'm not able to|i am not able to|i won't be able to|i must decline|cannot fulfill|"
    "can't fulfill|against my programming|my knowledge cutoff".split("|")
)
# A deliberately small seed list of phrases that have no benign reading in instruction data;
# real deployments pass their own list (``unsafe_words_file``), one phrase a line.
DEFAULT_UNSAFE_WORDS: tuple[str, ...] = tuple(
    "child pornography|child porn|how to build a bomb|how to make a bomb|pipe bomb|make meth|"
    "cook meth|synthesize sarin|kill yourself".split("|")
)
HEURISTIC_NAMES = tuple(
    "instruction_length response_length refusal copy format repetition garbage unsafe".split()
)
_SCORE_NAMES = tuple(
    "instruction_words response_words response_chars repetition copy garbage judge".split()
)


class QualityConfig(BaseModel):
    """Thresholds of ``instructkit data filter`` (YAML keys = fields = ``--set`` keys)."""

    model_config = ConfigDict(extra="forbid")

    filters: list[str] = Field(default_factory=lambda: list(HEURISTIC_NAMES))
    min_instruction_words: int = Field(3, ge=0)
    max_instruction_words: int = Field(2048, ge=1)
    min_response_words: int = Field(1, ge=0)
    max_response_words: int = Field(2048, ge=1)
    min_response_chars: int = Field(1, ge=0)
    max_response_chars: int = Field(16384, ge=1)
    refusal_phrases: list[str] = Field(default_factory=lambda: list(DEFAULT_REFUSAL_PHRASES))
    max_copy_rouge: float = Field(0.8, gt=0.0, le=1.0)
    copy_min_words: int = Field(8, ge=1)  # shorter responses may legitimately quote the prompt
    truncation_min_words: int = Field(10, ge=1)
    repetition_ngram: int = Field(3, ge=1)
    max_repetition: float = Field(0.3, ge=0.0, le=1.0)
    max_garbage: float = Field(0.2, ge=0.0, le=1.0)
    garbage_min_chars: int = Field(20, ge=1)
    unsafe_words: list[str] = Field(default_factory=lambda: list(DEFAULT_UNSAFE_WORDS))
    unsafe_words_file: str | None = None
    judge: str | None = None  # BACKEND[:MODEL] for the CLI; the API takes an LM object
    judge_threshold: float = Field(4.0, ge=1.0, le=5.0)
    drop_unparsed: bool = False
    judge_batch_size: int = Field(16, ge=1)
    judge_max_tokens: int = Field(256, ge=8)
    judge_journal: str | None = None

    @field_validator("filters")
    @classmethod
    def _known_filters(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in HEURISTIC_NAMES]
        if unknown:
            raise ValueError(f"unknown filter(s) {unknown}; valid: {', '.join(HEURISTIC_NAMES)}")
        return value

    @model_validator(mode="after")
    def _bounds_in_order(self) -> QualityConfig:
        problems = [
            f"{lo}={getattr(self, lo)} > {hi}={getattr(self, hi)}"
            for lo, hi in (
                ("min_instruction_words", "max_instruction_words"),
                ("min_response_words", "max_response_words"),
                ("min_response_chars", "max_response_chars"),
            )
            if getattr(self, lo) > getattr(self, hi)
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self


class DedupConfig(BaseModel):
    """Settings of ``instructkit data dedup``."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(0.7, gt=0.0, le=1.0)  # ROUGE-L at or above which rows are dups
    field: Literal["instruction", "instruction+input"] = "instruction"


# ---------------------------------------------------------------------------- heuristics


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


# ---------------------------------------------------------------------------- LLM judge

JUDGE_SYSTEM = "You review training examples for an AI assistant and rate each response."
JUDGE_TEMPLATE = """Rate the response to the instruction below on a scale from 1 to 5.

Judge accuracy (is everything it says correct?) and helpfulness (does it do what the \
instruction asks, completely and clearly?).
1 = wrong, off-topic or unusable; 2 = mostly wrong or unhelpful; 3 = partly correct or \
incomplete; 4 = correct and helpful with minor flaws; 5 = correct, complete and as helpful as \
it could be.

{context}### Instruction
{instruction}
{input}
### Response
{response}

Answer with "Score: N" (N from 1 to 5) on the first line, then one sentence saying why."""

_SCORE_KEYED = re.compile(r"\bscore\b\s*\**\s*[:=]\s*\**\s*(\d+(?:\.\d+)?)(?!\.?\d)", re.I)
_SCORE_ALONE = re.compile(r"^\W*(\d(?:\.\d+)?)\s*(?:/\s*5|out of 5)?\W*$", re.M)
_SCORE_OF_FIVE = re.compile(r"\b(\d(?:\.\d+)?)\s*(?:/\s*5|out of 5)\b", re.I)


def judge_request(conv: Conversation, cfg: QualityConfig) -> ChatRequest:
    """The rating request for the last exchange, earlier turns given as context."""
    msgs = conv.messages
    last = max(
        i
        for i in range(len(msgs) - 1)
        if msgs[i].role == "user" and msgs[i + 1].role == "assistant"
    )
    user, reply = msgs[last], msgs[last + 1]
    context = "".join(f"{m.role.capitalize()}: {m.text}\n" for m in msgs[:last])
    prompt = JUDGE_TEMPLATE.format(
        context=f"### Earlier conversation\n{context}\n" if context else "",
        instruction=user.content,
        input=f"\n### Input\n{user.input}\n" if user.input else "",
        response=reply.content,
    )
    messages = (("system", JUDGE_SYSTEM), ("user", prompt))
    return ChatRequest(messages, temperature=0.0, max_tokens=cfg.judge_max_tokens)


def parse_score(text: str) -> float | None:
    """The 1-5 score in a judgment, or None.

    "Score: N" wins (its last occurrence: a judge may revise itself); else a line holding only
    a number ("4", "4/5"); else one distinct "N/5" / "N out of 5". Values outside 1-5 are None.
    """
    keyed = _SCORE_KEYED.findall(text)
    if keyed:
        value = float(keyed[-1])
    elif alone := _SCORE_ALONE.search(text):
        value = float(alone.group(1))
    elif len(of_five := set(map(float, _SCORE_OF_FIVE.findall(text)))) == 1:
        value = of_five.pop()
    else:
        return None
    return value if 1.0 <= value <= 5.0 else None


def judge_conversations(
    convs: Sequence[Conversation], lm: LM, cfg: QualityConfig
) -> tuple[list[str], dict[str, Any]]:
    """One judgment text per conversation, and {model, calls, resumed}.

    With ``cfg.judge_journal`` set, every batch of judgments is appended to that journal keyed
    by the request hash (model, prompt and record), so a re-run asks only for what is missing;
    identical records are judged once.
    """
    requests = [judge_request(c, cfg) for c in convs]
    keys = [request_key(lm.name, r) for r in requests]
    fp = fingerprint({"prompt": JUDGE_TEMPLATE, "system": JUDGE_SYSTEM})  # keys name the model
    journal = Job(cfg.judge_journal, fp) if cfg.judge_journal else None
    done = {e["key"]: e["judgment"] for e in journal.records} if journal else {}
    resumed = len(set(keys) & done.keys())
    first_of = {k: i for i, k in reversed(list(enumerate(keys)))}
    todo = [first_of[k] for k in dict.fromkeys(keys) if k not in done]
    for start in range(0, len(todo), cfg.judge_batch_size):
        batch = todo[start : start + cfg.judge_batch_size]
        completions = lm.complete([requests[i] for i in batch])
        if len(completions) != len(batch):
            raise LMError(f"judge {lm.name} answered {len(completions)} of {len(batch)} requests.")
        entries = [
            {"key": keys[i], "score": parse_score(c.text), "judgment": c.text}
            for i, c in zip(batch, completions, strict=True)
        ]
        if journal:
            journal.append(entries)
            journal.save_state(judged=len(journal.records))
        done.update((e["key"], e["judgment"]) for e in entries)
    return [done[k] for k in keys], {"model": lm.name, "calls": len(todo), "resumed": resumed}


# ---------------------------------------------------------------------------- filtering


@dataclass
class Verdict:
    """What the filter decided for one record."""

    reasons: list[Reason] = field(default_factory=list)  # why it is dropped; empty: kept
    flags: list[Reason] = field(default_factory=list)  # noted, yet kept (unparsed judgments)
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def kept(self) -> bool:
        return not self.reasons


@dataclass
class QualityReport:
    """Counts per reason, score distributions and up to three examples per reason."""

    n_records: int
    n_kept: int
    counts: dict[str, int]  # records dropped with each reason (a record may have several)
    flags: dict[str, int]  # records kept with each flag
    distributions: dict[str, dict[str, float]]  # score -> {min, p50, p90, max}
    examples: dict[str, list[dict[str, Any]]]  # reason or flag -> [{row, detail, instruction}]
    judge: dict[str, Any] | None = None  # {model, calls, resumed, threshold, unparsed}
    n_invalid: int = 0  # unreadable rows, rejected before filtering (set by run_filter)

    @property
    def n_rejected(self) -> int:
        return self.n_records - self.n_kept

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "n_rejected": self.n_rejected}

    def format(self) -> str:
        """A plain-text table: counts per reason with a first example, then score quantiles."""
        head = f"{self.n_records} records: {self.n_kept} kept, {self.n_rejected} rejected"
        lines = [head + (f"; {self.n_invalid} unreadable rows rejected" if self.n_invalid else "")]
        table = [(name, n, self.examples.get(name, [])) for name, n in self.counts.items()]
        table += [
            (f"{name} (kept)", n, self.examples.get(name, [])) for name, n in self.flags.items()
        ]
        table += [("invalid", self.n_invalid, [])] if self.n_invalid else []
        if table:
            lines.append(f"{'reason':<24}{'records':>8}  first example")
        for name, n, ex in table:
            first = f"row {ex[0]['row']}: {ex[0]['detail']}" if ex else ""
            lines.append(f"{name:<24}{n:>8}  {first}")
        quantiles = ("min", "p50", "p90", "max")
        if self.distributions:
            lines.append(f"{'score':<24}" + "".join(f"{q:>10}" for q in quantiles))
        for name, dist in self.distributions.items():
            lines.append(f"{name:<24}" + "".join(f"{dist[q]:>10.4g}" for q in quantiles))
        if self.judge:
            j = self.judge
            lines.append(
                f"judge {j['model']}: {j['calls']} calls, {j['resumed']} resumed, "
                f"threshold {j['threshold']:g}, {j['unparsed']} unparsed"
            )
        return "\n".join(lines)


@dataclass
class QualityResult:
    kept: list[Record]
    rejected: list[tuple[Record, list[Reason]]]
    report: QualityReport
    verdicts: list[Verdict]  # one per input record, in order


def _verdict(conv: Conversation, cfg: QualityConfig) -> Verdict:
    if not exchanges(conv):
        return Verdict([("no_response", "the record has no user/assistant exchange")])
    reasons = [r for name in cfg.filters for r in HEURISTICS[name](conv, cfg)]
    return Verdict(reasons, [], record_scores(conv, cfg))


def _apply_judge(
    convs: list[Conversation], verdicts: list[Verdict], lm: LM, cfg: QualityConfig
) -> dict[str, Any]:
    """Judge the records the heuristics kept: a low score is a reason to drop, an unparseable
    judgment a flag (or, with ``drop_unparsed``, a reason)."""
    todo = [i for i, v in enumerate(verdicts) if v.kept]
    judgments, stats = judge_conversations([convs[i] for i in todo], lm, cfg)
    unparsed = 0
    for i, text in zip(todo, judgments, strict=True):
        verdict, score = verdicts[i], parse_score(text)
        if score is None:
            unparsed += 1
            reason = ("judge_unparsed", f"no 1-5 score in the judgment {text[:60]!r}")
            (verdict.reasons if cfg.drop_unparsed else verdict.flags).append(reason)
            continue
        verdict.scores["judge"] = score
        if score < cfg.judge_threshold:
            detail = f"judge score {score:g} < judge_threshold={cfg.judge_threshold:g}"
            verdict.reasons.append(("judge", detail))
    return {**stats, "threshold": cfg.judge_threshold, "unparsed": unparsed}


def _summary(values: list[float]) -> dict[str, float]:
    """min, median, 90th percentile (linear interpolation) and max."""
    v = sorted(values)

    def quantile(q: float) -> float:
        pos = q * (len(v) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(v) - 1)
        return round(v[lo] + (v[hi] - v[lo]) * (pos - lo), 4)

    return {
        "min": round(v[0], 4),
        "p50": quantile(0.5),
        "p90": quantile(0.9),
        "max": round(v[-1], 4),
    }


def _first_per_name(reasons: list[Reason]) -> dict[str, str]:
    first: dict[str, str] = {}
    for name, detail in reasons:
        first.setdefault(name, detail)
    return first


def _report(
    verdicts: list[Verdict],
    rows: list[int],
    convs: list[Conversation],
    judge: dict[str, Any] | None,
) -> QualityReport:
    counts: Counter[str] = Counter()
    flags: Counter[str] = Counter()
    examples: dict[str, list[dict[str, Any]]] = {}
    for verdict, row, conv in zip(verdicts, rows, convs, strict=True):
        for table, reasons in ((counts, verdict.reasons), (flags, verdict.flags)):
            for name, detail in _first_per_name(reasons).items():
                table[name] += 1
                shown = examples.setdefault(name, [])
                if len(shown) < 3:
                    first_user = next((m.text for m in conv.turns if m.role == "user"), "")
                    shown.append({"row": row, "detail": detail, "instruction": first_user[:120]})
    distributions = {
        name: _summary(values)
        for name in _SCORE_NAMES
        if (values := [v.scores[name] for v in verdicts if name in v.scores])
    }
    n_kept = sum(v.kept for v in verdicts)
    return QualityReport(
        len(verdicts),
        n_kept,
        dict(counts.most_common()),
        dict(flags.most_common()),
        distributions,
        examples,
        judge,
    )


def filter_records(
    records: Sequence[Record],
    cfg: QualityConfig,
    judge_lm: LM | None = None,
    *,
    rows: Sequence[int] | None = None,
) -> QualityResult:
    """Run the heuristics in ``cfg.filters``, then (with ``judge_lm``) the LLM judge.

    ``rows`` are the source row numbers the report's examples cite (default 1..n).
    """
    rows = list(rows) if rows is not None else list(range(1, len(records) + 1))
    if len(rows) != len(records):
        raise InstructkitError(f"{len(rows)} row numbers given for {len(records)} records.")
    if cfg.unsafe_words_file:
        extra = load_unsafe_words(cfg.unsafe_words_file)
        update = {"unsafe_words": [*cfg.unsafe_words, *extra], "unsafe_words_file": None}
        cfg = cfg.model_copy(update=update)
    convs = [r.chosen_conversation() if isinstance(r, PreferencePair) else r for r in records]
    verdicts = [_verdict(c, cfg) for c in convs]
    judge = _apply_judge(convs, verdicts, judge_lm, cfg) if judge_lm is not None else None
    report = _report(verdicts, rows, convs, judge)
    pairs = list(zip(records, verdicts, strict=True))
    kept = [r for r, v in pairs if v.kept]
    return QualityResult(kept, [(r, v.reasons) for r, v in pairs if not v.kept], report, verdicts)


# ---------------------------------------------------------------------------- dedup


@dataclass
class Duplicate:
    index: int  # position of the dropped record
    match: int  # position of the kept record it duplicates
    similarity: float  # ROUGE-L F1 of their dedup texts (1.0 for exact duplicates)
    reason: str  # "exact_duplicate" or "near_duplicate"


@dataclass
class DedupResult:
    kept: list[Record]
    rejected: list[tuple[Record, list[Reason]]]
    duplicates: list[Duplicate]  # one per rejected record, in the same order


def dedup_text(record: Record, field: str = "instruction") -> str:
    """The user turns of a record joined by newlines; ``instruction+input`` adds Alpaca inputs."""
    prompt = record.prompt if isinstance(record, PreferencePair) else record.messages
    users = [m for m in prompt if m.role == "user"]
    return "\n".join(m.text if field == "instruction+input" else m.content for m in users)


def dedup_records(
    records: Sequence[Record], cfg: DedupConfig, *, rows: Sequence[int] | None = None
) -> DedupResult:
    """Drop exact (normalized) duplicates, then ROUGE-L near duplicates; first occurrence kept.

    Near duplicates use :func:`~instructkit.data.similarity.filter_near_duplicates` (the
    Self-Instruct rule, MinHash LSH candidates). Texts without a-z0-9 tokens (e.g. CJK) are
    only deduplicated exactly. ``rows`` are the source row numbers details cite.
    """
    rows = list(rows) if rows is not None else list(range(1, len(records) + 1))
    texts = [dedup_text(r, cfg.field) for r in records]
    first, exact = exact_duplicates(texts)
    _, near = filter_near_duplicates([texts[i] for i in first], cfg.threshold)
    dups = [Duplicate(first[i], first[j], sim, "near_duplicate") for i, j, sim in near]
    home = {d.index: d.match for d in dups}  # a near-dropped record -> the kept one it matches
    details = {
        d.index: f"ROUGE-L {d.similarity:.3f} >= {cfg.threshold} on {cfg.field} with row "
        f"{rows[d.match]}"
        for d in dups
    }
    for i, j in exact:
        k = home.get(j, j)
        sim = 1.0 if k == j else rouge_l_f(rouge_tokens(texts[k]), rouge_tokens(texts[i]))
        dups.append(Duplicate(i, k, sim, "exact_duplicate"))
        details[i] = f"same {cfg.field} (normalized) as row {rows[j]}"
        details[i] += f", itself a near duplicate of row {rows[k]}" if k != j else ""
    dups.sort(key=lambda d: d.index)
    dropped = {d.index for d in dups}
    return DedupResult(
        [r for i, r in enumerate(records) if i not in dropped],
        [(records[d.index], [(d.reason, details[d.index])]) for d in dups],
        dups,
    )


# ---------------------------------------------------------------------------- workflows


@dataclass
class QualityRun:
    """What a filter or dedup run read, kept and rejected, and where it wrote them."""

    format: str
    n_rows: int
    n_kept: int
    n_rejected: int
    counts: dict[str, int]  # rejected rows per reason (a row may have several)
    rejects_path: Path
    notes: list[str]
    report: QualityReport | None = None


def _beside(out: str | Path, suffix: str) -> Path:
    p = Path(out)
    return p.with_name(p.stem + suffix)


def _reject_row(
    row: int, reasons: list[Reason], record: Record, fmt: str, **extra: Any
) -> dict[str, Any]:
    """One line of a rejects file: {row, reasons: [{reason, detail}], record, ...}."""
    listed = [{"reason": name, "detail": detail} for name, detail in reasons]
    return {"row": row, "reasons": listed, "record": to_row(record, fmt)[0], **extra}


def _finish(
    loaded: LoadResult,
    kept: list[Record],
    rejects: list[dict[str, Any]],
    out: str | Path,
    rejects_path: str | Path | None,
) -> QualityRun:
    """Write kept records (input format) and all rejects, unreadable rows included; check that
    every row read is accounted for."""
    invalid = [
        {"row": r.row, "reasons": [{"reason": "invalid", "detail": r.reason}], "record": r.raw}
        for r in loaded.rejects
    ]
    rejects = sorted(rejects + invalid, key=lambda r: r["row"])
    if len(kept) + len(rejects) != loaded.n_rows:
        raise InstructkitError(
            f"internal error: {len(kept)} kept + {len(rejects)} rejected != {loaded.n_rows} rows."
        )
    notes = save_records(kept, out, loaded.format)
    target = Path(rejects_path) if rejects_path else _beside(out, ".rejects.jsonl")
    write_jsonl(rejects, target)
    counts = Counter(
        name for r in rejects for name in dict.fromkeys(x["reason"] for x in r["reasons"])
    )
    return QualityRun(
        loaded.format,
        loaded.n_rows,
        len(kept),
        len(rejects),
        dict(counts.most_common()),
        target,
        notes,
    )


def run_filter(
    src: str | Path,
    out: str | Path,
    cfg: QualityConfig,
    *,
    judge_lm: LM | None = None,
    rejects: str | Path | None = None,
    report: str | Path | None = None,
    fmt: str | None = None,
    skip_invalid: bool = False,
) -> QualityRun:
    """Filter ``src`` into ``out`` (same format); rejects default to OUT.rejects.jsonl.

    With a judge and no ``cfg.judge_journal``, judgments are journaled to OUT.judge.jsonl, so
    re-running the same command after a crash resumes.
    """
    loaded = load_records(src, fmt, skip_invalid=skip_invalid)
    if judge_lm is not None and cfg.judge_journal is None:
        cfg = cfg.model_copy(update={"judge_journal": str(_beside(out, ".judge.jsonl"))})
    result = filter_records(loaded.records, cfg, judge_lm, rows=loaded.row_numbers)
    result.report.n_invalid = len(loaded.rejects)
    rows = [
        _reject_row(row, v.reasons, record, loaded.format, scores=v.scores)
        for record, v, row in zip(loaded.records, result.verdicts, loaded.row_numbers, strict=True)
        if not v.kept
    ]
    run = _finish(loaded, result.kept, rows, out, rejects)
    run.report = result.report
    if report:
        write_atomic(report, [json.dumps(result.report.to_dict(), indent=2), "\n"])
    return run


def run_dedup(
    src: str | Path,
    out: str | Path,
    cfg: DedupConfig,
    *,
    rejects: str | Path | None = None,
    fmt: str | None = None,
    skip_invalid: bool = False,
) -> QualityRun:
    """Deduplicate ``src`` into ``out`` (same format); each reject names the row it duplicates
    (``duplicate_of``, plus ``duplicate_of_id`` when that record has an ``id``)."""
    loaded = load_records(src, fmt, skip_invalid=skip_invalid)
    result = dedup_records(loaded.records, cfg, rows=loaded.row_numbers)
    rows = []
    for dup, (record, reasons) in zip(result.duplicates, result.rejected, strict=True):
        match = loaded.records[dup.match]
        extra = {
            "duplicate_of": loaded.row_numbers[dup.match],
            "similarity": round(dup.similarity, 4),
        }
        if "id" in match.metadata:
            extra["duplicate_of_id"] = match.metadata["id"]
        rows.append(
            _reject_row(loaded.row_numbers[dup.index], reasons, record, loaded.format, **extra)
        )
    return _finish(loaded, result.kept, rows, out, rejects)
