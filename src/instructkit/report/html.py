"""A self-contained HTML report of evaluation results: one file, plots embedded as PNG.

The results schema lives in :mod:`instructkit.evaluate.results`; loading and merging files in
:mod:`instructkit.report.results`; this module draws the plots and writes the page. Usage::

    write_report(["eval/results.json"], "report.html")
    write_report(["eval/after.json"], "report.html", examples=8, train_log="sft/metrics.jsonl")

Besides the summary and plots: "Format or content" (two systems scored ``strict``, ``lenient``
and ``format``) splits each strict gain into its content part (the lenient gain) and its form
part (the rest), beside the gain in format compliance; "Training" plots the training loss when
a log is attached; "Example predictions" shows, per task, ``examples`` items with reference,
both responses and their scores, items that flipped first
(:func:`~instructkit.report.results.pick_examples`).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from instructkit.evaluate.stats import PairedComparison
from instructkit.io import write_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure
from instructkit.report.results import (
    A_BETTER,
    B_BETTER,
    HumanSummary,
    IFEvalSummary,
    ItemScores,
    JudgeSummary,
    ReportData,
    TaskRow,
    TrainLog,
    flip,
    holm_adjust,
    load_results,
    pick_examples,
)

__all__ = ["render_report", "write_report"]

_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3")

# --- plots ---------------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    # A bare Figure, not pyplot: no global backend or figure registry is touched.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _png_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _mpl(text: str) -> str:
    """Text for matplotlib labels: a "$" would otherwise start mathtext."""
    return text.replace("$", r"\$")


def _histogram_figure(values: dict[str, list[float]]) -> Figure:
    """Grouped histogram of per-item scores; integer scores (0/1, ratings) get one bin each."""
    pooled = np.concatenate([np.asarray(v, dtype=np.float64) for v in values.values()])
    lo, hi = float(pooled.min()), float(pooled.max())
    integral = bool(np.all(pooled == np.round(pooled))) and hi - lo <= 20
    if integral:
        edges = np.arange(lo - 0.5, hi + 1.0)
    else:
        lo, hi = (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)
        edges = np.linspace(lo, hi, 21)
    centers = (edges[:-1] + edges[1:]) / 2  # (bins,)
    width = (edges[1] - edges[0]) / (len(values) + 1)
    fig = _figure(8, 3.4)
    ax = fig.subplots()
    for k, (system, v) in enumerate(values.items()):
        counts, _ = np.histogram(v, bins=edges)
        offset = (k - (len(values) - 1) / 2) * width
        ax.bar(centers + offset, counts, width=width, label=_mpl(system), color=_color(k))
    if integral:
        ax.set_xticks(centers)
    ax.set_xlabel("per-item score")
    ax.set_ylabel("items")
    ax.legend()
    return fig


def _color(k: int) -> str:
    return _COLORS[k % len(_COLORS)]


def _distribution_plot(data: ReportData) -> tuple[str, str] | None:
    """(PNG data URI, caption) of the score distributions, or None with nothing to show."""
    if data.per_item:
        values = {
            s: [v for it in data.per_item if (v := it.scores.get(s)) is not None]
            for s in data.systems
        }
        values = {s: v for s, v in values.items() if v}
        if not values:
            return None
        caption = f"Distribution of per-item scores ({len(data.per_item)} items, all tasks)."
        return _png_uri(_histogram_figure(values)), caption
    metrics = {row.metric for row in data.tasks}
    if len(data.tasks) < 2 or len(metrics) != 1:
        return None  # a box of a single value, or of scores on different scales, says nothing
    values = {
        s: [v for r in data.tasks if (v := r.scores.get(s)) is not None] for s in data.systems
    }
    fig = _figure(8, 3.4)
    ax = fig.subplots()
    names = [s for s in data.systems if values[s]]
    # Every point is drawn, so the box leaves out its own outlier markers.
    ax.boxplot([values[s] for s in names], tick_labels=[_mpl(s) for s in names], showfliers=False)
    for k, s in enumerate(names):
        jitter = np.linspace(-0.08, 0.08, len(values[s]))
        ax.scatter(k + 1 + jitter, values[s], color=_color(k), zorder=3, s=18)
    ax.set_ylabel(_mpl(metrics.pop()))
    caption = (
        f"Distribution of per-task scores ({len(data.tasks)} tasks); the results hold no "
        "per-item scores."
    )
    return _png_uri(fig), caption


def _all_rows(data: ReportData) -> list[TaskRow]:
    return [*data.tasks, *data.groups, *([data.overall] if data.overall else [])]


def _scores_plot(data: ReportData) -> tuple[str, str]:
    """Bars of each system's score per row, beside the difference B - A with its CI."""
    rows = _all_rows(data)
    compared = [i for i, r in enumerate(rows) if r.comparison is not None]
    k = len(data.systems)
    fig = _figure(11 if compared else 7, 1.2 + 0.22 * len(rows) * max(2, k))
    axes = fig.subplots(1, 2 if compared else 1, sharey=True, squeeze=False)[0]
    y = np.arange(len(rows))  # (rows,)
    height = 0.8 / k
    for j, system in enumerate(data.systems):
        values = [np.nan if (v := r.scores.get(system)) is None else v for r in rows]
        offset = (j - (k - 1) / 2) * height
        axes[0].barh(y + offset, values, height=height, color=_color(j), label=_mpl(system))
    axes[0].set_yticks(y, labels=[_mpl(r.name) for r in rows])
    axes[0].invert_yaxis()
    axes[0].set_xlabel("score (metric of each row in the table)")
    fig.legend(loc="outside upper left", ncols=k, frameon=False)
    caption = "Score of each system per task, group and overall."
    if compared:
        ax = axes[1]
        for i in compared:
            c = rows[i].comparison
            assert c is not None
            # A line from ci_low to ci_high: a percentile CI need not contain diff.
            ax.hlines(i, c.ci_low, c.ci_high, color="black", lw=2)
            ax.plot([c.diff], [i], "o", color=_color(1))
        ax.axvline(0.0, color="grey", lw=1, ls="--")
        ax.margins(x=0.08)
        a, b = data.systems[0], data.systems[1]
        ax.set_xlabel(_mpl(f"{b} \N{MINUS SIGN} {a}, with its confidence interval"))
        caption += (
            f" Right: the paired difference {b} \N{MINUS SIGN} {a} (dot) and its bootstrap "
            "confidence interval (line); rows without a comparison are left blank."
        )
    return _png_uri(fig), caption


def _loss_plot(events: Sequence[Mapping[str, object]]) -> str:
    """Training loss per optimizer step, and the eval loss where the log has it."""
    fig = _figure(8, 3.2)
    ax = fig.subplots()
    for key, style, label in (("loss", "-", "train loss"), ("eval_loss", "o-", "eval loss")):
        points = [(e["step"], e[key]) for e in events if isinstance(e.get(key), (int, float))]
        if points:
            ax.plot(*zip(*points, strict=True), style, label=label, lw=1, ms=4)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (token-weighted mean)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png_uri(fig)


def _judge_plot(judge: JudgeSummary, systems: tuple[str, ...]) -> str:
    labels = [f"{systems[0]} preferred", f"{systems[1]} preferred", "tie", "unparseable"]
    counts = [judge.wins, judge.losses, judge.ties, judge.unparseable]
    total = sum(counts)
    fig = _figure(10, 2.6)
    left, right = fig.subplots(1, 2, width_ratios=[3, 2])
    left.barh([_mpl(s) for s in labels], counts, color=[_color(0), _color(1), "#999", "#c44e52"])
    left.invert_yaxis()
    left.set_xlabel(f"items (of {total})")
    for i, count in enumerate(counts):
        left.annotate(
            str(count), (count, i), xytext=(3, 0), textcoords="offset points", va="center"
        )
    rates = {"agreement": judge.agreement}
    rates |= {"ties": judge.ties / total if total else None}
    rates |= {"unparseable": judge.unparseable / total if total else None}
    shown = [name for name, value in rates.items() if value is not None]
    right.barh(shown, [rates[name] for name in shown], color=_color(2))
    right.invert_yaxis()
    right.set_xlim(0, 1)
    right.set_xlabel("share of items (agreement: of parsed items)")
    return _png_uri(fig)


# --- HTML ----------------------------------------------------------------------------------------

_CSS = """
body { font: 15px/1.45 system-ui, sans-serif; color: #222; max-width: 1150px; margin: 24px auto;
       padding: 0 16px; }
h1 { font-size: 1.6em; margin-bottom: 4px; } h2 { margin-top: 32px; border-bottom: 1px solid #ddd; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; color: #444; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; }
table { border-collapse: collapse; margin: 8px 0; font-size: 0.92em; }
th, td { padding: 4px 8px; border-bottom: 1px solid #e4e4e4; text-align: left; }
thead th { background: #f3f3f3; border-bottom: 2px solid #ccc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.group th, tr.overall th { font-style: italic; } tr.overall { border-top: 2px solid #bbb; }
td.sig.yes { color: #0b6b2a; font-weight: 600; } td.sig.no { color: #777; }
p.note { color: #555; font-size: 0.88em; max-width: 1000px; }
figure { margin: 16px 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.88em; }
footer { margin-top: 40px; color: #888; font-size: 0.8em; }
td pre { white-space: pre-wrap; margin: 0; font: 0.88em/1.35 ui-monospace, monospace;
         max-width: 330px; overflow-wrap: anywhere; }
td.mark { white-space: nowrap; font-weight: 600; } tr.b-better td.mark { color: #0b6b2a; }
tr.a-better td.mark { color: #b02020; } details summary { cursor: pointer; color: #555; }
h3 { margin: 20px 0 4px; }
"""
# Nothing may be fetched or run: images are data: URIs and the style is inline.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_DASH = "\N{EN DASH}"
_SEEN = {True: "seen", False: "unseen", None: ""}


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _fmt_score(value: float | None) -> str:
    return _DASH if value is None else f"{value:.3f}"


def _fmt_p(p: float | None) -> str:
    if p is None:
        return _DASH
    return "&lt; 0.0001" if p < 1e-4 else f"{p:.4f}"


def _num(text: str) -> str:
    return f'<td class="num">{text}</td>'


def _diff_cell(row: TaskRow, systems: tuple[str, ...], show_level: bool) -> str:
    """B - A with its CI from the comparison; without one, the plain difference of the means."""
    c = row.comparison
    if c is not None:
        level = f" ({c.ci_level:.0%})" if show_level else ""
        return _num(f"{c.diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]{level}")
    a, b = row.scores.get(systems[0]), row.scores.get(systems[1])
    return _num(_DASH if a is None or b is None else f"{b - a:+.3f}")


def _test_cells(c: PairedComparison | None, p_holm: float | None, alpha: float) -> list[str]:
    """p perm, p Holm, p McNemar, W/L/T and the verdict; p_holm is None outside the family."""
    if c is None:
        return [_num(_DASH)] * 5
    tested = c.p_permutation if p_holm is None else p_holm
    if tested < alpha:
        how = "uncorrected" if p_holm is None else "Holm"
        verdict = f'<td class="sig yes">p &lt; {alpha:g} ({how})</td>'
    else:
        verdict = '<td class="sig no">n.s.</td>'
    return [
        _num(_fmt_p(c.p_permutation)),
        _num(_fmt_p(p_holm)),
        _num(_fmt_p(c.p_mcnemar)),
        _num(f"{c.wins}/{c.losses}/{c.ties}"),
        verdict,
    ]


def _summary_head(data: ReportData, show_seen: bool, tests: bool, alpha: float) -> list[str]:
    head = ["task", *(["seen"] if show_seen else []), "metric", "n"]
    head += [_e(s) for s in data.systems]
    if len(data.systems) >= 2:
        a, b = _e(data.systems[0]), _e(data.systems[1])
        levels = {r.comparison.ci_level for r in _all_rows(data) if r.comparison}
        ci = f" [{levels.pop():.0%} CI]" if len(levels) == 1 else " [CI]" if levels else ""
        head.append(f"{b} \N{MINUS SIGN} {a}{ci}")
    if tests:
        head += ["p perm", "p Holm", "p McNemar", "W/L/T", f"significant at {alpha:g}"]
    return ["<table><thead><tr>", *(f'<th scope="col">{h}</th>' for h in head), "</tr></thead>"]


def _summary_section(data: ReportData, alpha: float) -> str:
    rows = [("task", r) for r in data.tasks] + [("group", r) for r in data.groups]
    rows += [("overall", data.overall)] if data.overall else []
    family = [r for r in data.tasks if r.comparison is not None]
    holm = dict(
        zip(
            [r.name for r in family],
            holm_adjust([r.comparison.p_permutation for r in family if r.comparison]),
            strict=True,
        )
    )
    show_seen = any(r.seen is not None for _, r in rows)
    show_level = len({r.comparison.ci_level for _, r in rows if r.comparison}) > 1
    two = len(data.systems) >= 2
    tests = two and any(r.comparison is not None for _, r in rows)
    lines = [
        '<section id="summary"><h2>Summary</h2>',
        *_summary_head(data, show_seen, tests, alpha),
    ]
    lines.append("<tbody>")
    for kind, row in rows:
        cells = [f'<th scope="row">{_e(row.name)}</th>']
        if show_seen:
            cells.append(f"<td>{_SEEN[row.seen]}</td>")
        cells += [f"<td>{_e(row.metric)}</td>", _num(str(row.n))]
        cells += [_num(_fmt_score(row.scores.get(s))) for s in data.systems]
        if two:
            cells.append(_diff_cell(row, data.systems, show_level))
        if tests:
            p_holm = holm.get(row.name) if kind == "task" else None
            cells += _test_cells(row.comparison, p_holm, alpha)
        lines.append(f'<tr class="{kind}">' + "".join(cells) + "</tr>")
    lines.append("</tbody></table>")
    if two:
        lines.append(_summary_note(data, len(family), alpha, tests))
    return "\n".join(lines) + "</section>"


def _summary_note(data: ReportData, family: int, alpha: float, tests: bool) -> str:
    a, b = _e(data.systems[0]), _e(data.systems[1])
    if not tests:
        return (
            f'<p class="note">Differences are {b} \N{MINUS SIGN} {a}. The results hold no '
            "paired comparisons, so there are no confidence intervals or significance tests: "
            "a difference may be noise.</p>"
        )
    holm = (
        f"Holm's step-down correction (Holm 1979) is applied to the permutation p-values of the "
        f"{family} per-task comparisons (p Holm); a task is marked significant only when its "
        f"Holm-adjusted p is below {alpha:g}."
        if family
        else "no per-task comparisons were run, so there is no Holm correction (p Holm)."
    )
    return (
        f'<p class="note">Differences are {b} \N{MINUS SIGN} {a} on the same items, with '
        "paired bootstrap confidence intervals where a comparison was run (otherwise the plain "
        "difference of the means, untested). p perm: two-sided paired permutation test "
        "(approximate randomization); p McNemar: McNemar's test, only for 0/1 scores. "
        f"Multiple comparisons: {holm} Group and overall rows pool the items of the tasks; "
        "their p-values are single tests, not corrected for multiple comparisons, and neither "
        "are the McNemar p-values or the confidence intervals. "
        f"W/L/T: items where {b} scored higher / lower / the same as {a}. "
        '"n.s." means the test did not detect a difference, not that there is none.</p>'
    )


def _header(data: ReportData) -> str:
    systems = data.systems
    if len(systems) >= 2:
        named = f"A = <b>{_e(systems[0])}</b>, B = <b>{_e(systems[1])}</b>"
        named += "".join(f", <b>{_e(s)}</b>" for s in systems[2:])
        named += "; comparisons are B against A" + ("" if len(systems) == 2 else " only")
    else:
        named = ", ".join(f"<b>{_e(s)}</b>" for s in systems)
    sources = "<br>".join(
        f"{_e(s.path)}" + (f": {_e(s.title)}, {_e(s.created)}" if len(data.sources) > 1 else "")
        for s in data.sources
    )
    rows = [("Created", _e(data.created)), ("Systems", named)]
    rows += [("Sources", sources)] if sources else []
    meta = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return f'<header><h1>{_e(data.title)}</h1><dl class="meta">{meta}</dl></header>'


def _figure_html(uri: str, alt: str, caption: str) -> str:
    return (
        f'<figure><img src="{uri}" alt="{_e(alt)}"><figcaption>{_e(caption)}</figcaption></figure>'
    )


def _plots_section(data: ReportData) -> str:
    figures = []
    distribution = _distribution_plot(data)
    if distribution:
        figures.append(_figure_html(distribution[0], "score distributions", distribution[1]))
    uri, caption = _scores_plot(data)
    figures.append(_figure_html(uri, "scores per task", caption))
    return '<section id="plots"><h2>Plots</h2>' + "\n".join(figures) + "</section>"


_SCORING = {
    "text": "the judge's answer",
    "probabilities": "grade-token probabilities (G-Eval)",
}


def _judge_section(judge: JudgeSummary, systems: tuple[str, ...]) -> str:
    a, b = _e(systems[0]), _e(systems[1])
    agreement = _DASH if judge.agreement is None else f"{judge.agreement:.1%}"
    rows = [
        ("judge", _e(judge.judge) if judge.judge else _DASH),
        ("verdicts read from", _SCORING.get(judge.scoring, _e(judge.scoring))),
        (f"{a} preferred", str(judge.wins)),
        (f"{b} preferred", str(judge.losses)),
        ("ties", str(judge.ties)),
        ("unparseable", str(judge.unparseable)),
        ("agreement between the two presentation orders", agreement),
    ]
    if judge.inconsistent is not None:
        rows.append(("orders disagreed (counted as ties)", str(judge.inconsistent)))
    table = "".join(f'<tr><th scope="row">{k}</th><td class="num">{v}</td></tr>' for k, v in rows)
    caption = "Pairwise judge verdicts (each item judged in both orders) and their rates."
    figure = _figure_html(_judge_plot(judge, systems), "judge outcomes", caption)
    return f'<section id="judge"><h2>LLM judge</h2><table>{table}</table>{figure}</section>'


def _grade_section(judge: JudgeSummary, systems: tuple[str, ...]) -> str:
    mean = _DASH if judge.mean is None else f"{judge.mean:.2f}"
    rows = [
        ("judge", _e(judge.judge) if judge.judge else _DASH),
        ("verdicts read from", _SCORING.get(judge.scoring, _e(judge.scoring))),
        ("system graded", _e(systems[0])),
        ("items", _DASH if judge.n is None else str(judge.n)),
        ("mean grade (1-10, parsed grades)", mean),
        ("unparseable", str(judge.unparseable)),
    ]
    table = "".join(f'<tr><th scope="row">{k}</th><td class="num">{v}</td></tr>' for k, v in rows)
    return f'<section id="judge"><h2>LLM judge</h2><table>{table}</table></section>'


def _ifeval_section(ifeval: Mapping[str, IFEvalSummary]) -> str:
    head = ["system", "prompt strict", "prompt loose", "instruction strict", "instruction loose"]
    lines = ["<table><thead><tr>", *(f'<th scope="col">{h}</th>' for h in head + ["prompts"])]
    lines.append("</tr></thead><tbody>")
    for system, s in ifeval.items():
        values = [s.prompt_strict, s.prompt_loose, s.instruction_strict, s.instruction_loose]
        cells = "".join(_num(_fmt_score(v)) for v in values)
        n = _DASH if s.n_prompts is None else str(s.n_prompts)
        lines.append(f'<tr><th scope="row">{_e(system)}</th>{cells}{_num(n)}</tr>')
    lines.append("</tbody></table>")
    note = '<p class="note">Accuracy (IFEval, Zhou et al. 2023): share of prompts with all '
    note += "instructions followed, and share of instructions followed; loose also accepts "
    note += "the response with its first/last line or its asterisks removed.</p>"
    return '<section id="ifeval"><h2>IFEval</h2>' + "".join(lines) + note + "</section>"


def _human_section(human: HumanSummary) -> str:
    alpha = _DASH if human.alpha is None else f"{human.alpha:.3f}"
    rows = [("Krippendorff's alpha" + (f" ({_e(human.level)})" if human.level else ""), alpha)]
    rows += [("items", str(human.n_items))] if human.n_items is not None else []
    rows += [("raters", str(human.n_raters))] if human.n_raters is not None else []
    metric = f" ({_e(human.metric)})" if human.metric else ""
    rows += [(f"mean of {_e(s)}{metric}", _fmt_score(v)) for s, v in human.scores.items()]
    table = "".join(f'<tr><th scope="row">{k}</th><td class="num">{v}</td></tr>' for k, v in rows)
    return f'<section id="human"><h2>Human ratings</h2><table>{table}</table></section>'


# --- format or content, training, examples --------------------------------------------------

_SPLIT = ("strict", "lenient", "format")


def _change(row: TaskRow, metric: str, a: str, b: str) -> str:
    """A cell: A's score -> B's, and below it B - A with its CI and permutation p."""
    x, y = row.metrics[metric].get(a), row.metrics[metric].get(b)
    c = row.comparisons.get(metric)
    if c is not None:
        diff = f"{c.diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}], p {_fmt_p(c.p_permutation)}"
    else:
        diff = _DASH if x is None or y is None else f"{y - x:+.3f}"
    return _num(f"{_fmt_score(x)} \N{RIGHTWARDS ARROW} {_fmt_score(y)}<br>{diff}")


def _form_part(row: TaskRow, a: str, b: str) -> float | None:
    """The strict gain that is not a lenient gain: right content that now has the right form."""
    values = [row.metrics[m].get(s) for m in ("strict", "lenient") for s in (a, b)]
    if any(v is None for v in values):
        return None
    sa, sb, la, lb = (float(v) for v in values if v is not None)
    return (sb - sa) - (lb - la)


def _content_section(data: ReportData) -> str | None:
    """Groups, overall and tasks scored strict, lenient and format: the gain split in two."""
    if len(data.systems) < 2:
        return None
    a, b = data.systems[0], data.systems[1]
    rows = [*data.groups, *([data.overall] if data.overall else []), *data.tasks]
    rows = [r for r in rows if all(m in r.metrics for m in _SPLIT)]
    if not rows:
        return None
    head = ["", "n", "strict", "content: lenient", "form: strict \N{MINUS SIGN} content gain",
            "format compliance"]  # fmt: skip
    lines = ['<section id="format-content"><h2>Format or content</h2><table><thead><tr>']
    lines += [f'<th scope="col">{h}</th>' for h in head] + ["</tr></thead><tbody>"]
    for row in rows:
        form = _form_part(row, a, b)
        cells = [f'<th scope="row">{_e(row.name)}</th>', _num(str(row.n))]
        cells += [_change(row, "strict", a, b), _change(row, "lenient", a, b)]
        cells.append(_num(_DASH if form is None else f"{form:+.3f}"))
        cells.append(_change(row, "format", a, b))
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</tbody></table>")
    lines.append(
        f'<p class="note">Each cell: {_e(a)} \N{RIGHTWARDS ARROW} {_e(b)}, and below it the '
        "paired difference with its 95% bootstrap CI and permutation p. "
        "<b>strict</b>: normalized exact match; <b>lenient</b>: the reference found as the "
        "response's answer (label in the first line or after &quot;answer is&quot;, "
        "numbers parsed, choice letters mapped); <b>format</b>: the response has the shape the "
        "instruction asked for, right or wrong. Every strict match is a lenient match, so the "
        "strict gain splits exactly into its <b>content</b> part (the lenient gain: answers "
        "that became right) and its <b>form</b> part (answers already right in content that now "
        "match exactly). Format compliance counts the shape on every item. Confidence "
        "intervals and p (paired permutation test) are per row, not corrected for multiple "
        "comparisons.</p></section>"
    )
    return "\n".join(lines)


def _training_section(log: TrainLog) -> str:
    head = '<section id="training"><h2>Training</h2>'
    if log.missing or not log.events:
        why = "does not exist" if log.missing else "has no loss values"
        return f'{head}<p class="note">The training log {_e(log.path)} {why}.</p></section>'
    steps = max(int(e["step"]) for e in log.events)
    caption = f"Training loss per optimizer step ({steps} steps), from {log.path}."
    return head + _figure_html(_loss_plot(log.events), "training loss", caption) + "</section>"


def _scores_text(item: ItemScores, system: str) -> str:
    metrics = item.metrics or {"score": item.scores}
    parts = []
    for metric, by_system in metrics.items():
        v = by_system.get(system)
        text = _DASH if v is None else f"{v:g}" if v in (0.0, 1.0) else f"{v:.3f}"
        parts.append(f"{_e(metric)}&nbsp;{text}")
    return "<br>".join(parts)


def _example_row(kind: int, item: ItemScores, a: str, b: str) -> str:
    marks = {B_BETTER: ("b-better", f"{b} better"), A_BETTER: ("a-better", f"{a} better")}
    css, mark = marks.get(kind, ("same", ""))
    prompt = (
        f"<details><summary>prompt</summary><pre>{_e(item.prompt)}</pre></details>"
        if item.prompt
        else ""
    )
    cells = [f'<td class="mark">{_e(mark)}</td>', f"<td>{_e(item.id)}{prompt}</td>"]
    cells.append(
        f"<td><pre>{_e(item.reference if item.reference is not None else _DASH)}</pre></td>"
    )
    for system in (a, b):
        cells.append(f"<td><pre>{_e(item.responses.get(system, _DASH))}</pre></td>")
        cells.append(f'<td class="num">{_scores_text(item, system)}</td>')
    return f'<tr class="{css}">' + "".join(cells) + "</tr>"


def _examples_section(data: ReportData, per_task: int) -> str | None:
    """Per task, ``per_task`` items with reference, both responses and scores, flips first."""
    if len(data.systems) < 2 or per_task <= 0:
        return None
    a, b = data.systems[0], data.systems[1]
    by_task: dict[str, list[ItemScores]] = {}
    for item in data.per_item:
        if a in item.responses and b in item.responses:
            by_task.setdefault(item.task, []).append(item)
    if not by_task:
        return None
    head = ["", "item", "reference", f"{_e(a)} (A)", "scores", f"{_e(b)} (B)", "scores"]
    lines = [
        '<section id="examples"><h2>Example predictions</h2>',
        f'<p class="note">Per task, up to {per_task} items: first those where {_e(b)} scored '
        f"higher than {_e(a)} on the task's primary metric, then those where it scored lower, "
        "then unchanged ones.</p>",
    ]
    for task, items in by_task.items():
        picked = pick_examples(items, a, b, per_task)
        kinds = [flip(it, a, b) for it in items]
        better, worse = kinds.count(B_BETTER), kinds.count(A_BETTER)
        lines.append(
            f'<h3>{_e(task)}</h3><p class="note">{len(items)} items: {_e(b)} better on '
            f"{better}, worse on {worse}; {len(picked)} shown.</p><table><thead><tr>"
        )
        lines += [f'<th scope="col">{h}</th>' for h in head] + ["</tr></thead><tbody>"]
        lines += [_example_row(kind, item, a, b) for kind, item in picked]
        lines.append("</tbody></table>")
    return "\n".join(lines) + "</section>"


def render_report(data: ReportData, *, alpha: float = 0.05, examples: int = 5) -> str:
    """The report as one self-contained HTML page (no scripts, no external resources);
    ``examples``: example predictions per task (0: none)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(data.title)}</title><style>{_CSS}</style></head><body>",
        _header(data),
        _summary_section(data, alpha),
    ]
    content = _content_section(data)
    parts += [content] if content else []
    parts.append(_plots_section(data))
    if data.train_log is not None:
        parts.append(_training_section(data.train_log))
    if data.judge is not None and data.judge.mode == "grade":
        parts.append(_grade_section(data.judge, data.systems))
    elif data.judge is not None and len(data.systems) >= 2:
        parts.append(_judge_section(data.judge, data.systems))
    if data.ifeval:
        parts.append(_ifeval_section(data.ifeval))
    if data.human is not None:
        parts.append(_human_section(data.human))
    if data.curves:
        from instructkit.report.curves import curves_section  # it draws with this module's helpers

        parts.append(curves_section(data.curves))
    shown = _examples_section(data, examples)
    parts += [shown] if shown else []
    parts.append("<footer>Report generated by instructkit.</footer></body></html>\n")
    return "\n".join(parts)


def write_report(
    paths: str | Path | Sequence[str | Path],
    out_html: str | Path,
    *,
    examples: int = 5,
    train_log: str | Path | None = None,
) -> Path:
    """Load the results files, render the report and write it atomically to ``out_html``;
    ``examples`` per task (0: none); ``train_log``: a metrics JSONL whose loss is plotted
    (instead of the one a results file's ``meta.train_log`` names)."""
    page = render_report(load_results(paths, train_log=train_log), examples=examples)
    write_atomic(out_html, [page])
    return Path(out_html)
