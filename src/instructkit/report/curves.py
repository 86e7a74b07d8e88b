"""The "Adaptation curves" section of the HTML report (``eval adapt`` results).

For each curve of a results file (:class:`~instructkit.evaluate.results.Curve`: lenient and
strict accuracy and query loss against adaptation steps k), one plot with a line per system
and its 95% CI band, and one table: the mean and CI per system and k, and each later system
minus the first, paired over the same (task, seed) units, with its CI and permutation p.
:func:`~instructkit.report.html.render_report` adds the section when a file has curves.
"""

from __future__ import annotations

from collections.abc import Mapping

from instructkit.evaluate.results import Curve
from instructkit.report.html import _COLORS, _e, _figure, _figure_html, _fmt_p, _mpl, _num, _png_uri

__all__ = ["curves_section", "curve_plot"]

_NAMES = {"lenient": "lenient accuracy", "strict": "strict accuracy", "query_loss": "query loss"}


def curve_plot(curve: Curve) -> str:
    """A PNG data URI: the mean of each system against k, with its CI as a band."""
    fig = _figure(6, 3.2)
    ax = fig.subplots()
    for i, (system, points) in enumerate(curve.points.items()):
        ks = [p.k for p in points]
        color = _COLORS[i % len(_COLORS)]
        ax.plot(ks, [p.mean for p in points], "o-", color=color, label=_mpl(system), lw=1.5)
        ax.fill_between(
            ks, [p.ci_low for p in points], [p.ci_high for p in points], color=color, alpha=0.2
        )
    ax.set_xticks(sorted({p.k for points in curve.points.values() for p in points}))
    ax.set_xlabel(f"adaptation {curve.x} k")
    ax.set_ylabel(_NAMES.get(curve.metric, _mpl(curve.metric)))
    ax.grid(alpha=0.3)
    ax.legend()
    return _png_uri(fig)


def _table(curve: Curve) -> str:
    name = _NAMES.get(curve.metric, curve.metric)
    head = ["system", "k", "n", name, f"{curve.level:.0%} CI", "vs first (paired)", "p"]
    lines = [f'<table class="curve"><caption>{_e(name)} by k</caption><thead><tr>']
    lines += [f'<th scope="col">{h}</th>' for h in head] + ["</tr></thead><tbody>"]
    for system, points in curve.points.items():
        paired = {c.k: c.comparison for c in curve.comparisons.get(system, [])}
        for p in points:
            c = paired.get(p.k)
            diff = _e("—") if c is None else f"{c.diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]"
            cells = [f"<td>{_e(system)}</td>", _num(str(p.k)), _num(str(p.n))]
            cells += [_num(f"{p.mean:.3f}"), _num(f"[{p.ci_low:.3f}, {p.ci_high:.3f}]")]
            cells += [_num(diff), _num(_fmt_p(None if c is None else c.p_permutation))]
            lines.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(lines) + "</tbody></table>"


def curves_section(curves: Mapping[str, Curve]) -> str:
    """The section: a plot and a table per curve."""
    parts = ['<section id="curves"><h2>Adaptation curves</h2>']
    parts.append(
        "<p>Each initialization is fine-tuned for k steps on k support items of each unseen "
        "task and scored on a disjoint query set; means over (task, seed) units with "
        "bootstrap CIs (bands); later systems minus the first, paired over the same units.</p>"
    )
    for name, curve in curves.items():
        label = _NAMES.get(curve.metric, curve.metric)
        caption = f"{label} against adaptation steps ({curve.level:.0%} CI bands)"
        parts.append(_figure_html(curve_plot(curve), f"{name} curve", caption))
        parts.append(_table(curve))
    return "\n".join(parts) + "</section>"
