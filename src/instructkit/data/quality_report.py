"""The quality report of a filter run: counts per reason, measure quantiles, examples.

:func:`build_report` turns the per-record :class:`~instructkit.data.heuristics.Verdict` list
into a :class:`QualityReport`: how many records each reason dropped (a record counts once per
reason), how many were kept with a flag, min/p50/p90/max of each measure (through
:func:`instructkit.data.quantiles.summarize`, the project's one percentile), and up to three
examples per reason citing source rows::

    report = build_report(verdicts, rows, convs, judge=None)
    print(report.format())                    # plain-text table
    json.dumps(report.to_dict())              # what ``--report FILE`` writes
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from instructkit.data.heuristics import Reason, Verdict
from instructkit.data.quantiles import summarize
from instructkit.data.records import Conversation

__all__ = ["MEASURES", "QualityReport", "build_report"]

# The per-record measures summarized, in report order ("judge" is the model score, if any).
MEASURES = tuple(
    "instruction_words response_words response_chars repetition copy garbage judge".split()
)
_EXAMPLES = 3  # examples kept per reason


@dataclass
class QualityReport:
    """Counts per reason, score distributions and up to three examples per reason."""

    n_records: int
    n_kept: int
    counts: dict[str, int]  # records dropped with each reason (a record may have several)
    flags: dict[str, int]  # records kept with each flag
    distributions: dict[str, dict[str, float]]  # score -> {min, p50, p90, max}
    examples: dict[str, list[dict[str, Any]]]  # reason or flag -> [{row, detail, instruction}]
    judge: dict[str, Any] | None = None  # {model, scored, threshold, unparsed}
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
                f"judge {j['model'] or ''}".rstrip()
                + f": {j['scored']} records scored, threshold {j['threshold']:g}, "
                f"{j['unparsed']} unparsed"
            )
        return "\n".join(lines)


def _first_per_name(reasons: list[Reason]) -> dict[str, str]:
    first: dict[str, str] = {}
    for name, detail in reasons:
        first.setdefault(name, detail)
    return first


def build_report(
    verdicts: Sequence[Verdict],
    rows: Sequence[int],
    convs: Sequence[Conversation],
    judge: dict[str, Any] | None,
) -> QualityReport:
    """The report of ``verdicts`` (one per record); ``rows`` are the source rows examples cite."""
    counts: Counter[str] = Counter()
    flags: Counter[str] = Counter()
    examples: dict[str, list[dict[str, Any]]] = {}
    for verdict, row, conv in zip(verdicts, rows, convs, strict=True):
        for table, reasons in ((counts, verdict.reasons), (flags, verdict.flags)):
            for name, detail in _first_per_name(reasons).items():
                table[name] += 1
                shown = examples.setdefault(name, [])
                if len(shown) < _EXAMPLES:
                    first_user = next((m.text for m in conv.turns if m.role == "user"), "")
                    shown.append({"row": row, "detail": detail, "instruction": first_user[:120]})
    distributions = {
        name: summarize(values)
        for name in MEASURES
        if (values := [v.scores[name] for v in verdicts if name in v.scores])
    }
    return QualityReport(
        len(verdicts),
        sum(v.kept for v in verdicts),
        dict(counts.most_common()),
        dict(flags.most_common()),
        distributions,
        examples,
        judge,
    )
