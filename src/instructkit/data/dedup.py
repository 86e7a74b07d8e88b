"""Deduplication of instruction data: exact (normalized) and near (ROUGE-L) duplicates.

The text compared is a record's user turns (``field="instruction"``), optionally with their
Alpaca inputs (``"instruction+input"``). Exact duplicates after normalization go first; near
duplicates follow the Self-Instruct rule (ROUGE-L F1 >= ``threshold``, Wang et al. 2022) with
MinHash LSH candidates (:mod:`instructkit.data.similarity`). The first occurrence is kept and
every dropped record names the kept one it duplicates::

    result = dedup_records(records, DedupConfig(threshold=0.7))
    [(d.index, d.match, d.reason) for d in result.duplicates]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from instructkit.data.heuristics import Reason
from instructkit.data.records import PreferencePair, Record
from instructkit.data.similarity import (
    exact_duplicates,
    filter_near_duplicates,
    rouge_l_f,
    rouge_tokens,
)

__all__ = ["DedupConfig", "Duplicate", "DedupResult", "dedup_text", "dedup_records"]


class DedupConfig(BaseModel):
    """Settings of ``instructkit data dedup``."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(0.7, gt=0.0, le=1.0)  # ROUGE-L at or above which rows are dups
    field: Literal["instruction", "instruction+input"] = "instruction"


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
