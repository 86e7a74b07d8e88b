"""RL workflows whose reward source comes from config: ``instructkit train ppo``.

``train`` takes a :class:`~instructkit.train.rewards.RewardFn` and never imports a reward
source; this module is the glue that builds one from the config's ``reward:`` block and runs
the trainer::

    cfg = load_config(PPOJobConfig, "ppo.yaml", ["train.steps=50"])
    result = run_ppo_job(cfg)      # build_reward(cfg.reward), then train.ppo.run_ppo

A reward model (``kind: model``) that is a LoRA adapter trained on the policy's ``model``
is served by the policy's own base model as a second adapter (``reward.shared_base``, on by
default when it can be: :mod:`instructkit.train.reward_adapter`); one line says which mode runs.

The reward's ``check(row)`` runs on every prompt row before the model loads (inside
:func:`~instructkit.train.ppo.run_ppo`), so a row that lacks what the verifier reads fails in
seconds with its file, row and field.
"""

from __future__ import annotations

from pydantic import Field

from instructkit.errors import ConfigError
from instructkit.lm.base import LM
from instructkit.rl.rewards import RewardSpec, build_policy_reward, build_reward
from instructkit.train.ppo import PPOConfig, PPOResult, run_ppo
from instructkit.train.reward_adapter import SharedBaseReward, shared_base_problem
from instructkit.train.rewards import RewardFn

__all__ = ["PPOJobConfig", "PPORewardSpec", "ppo_reward", "run_ppo_job"]


class PPORewardSpec(RewardSpec):
    """:class:`~instructkit.rl.rewards.RewardSpec` plus what only PPO can do with a reward model."""

    shared_base: bool | None = Field(
        default=None,
        description="'model' only: score with the reward model's LoRA adapter loaded as a "
        "second adapter on the policy's base model (one base model in memory). None: when the "
        "reward model can (a LoRA adapter on the policy's model); true: require it (ConfigError "
        "otherwise); false: load the reward model as a separate model.",
    )


class PPOJobConfig(PPOConfig):
    """:class:`~instructkit.train.ppo.PPOConfig` plus the reward source (``reward:``)."""

    reward: PPORewardSpec = Field(default_factory=PPORewardSpec)


def run_ppo_job(
    cfg: PPOJobConfig, *, progress: bool = True, judge_lm: LM | None = None
) -> PPOResult:
    """PPO on ``cfg.prompts`` with the reward ``cfg.reward`` names; config.yaml keeps both.
    ``judge_lm`` replaces the LM of a ``judge`` reward (unparseable grades count as 0.0)."""
    return run_ppo(cfg, ppo_reward(cfg, judge_lm=judge_lm), progress=progress)


def ppo_reward(cfg: PPOJobConfig, *, judge_lm: LM | None = None) -> RewardFn:
    """The reward source of ``cfg``; a reward model shares the policy's base when it can."""
    spec = cfg.reward
    if spec.shared_base and spec.kind != "model":
        raise ConfigError(
            f"reward.shared_base: true applies to reward kind 'model', not '{spec.kind}'.",
            fix="remove reward.shared_base, or set reward.kind: model with reward.path.",
        )
    if spec.kind != "model" or not spec.path or spec.shared_base is False:
        if spec.kind == "model" and spec.path:
            print(f"reward: {spec.path} as a separate model (reward.shared_base: false)")
            return build_reward(spec)
        return build_policy_reward(spec, judge_lm=judge_lm)
    problem = shared_base_problem(spec.path, model=cfg.model, lora=cfg.lora.enabled)
    if problem is None:
        print(f"reward: {spec.path} as a second adapter on the policy's base model (shared)")
        return SharedBaseReward(spec.path)
    if spec.shared_base:
        raise ConfigError(
            f"reward.shared_base: the reward model {spec.path} cannot share the policy's base "
            f"model: {problem}",
            fix="train the reward model with LoRA on the policy's model, or set "
            "reward.shared_base: false to load it as a separate model.",
        )
    print(f"reward: {spec.path} as a separate model, a second base model in memory ({problem})")
    return build_reward(spec)
