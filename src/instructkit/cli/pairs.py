"""``instructkit data pairs PROMPTS -o PAIRS.jsonl``: on-policy preference pairs, a thin wrapper
of :func:`instructkit.rl.pairs.run_pairs` (sample N responses per prompt, rank by a reward).

Register it under the ``data`` group: ``data.add_command(data_pairs)``.
"""

from __future__ import annotations

import click

from instructkit.cli.options import config_options, lm_options

__all__ = ["data_pairs"]


@click.command("pairs")
@click.argument("prompts", required=False, type=click.Path())
@click.option("-o", "--out", default=None, type=click.Path(dir_okay=False), help="Pairs JSONL.")
@lm_options()
@click.option("-n", "n", type=int, default=None, help="Responses sampled per prompt (4).")
@click.option(
    "--reward",
    "reward_kind",
    type=click.Choice(["ifeval", "exact", "model", "judge"]),
    default=None,
    help="What ranks the responses (ifeval); judge needs --judge-lm.",
)
@click.option("--judge-lm", default=None, metavar="BACKEND[:MODEL]", help="The judge LM (judge).")
@click.option("--judge-base-url", default=None, help="Server URL for --judge-lm openai:MODEL.")
@click.option(
    "--judge-scoring",
    type=click.Choice(["text", "probabilities"]),
    default=None,
    help="Parse the judge's text, or (local judge) its grade probabilities (text).",
)
@click.option(
    "--judge-mode",
    type=click.Choice(["pointwise", "pairwise"]),
    default=None,
    help="1-10 grades, or a round robin of both-orders comparisons (pointwise).",
)
@click.option(
    "--reference-field", default=None, help="The judge grades against this field of the row."
)
@click.option("--min-margin", type=float, default=None, help="Pairs need a margin above (0).")
@click.option("--skip-invalid", is_flag=True, default=None, help="Send bad rows to rejects.")
@config_options("docs/reward.md", example="temperature=1.0", flags_win=True)
@click.option("--fresh", is_flag=True, default=None, help="Discard sampled responses; restart.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def data_pairs(
    prompts,
    out,
    lm_flags,
    n,
    reward_kind,
    judge_lm,
    judge_base_url,
    judge_scoring,
    judge_mode,
    reference_field,
    min_margin,
    skip_invalid,
    config_path,
    overrides,
    fresh,
    no_progress,
) -> None:
    """Sample N responses per prompt with an LM (--lm, default local), rank them by a reward,
    write chosen/rejected."""
    from instructkit.config import load_config
    from instructkit.rl.pairs import PairsConfig, run_pairs

    flags = {
        "prompts": prompts,
        "out": out,
        **lm_flags,
        "n": n,
        "reward": _reward_flags(
            reward_kind, judge_lm, judge_base_url, judge_scoring, reference_field
        ),
        "judge_mode": judge_mode,
        "min_margin": min_margin,
        "skip_invalid": skip_invalid or None,
        "fresh": fresh or None,
    }
    cfg = load_config(PairsConfig, config_path, overrides, **flags)
    result = run_pairs(cfg, progress=not no_progress)
    if result.n_sampled < result.n_prompts:
        click.echo(f"resumed: {result.n_prompts - result.n_sampled} prompts already sampled")
    click.echo(result.summary())


def _reward_flags(
    kind: str | None,
    judge_lm: str | None,
    base_url: str | None,
    scoring: str | None,
    reference_field: str | None,
) -> dict[str, object] | None:
    """The ``reward:`` keys the flags set (merged into the config file's), or None."""
    judge = {"lm": judge_lm, "base_url": base_url, "scoring": scoring}
    judge = {k: v for k, v in judge.items() if v is not None}
    flags: dict[str, object] = {"kind": kind, "judge": judge, "reference_field": reference_field}
    kept = {k: v for k, v in flags.items() if v}
    return kept or None
