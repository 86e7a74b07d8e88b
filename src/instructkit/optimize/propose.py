"""LM-proposed instructions and the checks every proposal passes before it is scored.

An instruction search asks a *proposer* LM to rewrite an instruction, grounded in a summary of
the data (:func:`~instructkit.optimize.templates.describe_data`), the program's structure and
examples the instruction got wrong, as APE (Zhou et al. 2022, "Large Language Models Are
Human-Level Prompt Engineers") proposes instructions from demonstrations and MIPRO (Opsahl-Ong
et al. 2024) grounds its proposals in a dataset summary and the program. Usage::

    failures = [Failure({"text": "Cold soup."}, "negative", "positive")]
    prompt = rewrite_prompt("Classify the text.", failures, summary, structure="text -> label")
    text = propose_rewrite(proposer_lm, prompt, seed=3)          # str, or None if it failed
    problems = proposal_problems(text, required=("positive", "negative"), max_chars=600)

Choices taken: one proposal per call (a reply is cleaned of quotes and "Instruction:" labels,
and only its first paragraph kept); a proposal is refused when it is empty, longer than
``max_chars``, or drops a word its parent had to name (an output field or a label); duplicates
are refused by the search that keeps the pool (:mod:`instructkit.optimize.evolutionary`).

:func:`propose_instructions` asks a proposer for ``n`` new instructions at once (APE's
generation step, grounded like MIPRO's proposer): each one is checked with
:func:`~instructkit.optimize.templates.instruction_problems` (names every input field and the
labels or output field) and deduplicated (exact, after normalization, and ROUGE-L >= ``novelty``
against the others and ``existing`` ones); the refused ones come back with the reason::

    found = propose_instructions(ask, spec, 8, structure="Predict(text -> label)",
                                 failures=failures, seed=0, existing=[initial])
    found.accepted, found.rejected            # [str], [(text, reason)]

Without a usable proposer, proposals come from text operators over sentences
(:func:`mutate_text`: swap a sentence for one from a pool, e.g. component-template sentences,
insert one, or drop one; :func:`crossover_sentences`: one-point crossover of two instructions'
sentences), pure functions of a seeded ``random.Random``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from instructkit.data.similarity import normalize_for_exact, rouge_l_f, rouge_tokens
from instructkit.optimize.bridge import instructkit_cause
from instructkit.optimize.templates import TaskSpec, describe_data, instruction_problems

__all__ = [
    "Failure",
    "LMProposals",
    "instructions_prompt",
    "propose_instructions",
    "clean_proposal",
    "mentions",
    "proposal_problems",
    "propose_rewrite",
    "rewrite_prompt",
    "crossover_sentences",
    "mutate_text",
    "split_sentences",
]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_LABEL_PREFIX = re.compile(
    r"^\s*(?:improved |new |rewritten )?(?:instruction|prompt)s?\s*[:\-]\s*", re.IGNORECASE
)


@dataclass(frozen=True)
class Failure:
    """An item the instruction got wrong: its inputs, the expected output and what came back."""

    inputs: Mapping[str, Any]
    expected: str
    got: str


def _short(value: Any, limit: int = 200) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def rewrite_prompt(
    instruction: str, failures: Sequence[Failure], summary: str, *, structure: str
) -> str:
    """The proposer's prompt: data summary, program structure, instruction, failure examples."""
    lines = [
        "You improve the instruction that a language model follows for a task.",
        "",
        "About the data:",
        summary,
        "",
        f"The model's program: {structure}",
        "",
        "Current instruction:",
        instruction,
    ]
    if failures:
        lines += ["", "Examples the model got wrong with this instruction:"]
        for f in failures:
            shown = "; ".join(f"{k}: {_short(v)}" for k, v in f.inputs.items())
            lines.append(f"- {shown} | expected: {_short(f.expected)} | got: {_short(f.got)}")
    lines += [
        "",
        "Write one improved instruction that would avoid these mistakes. Keep the names of the "
        "output field and of every label it uses. Reply with the instruction only.",
    ]
    return "\n".join(lines)


def clean_proposal(reply: str) -> str:
    """The instruction in a proposer's reply: its first paragraph, without quotes or a label."""
    text = reply.strip().strip("`").strip()
    text = _LABEL_PREFIX.sub("", text, count=1)
    text = re.split(r"\n\s*\n", text.strip(), maxsplit=1)[0]
    text = " ".join(text.split())
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def propose_rewrite(proposer_lm: Any, prompt: str, *, seed: int, temperature: float = 0.7) -> str:
    """One proposal from ``proposer_lm`` (a ``dspy.LM``), cleaned; "" when the reply is empty.

    The seed and temperature are passed with the request (a local model samples with them).
    A failure of the LM (e.g. its call budget) propagates as the instructkit error behind it.
    """
    try:
        replies = proposer_lm(prompt, temperature=temperature, seed=seed)
    except Exception as exc:
        cause = instructkit_cause(exc)
        if cause is not None and cause is not exc:
            raise cause from exc
        raise
    first = replies[0] if replies else ""
    text = first.get("text", "") if isinstance(first, Mapping) else first
    return clean_proposal(str(text or ""))


def mentions(text: str, word: str) -> bool:
    """``word`` occurs in ``text`` as a whole word (case-insensitive)."""
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE) is not None


def proposal_problems(text: str, *, required: Sequence[str], max_chars: int) -> list[str]:
    """Why ``text`` cannot be scored (empty list: it can): empty, too long, or missing a word
    in ``required`` (the output field or labels its parent named)."""
    if not text.strip():
        return ["empty"]
    problems = []
    if len(text) > max_chars:
        problems.append(f"longer than {max_chars} characters ({len(text)})")
    if missing := [w for w in required if not mentions(text, w)]:
        problems.append(f"does not name {missing}")
    return problems


# ----------------------------------------------- new instructions from the data (APE, MIPRO)


@dataclass(frozen=True)
class LMProposals:
    """Instructions a proposer wrote, in the order asked, and the refused ones with the reason."""

    accepted: list[str]
    rejected: list[tuple[str, str]]


def instructions_prompt(spec: TaskSpec, *, structure: str, failures: Sequence[Failure]) -> str:
    """The proposer's prompt for a new instruction: data summary
    (:func:`~instructkit.optimize.templates.describe_data`), program structure, and items a
    current instruction got wrong (inputs, expected, got)."""
    lines = [
        "You write the instruction that a language model follows for a task.",
        "",
        "About the data:",
        describe_data(spec),
        "",
        f"The model's program: {structure}",
    ]
    if failures:
        lines += ["", "Examples the model got wrong with its current instruction:"]
        for f in failures:
            shown = "; ".join(f"{k}: {_short(v)}" for k, v in f.inputs.items())
            lines.append(f"- {shown} | expected: {_short(f.expected)} | got: {_short(f.got)}")
    names = [*spec.inputs, *(spec.labels or [spec.output])]
    lines += [
        "",
        "Write one instruction for this task that would get these examples right. Name "
        f"{', '.join(names)}. Reply with the instruction only.",
    ]
    return "\n".join(lines)


def propose_instructions(
    ask: Callable[[str, int], str],
    spec: TaskSpec,
    n: int,
    *,
    structure: str,
    failures: Sequence[Failure] = (),
    seed: int = 0,
    existing: Sequence[str] = (),
    novelty: float = 0.9,
    max_chars: int = 600,
) -> LMProposals:
    """``n`` proposer calls, ``ask(prompt, seed) -> reply`` (e.g. a journaled
    :class:`~instructkit.optimize.budget.ProposerReplies`), one seed each drawn from ``seed``;
    each reply is cleaned (:func:`clean_proposal`) and kept only when it passes
    :func:`~instructkit.optimize.templates.instruction_problems`, is at most ``max_chars`` long
    and is no duplicate (exact or ROUGE-L >= ``novelty``) of a kept or an ``existing`` one."""
    prompt = instructions_prompt(spec, structure=structure, failures=failures)
    rng = random.Random(seed)
    seen = {normalize_for_exact(t) for t in existing}
    pool = [rouge_tokens(t) for t in existing]
    accepted: list[str] = []
    rejected: list[tuple[str, str]] = []
    for _ in range(n):
        text = clean_proposal(ask(prompt, rng.randrange(2**31)))
        if reason := _instruction_refusal(text, spec, seen, pool, novelty, max_chars):
            rejected.append((text, reason))
            continue
        seen.add(normalize_for_exact(text))
        pool.append(rouge_tokens(text))
        accepted.append(text)
    return LMProposals(accepted, rejected)


def _instruction_refusal(
    text: str,
    spec: TaskSpec,
    seen: set[str],
    pool: Sequence[list[str]],
    novelty: float,
    max_chars: int,
) -> str | None:
    if not text.strip():
        return "empty"
    if len(text) > max_chars:
        return f"longer than {max_chars} characters ({len(text)})"
    if problems := instruction_problems(text, spec):
        return "; ".join(problems)
    if normalize_for_exact(text) in seen:
        return "duplicate"
    tokens = rouge_tokens(text)
    for other in pool:
        if (sim := rouge_l_f(tokens, other)) >= novelty:
            return f"near duplicate (ROUGE-L {sim:.2f})"
    return None


# ------------------------------------------------- text operators: proposals without an LM


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` (split after ., ! or ? followed by whitespace)."""
    return [s for s in (p.strip() for p in _SENTENCE_END.split(text.strip())) if s]


def crossover_sentences(a: str, b: str, rng: random.Random) -> str:
    """One-point crossover at sentence level: a prefix of ``a``'s sentences, then a suffix of
    ``b``'s, without repeating a sentence."""
    sa, sb = split_sentences(a), split_sentences(b)
    cut_a, cut_b = rng.randint(1, len(sa)), rng.randint(0, len(sb) - 1)
    child = list(dict.fromkeys([*sa[:cut_a], *sb[cut_b:]]))
    return " ".join(child)


def _drop(sentences: list[str], pool: Sequence[str], rng: random.Random) -> list[str]:
    i = rng.randrange(len(sentences))
    return sentences[:i] + sentences[i + 1 :]


def _insert(sentences: list[str], pool: Sequence[str], rng: random.Random) -> list[str]:
    i = rng.randint(0, len(sentences))
    return [*sentences[:i], rng.choice(pool), *sentences[i:]]


def _swap(sentences: list[str], pool: Sequence[str], rng: random.Random) -> list[str]:
    i = rng.randrange(len(sentences))
    return [*sentences[:i], rng.choice(pool), *sentences[i + 1 :]]


_TEXT_OPERATORS: dict[str, Callable[[list[str], Sequence[str], random.Random], list[str]]] = {
    "swap": _swap,
    "insert": _insert,
    "drop": _drop,
}


def mutate_text(text: str, pool: Sequence[str], rng: random.Random) -> tuple[str, str]:
    """(child, operator name): swap, insert (needs ``pool``) or drop (needs 2+ sentences)."""
    sentences = split_sentences(text) or [text]
    ops = [
        n for n in _TEXT_OPERATORS if (n != "drop" or len(sentences) > 1) and (n == "drop" or pool)
    ]
    if not ops:
        return text, "none"
    name = rng.choice(ops)
    return " ".join(_TEXT_OPERATORS[name](sentences, pool, rng)), name
