"""``instructkit data filter`` and ``instructkit data dedup``: thin wrappers of
:func:`instructkit.data.quality.run_filter` and :func:`~instructkit.data.quality.run_dedup`.
With ``--judge``, the filter rates records through
:func:`instructkit.evaluate.quality_judge.build_quality_scorer` (journaled, resumable).

Register them under the ``data`` group: ``data.add_command(data_filter)`` and
``data.add_command(data_dedup)``. The output keeps the input's format; every row read ends up
either in OUT or in the rejects file (``{row, reasons, record}`` per line), and the counts per
reason are printed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from instructkit.cli.options import FORMAT_CHOICE, config_options, lm_options

if TYPE_CHECKING:  # the data modules load only when a command runs, as in cli.main
    from instructkit.data.quality import QualityRun

__all__ = ["data_filter", "data_dedup"]


def _common(f):
    """SRC, -o OUT, --rejects, --from and --skip-invalid, shared by both commands."""
    f = click.option(
        "--skip-invalid",
        is_flag=True,
        help="Send unreadable rows to the rejects file instead of stopping.",
    )(f)
    f = click.option(
        "--from",
        "fmt",
        type=FORMAT_CHOICE,
        default=None,
        help="Input format (auto-detected when left out); the output keeps it.",
    )(f)
    f = click.option(
        "--rejects",
        type=click.Path(dir_okay=False),
        default=None,
        help="Where dropped rows go, with their reasons (default: OUT.rejects.jsonl).",
    )(f)
    f = click.option("-o", "--out", "dst", required=True, type=click.Path(dir_okay=False))(f)
    return click.argument("src", type=click.Path())(f)


def _echo_run(r: QualityRun, dst: str) -> None:
    """The summary line, the counts per reason (the report's table, if any), the notes."""
    click.echo(
        f"{r.format}: {r.n_rows} rows -> {r.n_kept} kept ({dst}), "
        f"{r.n_rejected} rejected ({r.rejects_path})"
    )
    if r.report is not None:
        click.echo(r.report.format())
    else:
        for reason, n in r.counts.items():
            click.echo(f"  {reason}: {n}")
    for note in r.notes:
        click.echo(f"note: {note}")


@click.command("filter")
@_common
@config_options("docs/data-quality.md", example="max_repetition=0.2")
@lm_options(
    prefix="judge",
    lm_help="Also rate each record 1-5 with this LM and drop those below judge_threshold.",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the quality report (counts, score distributions, examples) as JSON.",
)
@click.option(
    "--fresh",
    is_flag=True,
    help="Delete the judge journal (OUT.judge.jsonl or judge_journal) and rate everything again.",
)
@click.option("--no-progress", is_flag=True, help="Hide the judge's progress bar.")
def data_filter(
    src,
    dst,
    rejects,
    fmt,
    skip_invalid,
    config_path,
    overrides,
    judge_flags,
    report_path,
    fresh,
    no_progress,
) -> None:
    """Drop low-quality rows of SRC: length, refusal, copy, format, repetition, garbage and
    unsafe-word heuristics, optionally an LLM judge (journaled: a rerun resumes)."""
    from instructkit.config import load_config
    from instructkit.data.quality import run_filter
    from instructkit.data.quality_config import QualityConfig
    from instructkit.evaluate.quality_judge import build_quality_scorer

    # --judge sets judge; --judge-model etc. set judge_model, ... (one name everywhere)
    flags = {("judge" if k == "lm" else f"judge_{k}"): v for k, v in judge_flags.items()}
    cfg = load_config(QualityConfig, config_path, overrides, **flags)
    scorer = build_quality_scorer(cfg, dst, progress=not no_progress, fresh=fresh)
    r = run_filter(
        src,
        dst,
        cfg,
        scorer=scorer,
        rejects=rejects,
        report=report_path,
        fmt=fmt,
        skip_invalid=skip_invalid,
    )
    _echo_run(r, dst)
    if scorer is not None:
        click.echo(scorer.summary())


@click.command("dedup")
@_common
@click.option(
    "--threshold",
    type=float,
    default=0.7,
    show_default=True,
    help="ROUGE-L F1 at or above which a row is a near duplicate of an earlier one.",
)
@click.option(
    "--field",
    type=click.Choice(["instruction", "instruction+input"]),
    default="instruction",
    show_default=True,
    help="What is compared: the user turns, or the user turns with Alpaca inputs.",
)
def data_dedup(src, dst, rejects, fmt, skip_invalid, threshold, field) -> None:
    """Drop exact (normalized) and near-duplicate (ROUGE-L) rows of SRC; first occurrence kept."""
    from instructkit.config import load_config
    from instructkit.data.dedup import DedupConfig
    from instructkit.data.quality import run_dedup

    cfg = load_config(DedupConfig, threshold=threshold, field=field)
    r = run_dedup(src, dst, cfg, rejects=rejects, fmt=fmt, skip_invalid=skip_invalid)
    _echo_run(r, dst)
