"""Losses as small pure functions, shared by training and evaluation (response loss, perplexity).

This module sits below ``data``, ``train`` and ``evaluate`` so that all three can use it; it
also owns ``IGNORE_INDEX``, the label of positions that carry no loss.

``response_only_loss`` computes the LM head only at positions whose next-token label carries
loss: for an instruction model most positions are prompt, and the head (vocabulary x hidden)
is a large share of a small model's FLOPs.

Per-token quantities of RL fine-tuning live here too, because evaluation measures them as
well (the KL of a tuned policy to its reference on held-out prompts): ``token_logprobs``,
``kl_per_token`` (estimators k1 and k3) and ``entropy_from_logits``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads on first use, so that importing the data layer stays light
    import torch

IGNORE_INDEX = -100  # the label of a position that carries no loss (PyTorch's default)

__all__ = [
    "IGNORE_INDEX",
    "entropy_from_logits",
    "kl_per_token",
    "pairwise_reward_loss",
    "response_only_loss",
    "token_logprobs",
]


def response_only_loss(
    hidden: torch.Tensor, labels: torch.Tensor, lm_head: torch.nn.Module
) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over labelled positions, and their count.

    hidden: (B, T, H) final hidden states; labels: (B, T) with -100 where no loss is taken.
    Position t predicts labels[t + 1]. Returns (sum of token losses, number of tokens): divide
    by the token count of the whole (accumulated) batch to get a token-weighted mean.
    """
    import torch.nn.functional as F

    targets = labels[:, 1:]  # (B, T-1)
    mask = targets != IGNORE_INDEX
    n = int(mask.sum())
    if n == 0:
        return hidden.sum() * 0.0, 0
    picked = hidden[:, :-1][mask]  # (N, H)
    logits = lm_head(picked).float()  # (N, V)
    return F.cross_entropy(logits, targets[mask], reduction="sum"), n


def pairwise_reward_loss(
    r_chosen: torch.Tensor,
    r_rejected: torch.Tensor,
    margin: torch.Tensor | None = None,
    center_coefficient: float = 0.0,
) -> torch.Tensor:
    """Per-pair Bradley–Terry loss of a reward model, (B,) -> (B,).

    ``-log sigmoid(r_chosen - r_rejected - margin)`` (Bradley & Terry 1952; InstructGPT's reward
    model, Ouyang et al. 2022; the margin as in Llama 2, Touvron et al. 2023), plus
    ``center_coefficient * (r_chosen + r_rejected) ** 2``, which pulls rewards towards mean zero
    (Eisenstein et al. 2023; TRL's ``center_rewards_coefficient``). The mean over pairs of this
    vector is TRL's RewardTrainer loss.
    """
    import torch.nn.functional as F

    diff = r_chosen - r_rejected  # (B,)
    if margin is not None:
        diff = diff - margin
    loss = -F.logsigmoid(diff)
    if center_coefficient:
        loss = loss + center_coefficient * (r_chosen + r_rejected) ** 2
    return loss


def token_logprobs(
    logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Log-probability of each token under ``logits`` (already aligned: logits[..., t, :]
    predicts tokens[..., t]).

    logits: (..., V); tokens: (...) -> (...). ``temperature`` divides the logits first, so
    that log-probs match what sampling at that temperature drew from (as in TRL's PPO).
    """
    import torch.nn.functional as F

    logp = F.log_softmax(logits.float() / temperature, dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def kl_per_token(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from log-probs of sampled tokens.

    ``k1`` = logp - ref_logp (unbiased, can be negative per token); ``k3`` = (r - 1) - log r
    with r = p_ref / p (unbiased and never negative; Schulman, "Approximating KL divergence",
    2020). Shapes are preserved.
    """
    log_ratio = logp - ref_logp  # log(p / p_ref)
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return (-log_ratio).exp() - 1 + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}; use k1 or k3")


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the categorical distribution at each position: (..., V) -> (...)."""
    import torch

    logits = logits.float()
    p = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (p * logits).sum(-1)
