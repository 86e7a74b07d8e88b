"""The HTML page of an ``instructkit optimize prompt`` run: ``DIR/report.html`` from ``DIR``.

    write_prompt_report("opt")     # reads opt/result.json and opt/history.jsonl

One self-contained page (no scripts, nothing fetched; plots are data: URIs drawn with
matplotlib as in :mod:`.html`): the initial and best instructions with their val and test scores
and the paired test comparison; fitness (mean val score) against task calls spent; the
instructions scored, best first; a few test items with the initial and the best answers. Every
text from the data or the model is HTML-escaped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from instructkit.errors import DataFormatError
from instructkit.io import read_rows, write_atomic
from instructkit.report.html import _CSP, _CSS, _e, _figure, _mpl, _png_uri

__all__ = ["fitness_curve", "render_prompt_report", "write_prompt_report"]

_EXAMPLES = 6
_TOP = 10


def fitness_curve(val_rows: Sequence[dict[str, Any]], n_val: int) -> list[tuple[int, float]]:
    """(calls spent, best mean val score on the whole val set so far): a step at each call
    that completes an instruction's evaluation on all ``n_val`` items and beats the best."""
    scores: dict[str, list[float]] = {}
    calls, best, points = 0, float("-inf"), []
    for row in val_rows:
        calls += int(row["calls"])
        mine = scores.setdefault(row["instruction"], [])
        mine.append(float(row["score"]))
        if len(mine) == n_val and sum(mine) / n_val > best:
            best = sum(mine) / n_val
            points.append((calls, best))
    return points


def _ranking(val_rows: Sequence[dict[str, Any]]) -> list[tuple[str, int, float]]:
    """(instruction, items scored, mean), most items first, then best mean."""
    scores: dict[str, list[float]] = {}
    for row in val_rows:
        scores.setdefault(row["instruction"], []).append(float(row["score"]))
    ranked = [(text, len(s), sum(s) / len(s)) for text, s in scores.items()]
    return sorted(ranked, key=lambda r: (-r[1], -r[2]))


def _fitness_plot(points: list[tuple[int, float]], budget: int) -> str:
    fig = _figure(6.4, 3.2)
    ax = fig.add_subplot()
    if points:
        xs, ys = zip(*points, strict=True)
        ax.step([0, *xs], [ys[0], *ys], where="post", color="#4c72b0")
        ax.plot(xs, ys, "o", color="#4c72b0")
    ax.axvline(budget, color="#c44e52", linestyle="--", label=_mpl(f"budget ({budget})"))
    ax.set_xlabel("task calls spent on val")
    ax.set_ylabel("best mean val score")
    ax.legend(loc="lower right")
    return _png_uri(fig)


def _summary(result: dict[str, Any]) -> str:
    c, calls = result["test_comparison"], result["calls"]
    rows = "".join(
        f"<tr><th>{name}</th><td>{_e(result[name]['instruction'])}</td>"
        f"<td class='num'>{result[name]['val']:.3f}</td>"
        f"<td class='num'>{result[name]['test']:.3f}</td></tr>"
        for name in ("initial", "best")
    )
    return (
        "<h2>Result</h2><table><thead><tr><th></th><th>instruction</th><th>val</th>"
        f"<th>test</th></tr></thead><tbody>{rows}</tbody></table>"
        f"<p>Test, best - initial: {c['delta']:+.3f} (95% CI {c['ci'][0]:+.3f} to "
        f"{c['ci'][1]:+.3f}, paired permutation p = {c['p']:.3g}). Calls: task {calls['task']} "
        f"of a budget of {result['budget']}, proposer {calls['proposer']}, test {calls['test']}; "
        f"{result['wall_s']:.1f} s.</p>"
    )


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


def _examples(test_rows: Sequence[dict[str, Any]], result: dict[str, Any]) -> str:
    by = {(r["instruction"], r["item"]): r for r in test_rows}
    initial, best = result["initial"]["instruction"], result["best"]["instruction"]
    items = sorted({r["item"] for r in test_rows})[:_EXAMPLES]
    body = []
    for i in items:
        a, b = by.get((initial, i)), by.get((best, i))
        if a is None or b is None:
            continue
        example = "<br>".join(f"<b>{_e(k)}</b>: {_e(v)}" for k, v in a.get("example", {}).items())
        body.append(
            f"<tr><td>{example}</td><td>{_e(a['answer'])} ({a['score']:g})</td>"
            f"<td>{_e(b['answer'])} ({b['score']:g})</td></tr>"
        )
    return (
        "<h2>Test examples</h2><table><thead><tr><th>item (inputs and reference)</th>"
        f"<th>initial answer (score)</th><th>best answer (score)</th></tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def render_prompt_report(result: dict[str, Any], history: Sequence[dict[str, Any]]) -> str:
    """The page for ``result`` (``result.json``) and ``history`` (``history.jsonl`` rows)."""
    val_rows = [r for r in history if r.get("phase") == "val"]
    test_rows = [r for r in history if r.get("phase") == "test"]
    points = fitness_curve(val_rows, int(result["sizes"]["val"]))
    title = f"optimize prompt: {result['method']}, metric {result['metric']}"
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{_e(title)}</h1>",
            _summary(result),
            "<h2>Fitness vs calls</h2><figure>"
            f'<img src="{_fitness_plot(points, int(result["budget"]))}" '
            'alt="best mean val score against task calls spent"><figcaption>Best mean val '
            "score of an instruction scored on every val item, against task calls spent."
            "</figcaption></figure>",
            _ranking_table(_ranking(val_rows)),
            _examples(test_rows, result),
            "<footer>Report generated by instructkit.</footer></body></html>\n",
        ]
    )


def write_prompt_report(run_dir: str | Path, out_html: str | Path | None = None) -> Path:
    """Render ``run_dir/result.json`` + ``run_dir/history.jsonl`` to ``run_dir/report.html``
    (or ``out_html``), atomically."""
    run = Path(run_dir)
    path = run / "result.json"
    try:
        result = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataFormatError(
            f"cannot read the run's result: {e}.",
            path=path,
            fix="point at the output folder of instructkit optimize prompt.",
        ) from e
    history = [row for _, row in read_rows(run / "history.jsonl") if isinstance(row, dict)]
    target = Path(out_html) if out_html is not None else run / "report.html"
    write_atomic(target, [render_prompt_report(result, history)])
    return target
