"""``instructkit train ...``: each command parses its options, builds the workflow's config
(``--config FILE.yaml`` with ``--set key=value`` overrides) and calls one ``run_*`` function."""

from __future__ import annotations

import click

from instructkit.cli.main import _Group
from instructkit.cli.options import config_options


@click.group(cls=_Group)
def train() -> None:
    """Fine-tune models: SFT; reward models, DPO, PPO and GRPO as they land."""


@train.command("sft")
@config_options("docs/sft.md", example="train.lr=1e-4")
def train_sft_cmd(config_path, overrides) -> None:
    """Supervised fine-tuning (LoRA or full) with response-only loss, packing and resume."""
    from instructkit.config import load_config
    from instructkit.train.sft import SFTConfig, format_summary, run_sft

    cfg = load_config(SFTConfig, config_path, overrides)
    click.echo(format_summary(run_sft(cfg)))


@train.command("reward")
@click.argument("data", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output-dir", default=None, help="Folder for the model, metrics and plots.")
@click.option("--model", default=None, help="Base model: a registry name, hub id or folder.")
@click.option(
    "--eval",
    "eval_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Held-out pairs (default: eval_ratio of the prompts of DATA).",
)
@config_options("docs/reward.md", example="too_long=truncate", flags_win=True)
def train_reward_cmd(data, output_dir, model, eval_path, config_path, overrides) -> None:
    """Train a reward model on preference pairs (Bradley-Terry loss, LoRA or full); writes
    metrics.json with held-out pair accuracy and a calibration plot."""
    from instructkit.config import load_config
    from instructkit.train.reward import RewardConfig, format_reward_summary, run_reward

    cfg = load_config(
        RewardConfig,
        config_path,
        overrides,
        data=data,
        output_dir=output_dir,
        model=model,
        eval_path=eval_path,
    )
    click.echo(format_reward_summary(run_reward(cfg)))
