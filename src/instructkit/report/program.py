"""The HTML page of an ``instructkit optimize program`` run: ``DIR/report.html`` from ``DIR``.

    write_program_report("opt")    # reads opt/result.json and opt/history.jsonl

One self-contained page, built from the sections :mod:`.runs` shares with the ``optimize
prompt`` page (:mod:`.prompt`): the initial and the best program's val and test scores with the
paired test comparison and the calls; the stages (each predictor's instruction before and after,
and its val gain alone: the initial program with only that stage changed); the best mean val
score against task calls spent; a few test items with what the initial and the best program
answered. Every text from the data, the program or the model is HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from instructkit.report.html import _e
from instructkit.report.runs import (
    examples_section,
    fitness_section,
    run_page,
    summary_section,
    write_run_report,
)

__all__ = ["render_program_report", "stages_section", "write_program_report"]


def _gain(value: float | None) -> str:
    return "n/a (no budget left to score it)" if value is None else f"{value:+.3f}"


def _after(stage: Mapping[str, Any]) -> str:
    changed = stage["instruction_after"] != stage["instruction_before"]
    return _e(stage["instruction_after"]) if changed else "(kept)"


def stages_section(stages: Sequence[Mapping[str, Any]]) -> str:
    """``result.json``'s ``stages``: name, instruction before and after, val gain alone."""
    body = "".join(
        f"<tr><th>{_e(s['name'])}</th><td>{_e(s['instruction_before'])}</td>"
        f"<td>{_after(s)}</td><td class='num'>{_gain(s['val_gain'])}</td></tr>"
        for s in stages
    )
    return (
        "<h2>Stages</h2><table><thead><tr><th>stage</th><th>instruction before</th>"
        "<th>instruction after</th><th>val gain alone</th></tr></thead>"
        f"<tbody>{body}</tbody></table><p class='note'>Val gain alone: the val score of the "
        "initial program with only this stage's instruction changed, minus the initial "
        "program's. Gains of stages that interact need not add up to the total gain.</p>"
    )


def render_program_report(result: dict[str, Any], history: Sequence[dict[str, Any]]) -> str:
    """The page for ``result`` (``result.json``) and ``history`` (``history.jsonl`` rows)."""
    title = f"optimize program: {result.get('method', 'permodule')}, metric {result['metric']}"
    sections = [
        summary_section(result),
        stages_section(result["stages"]),
        fitness_section(result, history),
        examples_section(result, history),
    ]
    return run_page(title, sections)


def write_program_report(run_dir: str | Path, out_html: str | Path | None = None) -> Path:
    """Render ``run_dir/result.json`` + ``run_dir/history.jsonl`` to ``run_dir/report.html``
    (or ``out_html``), atomically."""
    return write_run_report(run_dir, "optimize program", render_program_report, out_html)
