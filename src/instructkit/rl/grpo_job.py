"""``instructkit train grpo``: GRPO with a reward source named in the config::

    cfg = load_config(GRPOJobConfig, "grpo.yaml")    # GRPORunConfig keys + reward: {kind: ifeval}
    result = run_grpo_job(cfg)                       # build_reward + train.grpo.run_grpo

The glue lives here, not in ``train``, because building a verifier reward needs ``evaluate``
(IFEval's checks) and ``train`` never imports it.
"""

from __future__ import annotations

from pydantic import Field

from instructkit.lm.base import LM
from instructkit.rl.rewards import RewardSpec, build_policy_reward
from instructkit.train.grpo import GRPOResult, GRPORunConfig, run_grpo

__all__ = ["GRPOJobConfig", "run_grpo_job"]


class GRPOJobConfig(GRPORunConfig):
    """:class:`~instructkit.train.grpo.GRPORunConfig` plus the ``reward:`` block."""

    reward: RewardSpec = Field(default_factory=RewardSpec)


def run_grpo_job(
    cfg: GRPOJobConfig, *, progress: bool = True, judge_lm: LM | None = None
) -> GRPOResult:
    """Build the reward that ``cfg.reward`` names and run GRPO with it; ``judge_lm`` replaces
    the LM of a ``judge`` reward (unparseable grades count as 0.0, with a warning)."""
    reward = build_policy_reward(cfg.reward, judge_lm=judge_lm)
    return run_grpo(cfg, reward, progress=progress)  # config.yaml keeps reward
