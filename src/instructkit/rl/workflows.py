"""RL workflows whose reward source comes from config: ``instructkit train ppo``.

``train`` takes a :class:`~instructkit.train.rewards.RewardFn` and never imports a reward
source; this module is the glue that builds one from the config's ``reward:`` block and runs
the trainer::

    cfg = load_config(PPOJobConfig, "ppo.yaml", ["train.steps=50"])
    result = run_ppo_job(cfg)      # build_reward(cfg.reward), then train.ppo.run_ppo

The reward's ``check(row)`` runs on every prompt row before the model loads (inside
:func:`~instructkit.train.ppo.run_ppo`), so a row that lacks what the verifier reads fails in
seconds with its file, row and field.
"""

from __future__ import annotations

from pydantic import Field

from instructkit.lm.base import LM
from instructkit.rl.rewards import RewardSpec, build_policy_reward
from instructkit.train.ppo import PPOConfig, PPOResult, run_ppo

__all__ = ["PPOJobConfig", "run_ppo_job"]


class PPOJobConfig(PPOConfig):
    """:class:`~instructkit.train.ppo.PPOConfig` plus the reward source (``reward:``)."""

    reward: RewardSpec = Field(default_factory=RewardSpec)


def run_ppo_job(
    cfg: PPOJobConfig, *, progress: bool = True, judge_lm: LM | None = None
) -> PPOResult:
    """PPO on ``cfg.prompts`` with the reward ``cfg.reward`` names; config.yaml keeps both.
    ``judge_lm`` replaces the LM of a ``judge`` reward (unparseable grades count as 0.0)."""
    return run_ppo(cfg, build_policy_reward(cfg.reward, judge_lm=judge_lm), progress=progress)
