"""``instructkit synth evol IN -o OUT --rounds R --lm BACKEND[:MODEL]``: Evol-Instruct.

A thin command: flags and an optional YAML file build an
:class:`~instructkit.synth.evol_instruct.EvolConfig`, :func:`run_evol` does the work, and a
table of kept rows per round and eliminations per reason is printed at the end. Rerunning the
same command resumes an interrupted run; ``--fresh`` starts over.
"""

from __future__ import annotations

import click

from instructkit.cli.options import config_options, lm_options
from instructkit.synth.evol_instruct import EvolResult

__all__ = ["evol", "format_evol_table"]


def format_evol_table(result: EvolResult) -> str:
    """Kept and eliminated rows per round, then eliminations per reason, as aligned text."""
    lines = [f"{'round':>5}  {'kept':>6}  {'eliminated':>10}"]
    for rnd in sorted(result.kept_per_round):
        kept, bad = result.kept_per_round[rnd], result.eliminated_per_round.get(rnd, 0)
        lines.append(f"{rnd:>5}  {kept:>6}  {bad:>10}")
    lines.append(f"{'all':>5}  {result.n_kept:>6}  {result.n_eliminated:>10}")
    if result.per_reason:
        width = max(len(r) for r in result.per_reason)
        lines.append("eliminated by reason:")
        for reason, n in sorted(result.per_reason.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {reason:<{width}}  {n:>6}")
    return "\n".join(lines)


@click.command("evol")
@click.argument("src", type=click.Path(), required=False)
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False))
@lm_options(required=True)
@click.option("--rounds", type=int, default=None, help="Evolution rounds (default 4).")
@click.option("--seed", type=int, default=None, help="Seed of every random choice (default 0).")
@click.option("--temperature", type=float, default=None, help="Sampling temperature.")
@click.option("--max-tokens", type=int, default=None, help="Tokens per LM answer.")
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where eliminated evolutions go (default: OUT.rejects.jsonl).",
)
@config_options("docs/synth.md", example="rounds=2")
@click.option("--fresh", is_flag=True, help="Delete OUT and its rejects and start over.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def evol(
    src,
    out,
    lm_flags,
    rounds,
    seed,
    temperature,
    max_tokens,
    rejects,
    config_path,
    overrides,
    fresh,
    no_progress,
) -> None:
    """Evolve the instructions of SRC (any instruction format, or JSONL with "instruction"; or
    the config's `seeds:`, a path or a dataset spec with columns)."""
    from instructkit.config import load_config
    from instructkit.lm.options import LMOptions, build_lm_from
    from instructkit.synth.evol_instruct import EvolConfig, load_instructions, run_evol

    flags = {"rounds": rounds, "seed": seed, "temperature": temperature, "max_tokens": max_tokens}
    cfg = load_config(EvolConfig, config_path, overrides, **flags)
    source = src if src is not None else cfg.seeds
    if source is None:
        raise click.UsageError("give SRC, or seeds: in the config (--set seeds=FILE).")
    seeds = load_instructions(source)
    lm = build_lm_from(LMOptions(**lm_flags))
    r = run_evol(cfg, lm, seeds, out, rejects, progress=not no_progress, fresh=fresh)
    resumed = f" ({r.n_resumed} resumed from an earlier run)" if r.n_resumed else ""
    click.echo(f"{r.n_seeds} seeds, {cfg.rounds} rounds{resumed}")
    click.echo(format_evol_table(r))
    click.echo(f"kept rows in {r.out_path}; eliminated rows in {r.rejects_path}")
