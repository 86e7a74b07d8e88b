"""Reports of evaluation results: one self-contained HTML file (:mod:`.html`) from results
files in the one schema (:mod:`instructkit.evaluate.results`), loaded and merged by
:mod:`.results`; the pages of ``optimize prompt`` (:mod:`.prompt`) and ``optimize program``
(:mod:`.program`) runs, from the sections they share (:mod:`.runs`); the page of a ``train
ppo|grpo|dpo|reward`` run (:mod:`.rl`)."""

from instructkit.report.html import render_report, write_report
from instructkit.report.program import write_program_report
from instructkit.report.prompt import write_prompt_report
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
    report_data,
)
from instructkit.report.rl import render_rl_report, write_rl_report

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
    "report_data",
    "render_report",
    "render_rl_report",
    "write_report",
    "write_rl_report",
    "write_program_report",
    "write_prompt_report",
]
