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
