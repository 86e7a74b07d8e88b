"""The HTML page of an ``instructkit optimize prompt`` run: ``DIR/report.html`` from ``DIR``.

    write_prompt_report("opt")     # reads opt/result.json and opt/history.jsonl

One self-contained page (no scripts, nothing fetched; plots are data: URIs drawn with
matplotlib as in :mod:`.html`), built from the sections :mod:`.runs` shares with the
``optimize program`` page: the initial and best instructions with their val and test scores
and the paired test comparison; fitness (mean val score) against task calls spent; the
instructions scored, best first; a few test items with the initial and the best answers; and,
after ``--method gradient`` (``result.json`` key ``gradient``), the token search's instruction
and the soft prompt's test score against the initial, with where the adapter is and how to use
it. Every text from the data or the model is HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from instructkit.report.html import _e
from instructkit.report.runs import (
    comparison_text,
    examples_section,
    fitness_curve,
    fitness_section,
    run_page,
    summary_section,
    write_run_report,
)

__all__ = ["fitness_curve", "render_prompt_report", "write_prompt_report"]

_TOP = 10


def _ranking(val_rows: Sequence[dict[str, Any]]) -> list[tuple[str, int, float]]:
    """(instruction, items scored, mean), most items first, then best mean."""
    scores: dict[str, list[float]] = {}
    for row in val_rows:
        scores.setdefault(row["instruction"], []).append(float(row["score"]))
    ranked = [(text, len(s), sum(s) / len(s)) for text, s in scores.items()]
    return sorted(ranked, key=lambda r: (-r[1], -r[2]))


def _ranking_table(ranked: list[tuple[str, int, float]]) -> str:
    body = "".join(
        f"<tr><td class='num'>{mean:.3f}</td><td class='num'>{n}</td><td>{_e(text)}</td></tr>"
        for text, n, mean in ranked[:_TOP]
    )
    return (
        f"<h2>Instructions scored (top {min(_TOP, len(ranked))} of {len(ranked)})</h2>"
        "<table><thead><tr><th>val mean</th><th>items</th><th>instruction</th></tr></thead>"
        f"<tbody>{body}</tbody></table><p class='note'>Racing (successive halving) scores weak "
        "instructions on fewer items: compare means only between rows with as many items.</p>"
    )


def _gradient_section(found: Mapping[str, Any], initial: Mapping[str, Any]) -> str:
    """``result.json``'s ``gradient``: the token search's instruction and the soft prompt's
    test score, each against the initial instruction on the same test items."""
    rows, notes = [], []
    discrete = found.get("discrete")
    if discrete is not None:
        rows.append(_gradient_row("token search", discrete["instruction"], discrete))
        objective = discrete.get("objective") or []
        if objective:
            notes.append(
                f"Token search objective (answer loss + fluency penalty) {objective[0]:.3f} "
                f"at the start, {objective[-1]:.3f} after {len(objective) - 1} step(s)."
            )
        if discrete.get("found") != discrete["instruction"]:
            notes.append(
                "The budget had no room to score the instruction found on val, so the initial "
                f"one competed instead; found: <q>{_e(discrete.get('found'))}</q>."
            )
    soft = found.get("soft_prompt")
    if soft is not None:
        rows.append(_gradient_row("soft prompt", "the initial instruction + the soft prompt", soft))
        notes.append(_soft_prompt_note(soft))
    return (
        "<h2>Gradient-based search</h2><table><thead><tr><th></th><th>instruction</th>"
        "<th>val</th><th>test</th><th>test - initial</th></tr></thead><tbody>"
        f"<tr><th>initial</th><td>{_e(initial['instruction'])}</td><td class='num'>"
        f"{initial['val']:.3f}</td><td class='num'>{initial['test']:.3f}</td><td></td></tr>"
        f"{''.join(rows)}</tbody></table>" + "".join(f"<p>{n}</p>" for n in notes)
    )


def _gradient_row(name: str, instruction: str, scores: Mapping[str, Any]) -> str:
    val = "" if scores.get("val") is None else f"{scores['val']:.3f}"
    return (
        f"<tr><th>{name}</th><td>{_e(instruction)}</td><td class='num'>{val}</td>"
        f"<td class='num'>{scores['test']:.3f}</td>"
        f"<td>{comparison_text(scores['test_comparison'])}</td></tr>"
    )


def _soft_prompt_note(soft: Mapping[str, Any]) -> str:
    adapter = _e(soft["adapter"])
    loss = soft.get("loss") or {}
    trained = (
        f"Soft prompt training loss {loss['first']:.3f} at the first step, {loss['last']:.3f} "
        "at the last. "
        if {"first", "last"} <= loss.keys()
        else ""
    )
    return (
        f"{trained}The soft prompt is a PEFT prompt-tuning adapter saved in <code>{adapter}"
        "</code>; use it on the run's task model (MODEL, what <code>--lm</code> named) with "
        "the initial instruction in the prompt, as it was trained: <code>instructkit serve "
        f"MODEL --adapter {adapter}</code>, a system <code>{{name: soft, model: MODEL, "
        f"adapter: {adapter}}}</code> in <code>instructkit eval run</code>, or "
        f'<code>LocalLM.load(MODEL, adapter="{adapter}")</code> in Python.'
    )


def render_prompt_report(result: dict[str, Any], history: Sequence[dict[str, Any]]) -> str:
    """The page for ``result`` (``result.json``) and ``history`` (``history.jsonl`` rows)."""
    val_rows = [r for r in history if r.get("phase") == "val"]
    sections = [
        summary_section(result),
        fitness_section(result, history),
        _ranking_table(_ranking(val_rows)),
        examples_section(result, history),
    ]
    if "gradient" in result:
        sections.append(_gradient_section(result["gradient"], result["initial"]))
    title = f"optimize prompt: {result['method']}, metric {result['metric']}"
    return run_page(title, sections)


def write_prompt_report(run_dir: str | Path, out_html: str | Path | None = None) -> Path:
    """Render ``run_dir/result.json`` + ``run_dir/history.jsonl`` to ``run_dir/report.html``
    (or ``out_html``), atomically."""
    return write_run_report(run_dir, "optimize prompt", render_prompt_report, out_html)
