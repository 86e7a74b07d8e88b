"""``instructkit train ...``: each command parses its options, builds the workflow's config
(``--config FILE.yaml`` with ``--set key=value`` overrides) and calls one ``run_*`` function."""

from __future__ import annotations

import click

from instructkit.cli.main import _Group


@click.group(cls=_Group)
def train() -> None:
    """Fine-tune models: SFT, PPO; reward models, DPO and GRPO as they land."""


@train.command("sft")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="YAML file describing the run (every key is listed in docs/sft.md).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config key, e.g. --set train.lr=1e-4 or --set skip_invalid=true (repeatable).",
)
def train_sft_cmd(config_path, overrides) -> None:
    """Supervised fine-tuning (LoRA or full) with response-only loss, packing and resume."""
    from instructkit.config import load_config
    from instructkit.train.sft import SFTConfig, format_summary, run_sft

    cfg = load_config(SFTConfig, config_path, overrides)
    click.echo(format_summary(run_sft(cfg)))


@train.command("ppo")
@click.argument("prompts", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", "output_dir", default=None, help="Run directory (output_dir).")
@click.option("--model", default=None, help="Model name, hub id or local path.")
@click.option(
    "--reward",
    "reward_kind",
    type=click.Choice(["ifeval", "exact"]),
    default=None,
    help="Reward source: ifeval (the row's IFEval instructions) or exact (its 'answer').",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="YAML file describing the run (every key is listed in docs/ppo.md).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config key, e.g. --set train.steps=50 or --set kl.coef=0.1 (repeatable).",
)
def train_ppo_cmd(prompts, output_dir, model, reward_kind, config_path, overrides) -> None:
    """PPO with a KL penalty to the reference, on PROMPTS (JSONL rows with a prompt)."""
    from instructkit.config import load_config
    from instructkit.rl.workflows import PPOJobConfig, run_ppo_job
    from instructkit.train.ppo import format_ppo_summary

    reward = {"kind": reward_kind} if reward_kind else None
    cfg = load_config(
        PPOJobConfig,
        config_path,
        overrides,
        prompts=prompts,
        output_dir=output_dir,
        model=model,
        reward=reward,
    )
    click.echo(format_ppo_summary(run_ppo_job(cfg)))
