"""``instructkit data pairs PROMPTS -o PAIRS.jsonl``: on-policy preference pairs, a thin wrapper
of :func:`instructkit.rl.pairs.run_pairs` (sample N responses per prompt, rank by a reward).

Register it under the ``data`` group: ``data.add_command(data_pairs)``.
"""

from __future__ import annotations

import click

from instructkit.cli.options import config_options

__all__ = ["data_pairs"]


@click.command("pairs")
@click.argument("prompts", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", default=None, type=click.Path(dir_okay=False), help="Pairs JSONL.")
@click.option("--lm", "lm_spec", default=None, metavar="BACKEND[:MODEL]", help="LM that samples.")
@click.option("--base-url", default=None, help="Server URL for --lm openai:MODEL.")
@click.option("--cache", type=click.Path(dir_okay=False), default=None, help="LM request cache.")
@click.option("-n", "n", type=int, default=None, help="Responses sampled per prompt (4).")
@click.option(
    "--reward",
    "reward_kind",
    type=click.Choice(["ifeval", "exact", "model"]),
    default=None,
    help="What ranks the responses (ifeval).",
)
@click.option("--min-margin", type=float, default=None, help="Pairs need a margin above (0).")
@click.option("--skip-invalid", is_flag=True, default=None, help="Send bad rows to rejects.")
@config_options("docs/reward.md", example="temperature=1.0", flags_win=True)
@click.option("--fresh", is_flag=True, default=None, help="Discard sampled responses; restart.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def data_pairs(
    prompts,
    out,
    lm_spec,
    base_url,
    cache,
    n,
    reward_kind,
    min_margin,
    skip_invalid,
    config_path,
    overrides,
    fresh,
    no_progress,
) -> None:
    """Sample N responses per prompt with an LM, rank them by a reward, write chosen/rejected."""
    from instructkit.config import load_config
    from instructkit.rl.pairs import PairsConfig, run_pairs

    flags = {
        "prompts": prompts,
        "out": out,
        "lm": lm_spec,
        "base_url": base_url,
        "cache": cache,
        "n": n,
        "reward": {"kind": reward_kind} if reward_kind else None,
        "min_margin": min_margin,
        "skip_invalid": skip_invalid or None,
        "fresh": fresh or None,
    }
    cfg = load_config(PairsConfig, config_path, overrides, **flags)
    result = run_pairs(cfg, progress=not no_progress)
    if result.n_sampled < result.n_prompts:
        click.echo(f"resumed: {result.n_prompts - result.n_sampled} prompts already sampled")
    click.echo(result.summary())
