"""``instructkit train ...``: each command parses its options, builds the workflow's config
(``--config FILE.yaml`` with ``--set key=value`` overrides) and calls one ``run_*`` function.
``reward``, ``ppo``, ``dpo`` and ``grpo`` then write the run's report.html
(:func:`instructkit.report.rl.write_rl_report`: the report layer sits above ``train``, so the
workflows cannot write it themselves); ``train report DIR`` renders it again."""

from __future__ import annotations

import click

from instructkit.cli.main import _Group
from instructkit.cli.options import config_options, run_options


@click.group(cls=_Group)
def train() -> None:
    """Fine-tune models: SFT, reward models, DPO, PPO, GRPO and meta-learning."""


@train.command("sft")
@config_options("docs/sft.md", example="train.lr=1e-4")
def train_sft_cmd(config_path, overrides) -> None:
    """Supervised fine-tuning (LoRA or full) with response-only loss, packing and resume."""
    from instructkit.config import load_config
    from instructkit.train.sft import SFTConfig, format_summary, run_sft

    cfg = load_config(SFTConfig, config_path, overrides)
    click.echo(format_summary(run_sft(cfg)))


@train.command("reward")
@run_options(
    "data",
    "preference pairs",
    eval_help="Held-out pairs (default: eval_ratio of the prompts of DATA).",
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
    _report(cfg.output_dir)


@train.command("ppo")
@run_options("prompts", "prompt rows", reward=True)
@config_options("docs/ppo.md", example="kl.coef=0.1", flags_win=True)
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
    _report(cfg.output_dir)


@train.command("dpo")
@run_options(
    "data",
    "preference pairs",
    eval_help="Held-out pairs (eval_path); else eval_ratio of DATA is held out.",
)
@config_options("docs/preference.md", example="loss_type=ipo", flags_win=True)
def train_dpo_cmd(data, output_dir, model, eval_path, config_path, overrides) -> None:
    """DPO on preference pairs (TRL's DPOTrainer; sigmoid, ipo, hinge or robust loss)."""
    from instructkit.config import load_config
    from instructkit.train.dpo import DPORunConfig, format_summary, run_dpo

    # DATA/-o/--model/--eval override the YAML; --set overrides them (None: not given)
    values = {"data": data, "output_dir": output_dir, "model": model, "eval_path": eval_path}
    cfg = load_config(DPORunConfig, config_path, overrides, **values)
    click.echo(format_summary(run_dpo(cfg)))
    _report(cfg.output_dir)


@train.command("grpo")
@run_options("data", "prompt rows", reward=True)
@config_options("docs/preference.md", example="num_generations=4", flags_win=True)
def train_grpo_cmd(data, output_dir, model, reward_kind, config_path, overrides) -> None:
    """GRPO on prompts with a verifiable reward (TRL's GRPOTrainer; CPU generation)."""
    from instructkit.config import load_config
    from instructkit.rl.grpo_job import GRPOJobConfig, run_grpo_job
    from instructkit.train.grpo import format_summary

    values = {"data": data, "output_dir": output_dir, "model": model}
    reward = {"kind": reward_kind} if reward_kind else None
    cfg = load_config(GRPOJobConfig, config_path, overrides, reward=reward, **values)
    click.echo(format_summary(run_grpo_job(cfg)))
    _report(cfg.output_dir)


def _report(run_dir: str) -> None:
    from instructkit.report.rl import write_rl_report

    click.echo(f"report: {write_rl_report(run_dir)}")


@train.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "-o", "--out", "out_html", default=None, help="HTML file (default RUN_DIR/report.html)."
)
def train_report_cmd(run_dir, out_html) -> None:
    """Write the HTML report (plots of every logged metric, summary, sample rollouts) of a
    train ppo, grpo, dpo or reward run folder; works on an unfinished run too."""
    from instructkit.report.rl import write_rl_report

    click.echo(f"report: {write_rl_report(run_dir, out_html)}")


@train.command("meta")
@config_options("docs/meta.md", example="algorithm=reptile")
def train_meta_cmd(config_path, overrides) -> None:
    """Meta-learn a LoRA initialization over instruction tasks (first-order MAML or Reptile)
    that adapts to a new task in a few steps."""
    from instructkit.config import load_config
    from instructkit.train.meta import MetaConfig, format_meta_summary, run_meta

    cfg = load_config(MetaConfig, config_path, overrides)
    click.echo(format_meta_summary(run_meta(cfg)))
