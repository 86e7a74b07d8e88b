"""Reports of evaluation results: one self-contained HTML file (see :mod:`.html`)."""

from instructkit.report.html import (
    HumanSummary,
    IFEvalSummary,
    ItemScores,
    JudgeSummary,
    ReportData,
    TaskRow,
    demo_metrics_to_results,
    holm_adjust,
    load_results,
    parse_results,
    render_report,
    write_report,
)

__all__ = [
    "HumanSummary",
    "IFEvalSummary",
    "ItemScores",
    "JudgeSummary",
    "ReportData",
    "TaskRow",
    "demo_metrics_to_results",
    "holm_adjust",
    "load_results",
    "parse_results",
    "render_report",
    "write_report",
]
