"""The quality workflows behind ``instructkit data filter`` and ``instructkit data dedup``.

Each reads a file with the one loader, decides per record, and writes the kept records in the
input's format and every other row (unreadable ones included) to a rejects file, one
``{row, reasons: [{reason, detail}], record, ...}`` per line; it checks that every row read
ends up in one of the two. The decisions live in their own modules: the heuristics in
:mod:`~instructkit.data.heuristics` (settings in :mod:`~instructkit.data.quality_config`),
scoring and filtering in :mod:`~instructkit.data.quality_filter`, the report in
:mod:`~instructkit.data.quality_report`, dedup in :mod:`~instructkit.data.dedup`. A model
score comes in as a scorer callable (see
:class:`instructkit.evaluate.quality_judge.QualityScorer`)::

    run_filter("train.json", "clean.json", QualityConfig())  # `instructkit data filter`
    run_filter("train.json", "clean.json", cfg, scorer=quality_scorer(lm, journal="j.jsonl"))
    run_dedup("train.json", "unique.json", DedupConfig(threshold=0.7))  # `instructkit data dedup`
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instructkit.data.dedup import DedupConfig, dedup_records
from instructkit.data.formats import LoadResult, load_records, save_records, to_row
from instructkit.data.heuristics import Reason
from instructkit.data.quality_config import QualityConfig
from instructkit.data.quality_filter import Scorer, filter_records
from instructkit.data.quality_report import QualityReport
from instructkit.data.records import Record
from instructkit.errors import InstructkitError
from instructkit.io import beside, write_atomic, write_jsonl

__all__ = ["QualityRun", "run_filter", "run_dedup"]


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
    target = Path(rejects_path) if rejects_path else beside(out, ".rejects.jsonl")
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
    scorer: Scorer | None = None,
    rejects: str | Path | None = None,
    report: str | Path | None = None,
    fmt: str | None = None,
    skip_invalid: bool = False,
) -> QualityRun:
    """Filter ``src`` into ``out`` (same format); rejects default to OUT.rejects.jsonl.

    With a ``scorer``, the records that pass the heuristics are rated too (a resumable LLM
    rating: :func:`instructkit.evaluate.quality_judge.quality_scorer`).
    """
    loaded = load_records(src, fmt, skip_invalid=skip_invalid)
    result = filter_records(loaded.records, cfg, scorer=scorer, rows=loaded.row_numbers)
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
