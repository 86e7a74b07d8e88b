"""The math of PPO with a KL penalty, as small pure tensor functions (used by ``train/ppo.py``).

Shapes: B sequences, R response positions; ``mask`` (B, R) is 1.0 on response tokens (the
sampled tokens up to and including the end-of-turn token) and 0.0 on padding after them.

- :func:`kl_penalized_rewards`: r_t = -beta * KL_t, plus the sequence score at the last
  response token (Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences";
  InstructGPT, Ouyang et al. 2022, eq. 2); a response that hit ``max_new_tokens`` without an
  end-of-turn token may lose ``truncation_penalty``.
- :func:`gae`: generalized advantage estimation (Schulman et al. 2016) over the response.
- :func:`masked_mean`, :func:`masked_whiten`: statistics over valid tokens only.
- :func:`clipped_policy_loss`, :func:`clipped_value_loss`: PPO's clipped surrogate and clipped
  value objective (Schulman et al. 2017), with the clip fractions that users monitor.
- :class:`AdaptiveKLController` (Ziegler et al. 2019, sec. 2.2) and :class:`FixedKLController`.

The per-token estimators (k1, k3), token log-probs and entropy are in :mod:`instructkit.losses`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "AdaptiveKLController",
    "FixedKLController",
    "PolicyLoss",
    "ValueLoss",
    "clipped_policy_loss",
    "clipped_value_loss",
    "gae",
    "kl_penalized_rewards",
    "masked_mean",
    "masked_whiten",
]


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is 1 (0 when there are none)."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, *, shift_mean: bool = True) -> torch.Tensor:
    """(x - mean) / std over valid tokens; ``shift_mean=False`` adds the mean back (only the
    scale changes, as TRL does for rewards). The variance is Bessel-corrected; padded
    positions come back as 0."""
    mean = masked_mean(x, mask)
    n = mask.sum()
    var = masked_mean((x - mean) ** 2, mask) * n / (n - 1).clamp(min=1)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


def kl_penalized_rewards(
    kl: torch.Tensor,
    mask: torch.Tensor,
    scores: torch.Tensor,
    kl_coef: float,
    *,
    ended: torch.Tensor | None = None,
    truncation_penalty: float = 0.0,
) -> torch.Tensor:
    """Per-token rewards (B, R): -kl_coef * kl on every response token, and the sequence score
    (B,) added at the last response token. Where ``ended`` (B,) is False (no end-of-turn token
    within the budget), ``truncation_penalty`` is subtracted from the score."""
    rewards = -kl_coef * kl * mask  # (B, R)
    if ended is not None:
        scores = scores - truncation_penalty * (~ended).to(scores.dtype)
    last = (mask.sum(-1).long() - 1).clamp(min=0)  # (B,) index of the last response token
    rewards[torch.arange(len(scores)), last] += scores.to(rewards.dtype)
    return rewards


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns (both (B, R)) by generalized advantage estimation.

    delta_t = r_t + gamma * V_{t+1} - V_t, A_t = delta_t + gamma * lam * A_{t+1}, with
    V = 0 after the last response token (the episode ends there); returns = A + V.
    """
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])  # (B,)
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last  # 0 on padding: its delta is 0
        advantages[:, t] = last
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


@dataclass(frozen=True)
class PolicyLoss:
    loss: torch.Tensor  # scalar, differentiable
    clip_frac: float  # share of tokens where the clipped term was taken
    approx_kl: float  # 0.5 * mean (log ratio)^2 between the new and the rollout policy


def clipped_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
) -> PolicyLoss:
    """PPO's clipped surrogate: mean over tokens of max(-A * ratio, -A * clip(ratio, 1 +- eps))."""
    log_ratio = logp - old_logp
    ratio = log_ratio.exp()
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip, 1 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_frac = float(masked_mean((clipped > unclipped).float(), mask))
        approx_kl = float(0.5 * masked_mean(log_ratio**2, mask))
    return PolicyLoss(loss, clip_frac, approx_kl)


@dataclass(frozen=True)
class ValueLoss:
    loss: torch.Tensor  # scalar, differentiable
    clip_frac: float  # share of tokens where the clipped error was the larger one


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
) -> ValueLoss:
    """0.5 * mean over tokens of max((V - G)^2, (V_clipped - G)^2), where V_clipped stays
    within ``clip`` of the rollout's value."""
    clipped_values = old_values + (values - old_values).clamp(-clip, clip)
    err = (values - returns) ** 2
    err_clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(err, err_clipped), mask)
    with torch.no_grad():
        clip_frac = float(masked_mean((err_clipped > err).float(), mask))
    return ValueLoss(loss, clip_frac)


class FixedKLController:
    """A constant KL coefficient."""

    def __init__(self, coef: float) -> None:
        self.value = coef

    def update(self, kl: float, n_samples: int) -> None:
        """Nothing changes."""


class AdaptiveKLController:
    """Ziegler et al. (2019), sec. 2.2: beta <- beta * (1 + K_beta * e) with the proportional
    error e = clip(KL / target - 1, -0.2, 0.2) and K_beta = n_samples / horizon, where KL is
    the mean KL per sequence of the last batch."""

    def __init__(self, coef: float, target: float, horizon: int) -> None:
        self.value = coef
        self.target = target
        self.horizon = horizon

    def update(self, kl: float, n_samples: int) -> None:
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_samples / self.horizon
