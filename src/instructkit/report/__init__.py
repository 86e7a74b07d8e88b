"""Reports of evaluation results: one self-contained HTML file (:mod:`.html`) from results
files (:mod:`.results`)."""

from instructkit.report.html import render_report, write_report
from instructkit.report.results import (
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
