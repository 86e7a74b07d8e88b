"""The HTML page of a preference or RL training run (``train ppo|grpo|dpo|reward``):
``DIR/report.html`` from the run folder ``DIR``::

    write_rl_report("runs/ppo")          # or render_rl_report("runs/ppo") -> the page as text

It reads what every one of those workflows writes: ``config.yaml`` (which workflow it was, and
its essentials), ``metrics.jsonl`` (one event per step, the names of
:data:`instructkit.train.tracking.RL_METRICS`), ``summary.json`` or, for a reward model,
``metrics.json`` (wall time and the final numbers), and where present ``samples.jsonl`` (a few
scored rollouts of PPO and GRPO) and ``calibration.png`` (reward model). A run that was killed
has no summary yet and still renders from its metrics.

One self-contained page (no scripts, nothing fetched; plots are data: URIs drawn with matplotlib
as in :mod:`.html`): the summary (config essentials, steps, wall time, final metrics), one plot
per logged metric against the step (reward mean with a ±std band, KL, entropy, clip fraction,
value loss, response length, loss; pair accuracy and margin for DPO and reward models; chosen
and rejected rewards), the calibration plot, and sample rollouts from the first and the last
sampled steps. Every text from the data or the model is HTML-escaped.

The workflows live in ``train`` (below this layer), so they do not write the page themselves:
the ``instructkit train ...`` commands call :func:`write_rl_report` after the run, as
``optimize prompt`` does with its page, and ``instructkit train report DIR`` re-renders it.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from instructkit.errors import DataFormatError
from instructkit.io import write_atomic
from instructkit.report.html import _e, _figure, _mpl, _png_uri
from instructkit.report.runs import run_page
from instructkit.train.tracking import read_metrics

__all__ = [
    "PLOTS",
    "Plot",
    "RLRun",
    "read_rl_run",
    "render_rl_report",
    "run_method",
    "write_rl_report",
]

COMMANDS = "instructkit train ppo, grpo, dpo or reward"
TITLES = {"ppo": "PPO", "grpo": "GRPO", "dpo": "DPO", "reward": "Reward model"}
SAMPLE_ROWS = 4  # per step shown
# boxes side by side where the page is wide enough (inline: the page's CSP allows inline styles)
_GRID = "display: grid; grid-template-columns: repeat(auto-fill, minmax(500px, 1fr)); gap: 0 24px"
TEXT_CHARS = 500  # of a prompt or a response shown


@dataclass(frozen=True)
class Plot:
    """One plot against the step: ``keys`` as lines; ``band`` a std key drawn around keys[0]."""

    title: str
    keys: tuple[str, ...]
    ylabel: str
    band: str | None = None


PLOTS = (
    Plot("Reward", ("reward_mean",), "reward (mean ± std over the step)", band="reward_std"),
    Plot("KL to the reference", ("kl",), "KL"),
    Plot("Entropy", ("entropy",), "mean token entropy (nats)"),
    Plot("Clip fraction", ("clip_fraction",), "share of tokens clipped"),
    Plot("Value loss", ("value_loss",), "value loss"),
    Plot("Response length", ("response_length",), "tokens per response"),
    Plot("Loss", ("loss", "eval_loss"), "loss"),
    Plot("Pair accuracy", ("accuracy", "eval_accuracy"), "share of pairs chosen > rejected"),
    Plot("Pair margin", ("margin", "eval_margin"), "reward chosen - rejected"),
    Plot("Chosen and rejected rewards", ("reward_chosen", "reward_rejected"), "mean reward"),
)

# config.yaml entries worth a line in the summary, per workflow (dotted paths; absent: skipped)
CONFIG_KEYS = {
    "ppo": ("model", "prompts", "reward.kind", "lora.enabled", "lora.r", "train.steps",
            "rollout.batch_size", "rollout.max_new_tokens", "rollout.temperature", "train.lr",
            "train.epochs", "train.minibatch_size", "kl.coef", "kl.estimator", "kl.adaptive",
            "train.clip", "train.seed"),
    "grpo": ("model", "data", "reward.kind", "lora.enabled", "lora.r", "train.max_steps",
             "train.epochs", "train.batch_size", "num_generations", "max_completion_length",
             "temperature", "train.lr", "beta", "epsilon", "loss_type", "scale_rewards",
             "train.seed"),
    "dpo": ("model", "data", "eval_path", "lora.enabled", "lora.r", "train.max_steps",
            "train.epochs", "train.batch_size", "train.lr", "loss_type", "beta",
            "label_smoothing", "max_seq_len", "train.seed"),
    "reward": ("model", "data", "eval_path", "eval_ratio", "lora.enabled", "lora.r",
               "train.epochs", "train.max_steps", "train.batch_tokens", "train.lr",
               "center_rewards_coefficient", "max_seq_len", "train.seed"),
}  # fmt: skip


@dataclass
class RLRun:
    """What a run folder holds, read once."""

    path: Path
    method: str  # ppo, grpo, dpo or reward
    config: dict[str, Any]
    events: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)  # empty for an unfinished run
    samples: list[dict[str, Any]] = field(default_factory=list)


def run_method(config: Mapping[str, Any]) -> str | None:
    """Which workflow wrote ``config`` (its config.yaml), from keys only that one has."""
    if "rollout" in config and "kl" in config:
        return "ppo"
    if "num_generations" in config:
        return "grpo"
    if "center_rewards_coefficient" in config:
        return "reward"
    if "loss_type" in config and "beta" in config:
        return "dpo"
    return None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        found = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as e:
        raise DataFormatError(f"not valid JSON: {e}.", path=path, fix="re-run the workflow.") from e
    return dict(found) if isinstance(found, dict) else {}


def _read_config(path: Path) -> tuple[dict[str, Any], str]:
    try:
        config = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise DataFormatError(
            f"cannot read the run's config: {e}.",
            path=path,
            fix=f"point at a run folder of {COMMANDS}.",
        ) from e
    method = run_method(config) if isinstance(config, dict) else None
    if method is None:
        raise DataFormatError(
            "this config is not one of a PPO, GRPO, DPO or reward-model run.",
            path=path,
            fix=f"point at a run folder of {COMMANDS}.",
        )
    return dict(config), method


def read_rl_run(run_dir: str | Path) -> RLRun:
    """The config, metrics, summary and samples of ``run_dir``; DataFormatError naming the
    file when it is not such a run folder."""
    path = Path(run_dir)
    config, method = _read_config(path / "config.yaml")
    metrics = path / "metrics.jsonl"
    if not metrics.exists():
        raise DataFormatError(
            "the run has no metrics log.", path=metrics, fix=f"point at a run folder of {COMMANDS}."
        )
    events = [e for e in read_metrics(metrics) if isinstance(e, dict)]
    summary = _read_json(path / _summary_file(method))
    samples_path = path / "samples.jsonl"
    samples = read_metrics(samples_path) if samples_path.exists() else []
    return RLRun(path, method, config, events, summary, [s for s in samples if isinstance(s, dict)])


# --- summary -------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """A finite number, or None (null, text, bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _dotted(config: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _rows(pairs: Sequence[tuple[str, Any]]) -> str:
    return "".join(f"<tr><th>{_e(k)}</th><td>{_e(_fmt(v))}</td></tr>" for k, v in pairs)


def final_metrics(events: Sequence[Mapping[str, Any]]) -> list[tuple[str, float]]:
    """(key, last finite value) of every plotted metric that was logged, in plot order."""
    out = []
    for key in (k for p in PLOTS for k in (*p.keys, *([p.band] if p.band else []))):
        values = [v for e in events if (v := _number(e.get(key))) is not None]
        if values:
            out.append((key, values[-1]))
    return out


def _summary_values(summary: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The summary's numbers and names, one level of nesting flattened (lists left out)."""
    out: list[tuple[str, Any]] = []
    for key, value in summary.items():
        if key in ("output_dir", "seconds", "steps"):
            continue
        if isinstance(value, Mapping):
            out += [(f"{key}.{k}", v) for k, v in value.items() if not isinstance(v, list | dict)]
        elif not isinstance(value, list) and value is not None:
            out.append((key, value))
    return out


def summary_section(run: RLRun) -> str:
    """The run at a glance: workflow, steps, wall time, config essentials, final numbers."""
    steps = [int(e["step"]) for e in run.events if isinstance(e.get("step"), int)]
    seconds = _number(run.summary.get("seconds"))
    head = [
        ("workflow", f"train {run.method}"),
        ("run folder", str(run.path)),
        ("steps", run.summary.get("steps", max(steps, default=0))),
        ("wall time", f"{seconds:.1f} s" if seconds is not None else "unfinished (no summary)"),
    ]
    config = [
        (k, v)
        for k in CONFIG_KEYS[run.method]
        for found, v in [_dotted(run.config, k)]
        if found and v is not None
    ]
    tables = [
        ("Run", head, ""),
        ("Config essentials", config, "The whole config is config.yaml in the run folder."),
        ("Final metrics (last logged step)", final_metrics(run.events), ""),
        ("Results", _summary_values(run.summary), "From " + _summary_file(run.method) + "."),
    ]
    boxes = "".join(
        f"<div><h3>{_e(title)}</h3><table><tbody>{_rows(rows)}</tbody></table>"
        + (f"<p class='note'>{_e(note)}</p>" if note else "")
        + "</div>"
        for title, rows, note in tables
        if rows
    )
    return f"<h2>Summary</h2><div style='{_GRID}'>{boxes}</div>"


def _summary_file(method: str) -> str:
    return "metrics.json" if method == "reward" else "summary.json"


# --- plots ---------------------------------------------------------------------------------------


def _points(events: Sequence[Mapping[str, Any]], key: str) -> list[tuple[float, float]]:
    return [
        (float(e["step"]), v)
        for e in events
        if (v := _number(e.get(key))) is not None and _number(e.get("step")) is not None
    ]


def plot_uri(events: Sequence[Mapping[str, Any]], plot: Plot) -> str | None:
    """The PNG data URI of ``plot`` over ``events``, or None when none of its keys was logged."""
    lines = {k: pts for k in plot.keys if (pts := _points(events, k))}
    if not lines:
        return None
    from matplotlib.ticker import MaxNLocator

    fig = _figure(5.6, 3.0)
    ax = fig.add_subplot()
    for k, pts in lines.items():
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, ys, "o-", label=_mpl(k), linewidth=1, markersize=3)
    if plot.band and plot.keys[0] in lines:
        std = dict(_points(events, plot.band))
        band = [(x, y, std[x]) for x, y in lines[plot.keys[0]] if x in std]
        if band:
            xs, ys, ss = zip(*band, strict=True)
            lo = [y - s for y, s in zip(ys, ss, strict=True)]
            hi = [y + s for y, s in zip(ys, ss, strict=True)]
            ax.fill_between(xs, lo, hi, alpha=0.2, label=_mpl(f"± {plot.band}"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel(_mpl(plot.ylabel))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _png_uri(fig)


def _figure_html(uri: str, title: str, caption: str) -> str:
    return (
        f'<figure><img src="{uri}" alt="{_e(title)} against the step">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def plots_section(events: Sequence[Mapping[str, Any]]) -> str:
    """One figure per :data:`PLOTS` entry that has data, each against the step."""
    figures = []
    for plot in PLOTS:
        uri = plot_uri(events, plot)
        if uri is not None:
            shown = [k for k in plot.keys if _points(events, k)]
            caption = f"{plot.title}: {', '.join(shown)} against the step (metrics.jsonl)."
            figures.append(
                f"<div><h3>{_e(plot.title)}</h3>{_figure_html(uri, plot.title, caption)}</div>"
            )
    if not figures:
        return "<h2>Metrics</h2><p>No metric was logged yet.</p>"
    return f"<h2>Metrics</h2><div style='{_GRID}'>{''.join(figures)}</div>"


def calibration_section(run_dir: Path) -> str:
    """The reward model's calibration.png, embedded, when the run wrote one."""
    png = run_dir / "calibration.png"
    if not png.exists():
        return ""
    uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")
    caption = (
        "Held-out calibration: observed share of pairs whose first response is preferred, "
        "against the predicted probability sigmoid(r_first - r_second)."
    )
    return "<h2>Calibration</h2>" + _figure_html(uri, "Calibration", caption)


# --- samples -------------------------------------------------------------------------------------


def _short(value: Any) -> str:
    """``value`` as escaped HTML, cut at ``TEXT_CHARS`` characters."""
    text = "" if value is None else str(value)
    return _e(text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS] + " …")


def samples_section(samples: Sequence[Mapping[str, Any]]) -> str:
    """A few rollouts (prompt, response, reward) of the first and the last sampled steps."""
    steps = sorted({int(s["step"]) for s in samples if isinstance(s.get("step"), int)})
    if not steps:
        return ""
    shown = sorted({steps[0], steps[-1]})
    body = []
    for step in shown:
        rows = [s for s in samples if s.get("step") == step][:SAMPLE_ROWS]
        body += [
            f"<tr><td class='num'>{step}</td><td class='text'>{_short(s.get('prompt'))}</td>"
            f"<td class='text'>{_short(s.get('response'))}</td>"
            f"<td class='num'>{_e(_fmt(_number(s.get('reward'))))}</td></tr>"
            for s in rows
        ]
    return (
        "<h2>Sample rollouts</h2><table><thead><tr><th>step</th><th>prompt</th><th>response</th>"
        f"<th>reward</th></tr></thead><tbody>{''.join(body)}</tbody></table>"
        f"<p class='note'>Steps {', '.join(map(str, shown))} of the {len(steps)} sampled "
        "(samples.jsonl holds them all).</p>"
    )


# --- page ----------------------------------------------------------------------------------------


def render_rl_report(run_dir: str | Path) -> str:
    """The page of the run in ``run_dir`` (see the module docstring)."""
    run = read_rl_run(run_dir)
    title = f"{TITLES[run.method]} run: {run.config.get('model', '')}"
    sections = [
        summary_section(run),
        plots_section(run.events),
        calibration_section(run.path),
        samples_section(run.samples),
    ]
    return run_page(title, [s for s in sections if s])


def write_rl_report(run_dir: str | Path, out_html: str | Path | None = None) -> Path:
    """Render ``run_dir`` to ``run_dir/report.html`` (or ``out_html``), atomically."""
    target = Path(out_html) if out_html is not None else Path(run_dir) / "report.html"
    write_atomic(target, [render_rl_report(run_dir)])
    return target
