"""Filtering records on quality: the heuristics, then an optional model score.

:func:`filter_records` runs the checks of ``cfg.filters`` on every record (a preference pair
through its chosen conversation, the response it teaches), then hands the survivors to a
:data:`Scorer`, a plain callable that rates conversations from 1 to 5. The data layer knows no
LM: the LLM rating (AlpaGasus, Chen et al. 2023, "AlpaGasus: Training a Better Alpaca with Fewer
Data", which kept ChatGPT ratings >= 4.5) is built in
:func:`instructkit.evaluate.quality_judge.quality_scorer`, and any other scorer (a reward model,
a fake in tests) plugs in the same way. A score below ``judge_threshold`` is a reason to drop;
an unparseable rating is a flag (or, with ``drop_unparsed``, a reason)::

    result = filter_records(records, QualityConfig())
    result = filter_records(records, cfg, scorer=quality_scorer(lm, journal="j.jsonl"))
    print(result.report.format())
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from instructkit.data.heuristics import Reason, Verdict, heuristic_verdict, with_unsafe_words_file
from instructkit.data.quality_config import QualityConfig
from instructkit.data.quality_report import QualityReport, build_report
from instructkit.data.records import Conversation, PreferencePair, Record
from instructkit.errors import InstructkitError

__all__ = ["Scorer", "QualityResult", "apply_scores", "filter_records"]

# Rates conversations: per conversation, its 1-5 score (None when the rating could not be
# read) and the rater's raw text, in order.
Scorer = Callable[[Sequence[Conversation]], list[tuple[float | None, str]]]


@dataclass
class QualityResult:
    kept: list[Record]
    rejected: list[tuple[Record, list[Reason]]]
    report: QualityReport
    verdicts: list[Verdict]  # one per input record, in order


def apply_scores(
    verdicts: Sequence[Verdict], scored: Sequence[tuple[float | None, str]], cfg: QualityConfig
) -> int:
    """Record each (score, text) in its verdict: a score under ``judge_threshold`` is a reason,
    an unparsed rating a flag (a reason with ``drop_unparsed``). Returns the unparsed count."""
    unparsed = 0
    for verdict, (score, text) in zip(verdicts, scored, strict=True):
        if score is None:
            unparsed += 1
            reason = ("judge_unparsed", f"no 1-5 score in the judgment {text[:60]!r}")
            (verdict.reasons if cfg.drop_unparsed else verdict.flags).append(reason)
            continue
        verdict.scores["judge"] = score
        if score < cfg.judge_threshold:
            detail = f"judge score {score:g} < judge_threshold={cfg.judge_threshold:g}"
            verdict.reasons.append(("judge", detail))
    return unparsed


def _score_survivors(
    convs: list[Conversation], verdicts: list[Verdict], scorer: Scorer, cfg: QualityConfig
) -> dict[str, Any]:
    """Score the records the heuristics kept; the report's judge summary."""
    todo = [i for i, v in enumerate(verdicts) if v.kept]
    scored = scorer([convs[i] for i in todo])
    if len(scored) != len(todo):
        raise InstructkitError(
            f"the scorer returned {len(scored)} ratings for {len(todo)} records."
        )
    unparsed = apply_scores([verdicts[i] for i in todo], scored, cfg)
    return {
        "model": cfg.judge,
        "scored": len(todo),
        "threshold": cfg.judge_threshold,
        "unparsed": unparsed,
    }


def filter_records(
    records: Sequence[Record],
    cfg: QualityConfig,
    *,
    scorer: Scorer | None = None,
    rows: Sequence[int] | None = None,
) -> QualityResult:
    """Run the heuristics in ``cfg.filters``, then (with ``scorer``) score the survivors.

    ``rows`` are the source row numbers the report's examples cite (default 1..n).
    """
    rows = list(rows) if rows is not None else list(range(1, len(records) + 1))
    if len(rows) != len(records):
        raise InstructkitError(f"{len(rows)} row numbers given for {len(records)} records.")
    cfg = with_unsafe_words_file(cfg)
    convs = [r.chosen_conversation() if isinstance(r, PreferencePair) else r for r in records]
    verdicts = [heuristic_verdict(c, cfg) for c in convs]
    judge = _score_survivors(convs, verdicts, scorer, cfg) if scorer is not None else None
    report = build_report(verdicts, rows, convs, judge)
    pairs = list(zip(records, verdicts, strict=True))
    kept = [r for r, v in pairs if v.kept]
    return QualityResult(kept, [(r, v.reasons) for r, v in pairs if not v.kept], report, verdicts)
