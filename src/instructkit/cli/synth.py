"""``instructkit synth ...``: generate instruction data with an LM.

``instructkit synth self-instruct -n 500 --lm openai:MODEL -o tasks.jsonl`` runs Self-Instruct
from the bundled seed tasks (or ``--seeds FILE``). A thin command: a few flags, an optional YAML
file and ``--set key=value`` build a :class:`~instructkit.synth.self_instruct.SelfInstructConfig`
(``--set top_p=0.9``; the LM options are :func:`~instructkit.cli.options.lm_options`),
:func:`~instructkit.synth.self_instruct.run_self_instruct` does the work, and the
counts of kept and rejected items are printed at the end. Rerunning the same command resumes an
interrupted job; ``--fresh`` starts over.
"""

from __future__ import annotations

from typing import Any

import click

from instructkit.cli.options import config_options, lm_options
from instructkit.synth.self_instruct import SelfInstructResult

__all__ = ["synth", "self_instruct_cmd", "format_self_instruct_table"]


@click.group("synth")
def synth() -> None:
    """Generate instruction data with an LM (Self-Instruct, Evol-Instruct)."""


def _example(text: str, width: int = 70) -> str:
    one = " ".join(text.split())
    return repr(one if len(one) <= width else one[: width - 3] + "...")


def format_self_instruct_table(result: SelfInstructResult) -> str:
    """Kept tasks, then every rejection and malformed completion by reason, with an example."""
    r = result
    lines = [
        f"kept {r.n_kept} tasks ({r.n_classification} classification, {r.n_instances} "
        f"instances) in {r.out_path}; {r.n_new} new this run",
        f"rounds: {r.rounds}; LM requests: {r.n_requests}; instructions parsed: "
        f"{r.n_candidates}; valid but beyond the target (not written): {r.n_surplus}",
    ]
    sections = [
        ("rejected instructions", r.rejected_instructions),
        ("rejected instances", r.rejected_instances),
        ("malformed LM outputs", r.malformed),
    ]
    width = max((len(k) for _, d in sections for k in d), default=0)
    for title, counts in sections:
        lines.append(f"{title}: {sum(counts.values())}")
        for reason, n in counts.items():
            shown = r.examples.get(reason) or [""]
            lines.append(f"  {reason:<{width}}  {n:>6}  e.g. {_example(shown[0])}")
    return "\n".join(lines)


@synth.command("self-instruct")
@click.option(
    "--seeds",
    "seeds_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Seed tasks: Self-Instruct or Alpaca rows (default: the 120 bundled tasks).",
)
@click.option("--skip-invalid", is_flag=True, help="Skip bad seed rows instead of stopping.")
@click.option(
    "-n", "--num-instructions", type=int, default=None, help="Tasks to generate (default 100)."
)
@lm_options(required=True)
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Output JSONL.")
@click.option("--seed", type=int, default=None, help="Seed of every random choice (0).")
@click.option(
    "--alpaca",
    "alpaca_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write one Alpaca row (instruction/input/output) per instance here.",
)
@config_options("docs/synth.md", example="temperature=0.7", flags_win=True)
@click.option("--fresh", is_flag=True, help="Delete OUT and its state and start over.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def self_instruct_cmd(
    seeds_path: str | None,
    skip_invalid: bool,
    num_instructions: int | None,
    lm_flags: dict[str, Any],
    out: str,
    seed: int | None,
    alpaca_path: str | None,
    config_path: str | None,
    overrides: tuple[str, ...],
    fresh: bool,
    no_progress: bool,
) -> None:
    """Self-Instruct (Wang et al. 2022): grow N instruction tasks from seed tasks with an LM.

    Every other setting (temperature, top_p, max_tokens, prompts_per_round,
    similarity_threshold, ...) is a config key: --set KEY=VALUE or --config FILE.yaml
    (docs/synth.md lists them)."""
    from instructkit.config import load_config
    from instructkit.lm.options import LMOptions, build_lm_from
    from instructkit.synth.seeds import load_seed_tasks
    from instructkit.synth.self_instruct import (
        SelfInstructConfig,
        export_alpaca,
        run_self_instruct,
    )

    flags = {"num_instructions": num_instructions, "seed": seed}
    cfg = load_config(SelfInstructConfig, config_path, overrides, **flags)
    seeds = load_seed_tasks(seeds_path or cfg.seeds, skip_invalid=skip_invalid)
    click.echo(f"{len(seeds.tasks)} seed tasks from {seeds.path}")
    if seeds.rejects:
        click.echo(f"skipped {len(seeds.rejects)} bad seed rows:")
        for rej in seeds.rejects[:5]:
            click.echo(f"  row {rej.row}: {rej.field or '-'}: {rej.reason}")
    lm = build_lm_from(LMOptions(**lm_flags))
    r = run_self_instruct(cfg, lm, seeds.tasks, out, fresh=fresh, progress=not no_progress)
    if r.n_resumed:
        click.echo(f"resumed: {r.n_resumed} tasks were already in {out}")
    click.echo(format_self_instruct_table(r))
    if not r.reached_target:
        click.echo(
            f"stopped early: {r.n_kept} of {cfg.num_instructions} tasks; the last "
            f"{cfg.max_stale_rounds} rounds kept nothing (see the reasons above)"
        )
    if alpaca_path:
        n = export_alpaca(out, alpaca_path)
        click.echo(f"wrote {n} Alpaca rows to {alpaca_path}")
