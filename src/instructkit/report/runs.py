"""The sections that the pages of ``instructkit optimize`` runs share (:mod:`.prompt` for
``optimize prompt``, :mod:`.program` for ``optimize program``).

A run folder holds ``result.json`` and ``history.jsonl``; :func:`read_run` reads both. A history
row scored one *setting*: an instruction (``optimize prompt`` rows carry ``instruction``) or the
instructions of every predictor (``optimize program`` rows carry ``instructions``);
:func:`setting` makes either one key, and so does it for ``result.json``'s ``initial`` and
``best``. From those::

    result, history = read_run("opt", "optimize prompt")
    page = run_page(title, [summary_section(result), fitness_section(result, history),
                            examples_section(result, history)])
    write_run_report("opt", "optimize prompt", render)   # render(result, history) -> page

Every text from the data or the model is HTML-escaped; plots are data: URIs (:mod:`.html`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from instructkit.errors import DataFormatError
from instructkit.io import read_rows, write_atomic
from instructkit.report.html import _CSP, _CSS, _e, _figure, _mpl, _png_uri

__all__ = [
    "comparison_text",
    "examples_section",
    "fitness_curve",
    "fitness_section",
    "read_run",
    "run_page",
    "setting",
    "summary_section",
    "write_run_report",
]

_EXAMPLES = 6


def setting(row: Mapping[str, Any]) -> str:
    """What a history row (or a ``result.json`` outcome) scored, as one key: the instruction,
    or the instructions per predictor as sorted JSON."""
    if "instruction" in row:
        return str(row["instruction"])
    return json.dumps(row["instructions"], sort_keys=True, ensure_ascii=False)


def read_run(run_dir: str | Path, command: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``run_dir``'s ``result.json`` and the rows of its ``history.jsonl`` (``command`` names
    what writes such a folder, for the error)."""
    path = Path(run_dir) / "result.json"
    try:
        result = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataFormatError(
            f"cannot read the run's result: {e}.",
            path=path,
            fix=f"point at the output folder of instructkit {command}.",
        ) from e
    rows = read_rows(Path(run_dir) / "history.jsonl")
    return result, [row for _, row in rows if isinstance(row, dict)]


def fitness_curve(val_rows: Sequence[dict[str, Any]], n_val: int) -> list[tuple[int, float]]:
    """(calls spent, best mean val score on the whole val set so far): a step at each call
    that completes a setting's evaluation on all ``n_val`` items and beats the best."""
    scores: dict[str, list[float]] = {}
    calls, best, points = 0, float("-inf"), []
    for row in val_rows:
        calls += int(row["calls"])
        mine = scores.setdefault(setting(row), [])
        mine.append(float(row["score"]))
        if len(mine) == n_val and sum(mine) / n_val > best:
            best = sum(mine) / n_val
            points.append((calls, best))
    return points


def _fitness_plot(points: list[tuple[int, float]], spent: int, budget: int) -> str:
    fig = _figure(6.4, 3.2)
    ax = fig.add_subplot()
    if points:
        xs, ys = zip(*points, strict=True)
        end = max(spent, xs[-1])  # the best held until the last call spent
        ax.step([0, *xs, end], [ys[0], *ys, ys[-1]], where="post", color="#4c72b0")
        ax.plot(xs, ys, "o", color="#4c72b0")
    ax.axvline(budget, color="#c44e52", linestyle="--", label=_mpl(f"budget ({budget})"))
    ax.set_xlabel("task calls spent on val")
    ax.set_ylabel("best mean val score")
    ax.legend(loc="lower right")
    return _png_uri(fig)


def fitness_section(result: Mapping[str, Any], history: Sequence[dict[str, Any]]) -> str:
    """The plot of the best mean val score against the task calls spent on val."""
    val_rows = [r for r in history if r.get("phase") == "val"]
    points = fitness_curve(val_rows, int(result["sizes"]["val"]))
    spent = sum(int(r["calls"]) for r in val_rows)
    return (
        "<h2>Fitness vs calls</h2><figure>"
        f'<img src="{_fitness_plot(points, spent, int(result["budget"]))}" '
        'alt="best mean val score against task calls spent"><figcaption>Best mean val '
        "score of a candidate scored on every val item, against task calls spent."
        "</figcaption></figure>"
    )


def comparison_text(c: Mapping[str, Any]) -> str:
    """``{delta, ci, p}`` as "+0.100 (95% CI -0.050 to +0.250, paired permutation p = 0.3)"."""
    return (
        f"{c['delta']:+.3f} (95% CI {c['ci'][0]:+.3f} to {c['ci'][1]:+.3f}, "
        f"paired permutation p = {c['p']:.3g})"
    )


def summary_section(result: Mapping[str, Any]) -> str:
    """Initial and best with their val and test scores (and the instruction, when the run
    tuned one), the paired test comparison and the calls spent."""
    calls = result["calls"]
    one = "instruction" in result["initial"]
    rows = "".join(
        f"<tr><th>{name}</th>"
        + (f"<td>{_e(result[name]['instruction'])}</td>" if one else "")
        + f"<td class='num'>{result[name]['val']:.3f}</td>"
        f"<td class='num'>{result[name]['test']:.3f}</td></tr>"
        for name in ("initial", "best")
    )
    head = "<th></th>" + ("<th>instruction</th>" if one else "") + "<th>val</th><th>test</th>"
    stopped = f" The search stopped: {_e(result['stopped'])}." if "stopped" in result else ""
    return (
        f"<h2>Result</h2><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
        f"<p>Test, best - initial: {comparison_text(result['test_comparison'])}. Calls: task "
        f"{calls['task']} of a budget of {result['budget']}, proposer {calls['proposer']}, test "
        f"{calls['test']}; {result['wall_s']:.1f} s.{stopped}</p>"
    )


def _fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """The item's fields: the row's ``example``, else (a program history written before rows
    kept it) what the first stage received."""
    if "example" in row:
        return dict(row["example"])
    trace = row.get("trace") or [{}]
    return dict(trace[0].get("inputs", {}))


def _answer(row: Mapping[str, Any]) -> str:
    """The reply (``optimize prompt``), or what each stage of the program produced (its final
    outputs without a trace), else the error; as HTML."""
    if row.get("answer") is not None:
        return _e(row["answer"])
    trace = row.get("trace") or [{"stage": "", "outputs": row.get("outputs") or {}}]
    lines = [
        (f"{step['stage']}: " if step["stage"] else "")
        + "; ".join(f"{k}: {v}" for k, v in step["outputs"].items())
        for step in trace
    ]
    return "<br>".join(_e(line) for line in lines if line) or _e(row.get("error") or "")


def examples_section(result: Mapping[str, Any], history: Sequence[dict[str, Any]]) -> str:
    """A few test items: their fields, and the initial's and the best's answers and scores."""
    test_rows = [r for r in history if r.get("phase") == "test"]
    by = {(setting(r), r["item"]): r for r in test_rows}
    initial, best = setting(result["initial"]), setting(result["best"])
    body = []
    for i in sorted({r["item"] for r in test_rows})[:_EXAMPLES]:
        a, b = by.get((initial, i)), by.get((best, i))
        if a is None or b is None:
            continue
        fields = "<br>".join(f"<b>{_e(k)}</b>: {_e(v)}" for k, v in _fields(a).items())
        body.append(
            f"<tr><td>{fields}</td><td>{_answer(a)} ({a['score']:g})</td>"
            f"<td>{_answer(b)} ({b['score']:g})</td></tr>"
        )
    return (
        "<h2>Test examples</h2><table><thead><tr><th>item (inputs and reference)</th>"
        f"<th>initial answer (score)</th><th>best answer (score)</th></tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def run_page(title: str, sections: Sequence[str]) -> str:
    """One self-contained page (no scripts, nothing fetched) of ``sections`` under ``title``."""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{_e(title)}</h1>",
            *sections,
            "<footer>Report generated by instructkit.</footer></body></html>\n",
        ]
    )


def write_run_report(
    run_dir: str | Path,
    command: str,
    render: Callable[[dict[str, Any], list[dict[str, Any]]], str],
    out_html: str | Path | None = None,
) -> Path:
    """``render`` of ``run_dir``'s result and history, written atomically to
    ``run_dir/report.html`` (or ``out_html``)."""
    result, history = read_run(run_dir, command)
    target = Path(out_html) if out_html is not None else Path(run_dir) / "report.html"
    write_atomic(target, [render(result, history)])
    return target
