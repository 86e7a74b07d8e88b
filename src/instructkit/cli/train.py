"""``instructkit train ...``: each command parses its options, builds the workflow's config
(``--config FILE.yaml`` with ``--set key=value`` overrides) and calls one ``run_*`` function."""

from __future__ import annotations

import click

from instructkit.cli.main import _Group


@click.group(cls=_Group)
def train() -> None:
    """Fine-tune models: SFT; reward models, DPO, PPO and GRPO as they land."""


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


@train.command("dpo")
@click.argument("data", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output-dir", default=None, help="Run folder (output_dir).")
@click.option("--model", default=None, help="Model name, hub id or path (model).")
@click.option(
    "--eval",
    "eval_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Held-out pairs (eval_path); else eval_ratio of DATA is held out.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="YAML file (every key is listed in docs/preference.md).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config key, e.g. --set loss_type=ipo --set beta=0.2 (repeatable).",
)
def train_dpo_cmd(data, output_dir, model, eval_path, config_path, overrides) -> None:
    """DPO on preference pairs (TRL's DPOTrainer; sigmoid, ipo, hinge or robust loss)."""
    from instructkit.config import load_config
    from instructkit.train.dpo import DPORunConfig, format_summary, run_dpo

    # DATA/-o/--model/--eval override the YAML; --set overrides them (None: not given)
    values = {"data": data, "output_dir": output_dir, "model": model, "eval_path": eval_path}
    cfg = load_config(DPORunConfig, config_path, overrides, **values)
    click.echo(format_summary(run_dpo(cfg)))


@train.command("grpo")
@click.argument("data", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output-dir", default=None, help="Run folder (output_dir).")
@click.option("--model", default=None, help="Model name, hub id or path (model).")
@click.option(
    "--reward",
    "reward_kind",
    type=click.Choice(["ifeval", "exact"]),
    default=None,
    help="Reward source (reward.kind): ifeval checks or an exact answer.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="YAML file (every key is listed in docs/preference.md).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config key, e.g. --set num_generations=4 (repeatable).",
)
def train_grpo_cmd(data, output_dir, model, reward_kind, config_path, overrides) -> None:
    """GRPO on prompts with a verifiable reward (TRL's GRPOTrainer; CPU generation)."""
    from instructkit.config import load_config
    from instructkit.rl.grpo_job import GRPOJobConfig, run_grpo_job
    from instructkit.train.grpo import format_summary

    values = {"data": data, "output_dir": output_dir, "model": model}
    reward = {"kind": reward_kind} if reward_kind else None
    cfg = load_config(GRPOJobConfig, config_path, overrides, reward=reward, **values)
    click.echo(format_summary(run_grpo_job(cfg)))
