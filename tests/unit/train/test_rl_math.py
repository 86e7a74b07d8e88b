"""PPO's math against hand computations (train/rl_math.py and the per-token pieces in losses.py)."""

import math

import pytest
import torch

from instructkit.losses import entropy_from_logits, kl_per_token, token_logprobs
from instructkit.train.rl_math import (
    AdaptiveKLController,
    FixedKLController,
    clipped_policy_loss,
    clipped_value_loss,
    gae,
    kl_penalized_rewards,
    masked_mean,
    masked_whiten,
)

MASK = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # three response tokens, one pad


def test_token_logprobs_read_the_sampled_token_at_a_temperature():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # p = (0.25, 0.75)
    assert token_logprobs(logits, torch.tensor([1])).item() == pytest.approx(math.log(0.75))
    assert token_logprobs(logits, torch.tensor([0])).item() == pytest.approx(math.log(0.25))
    s3 = math.sqrt(3.0)  # temperature 2 halves the logits: p1 = sqrt(3) / (1 + sqrt(3))
    got = token_logprobs(logits, torch.tensor([1]), temperature=2.0).item()
    assert got == pytest.approx(math.log(s3 / (1 + s3)))


def test_kl_estimators_k1_and_k3():
    logp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    assert kl_per_token(logp, ref, "k1").item() == pytest.approx(math.log(2))
    # r = p_ref / p = 0.5: (r - 1) - log r = -0.5 + log 2
    assert kl_per_token(logp, ref, "k3").item() == pytest.approx(-0.5 + math.log(2))
    # the policy below the reference: k1 is negative, k3 stays positive
    assert kl_per_token(ref, logp, "k1").item() == pytest.approx(-math.log(2))
    assert kl_per_token(ref, logp, "k3").item() == pytest.approx(1 - math.log(2))
    assert kl_per_token(logp, logp, "k3").item() == 0.0
    with pytest.raises(ValueError, match="k2"):
        kl_per_token(logp, ref, "k2")


def test_entropy_of_uniform_and_of_a_certain_distribution():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]])
    got = entropy_from_logits(logits)
    assert got[0].item() == pytest.approx(math.log(4))
    assert got[1].item() == pytest.approx(0.0, abs=1e-6)


def test_rewards_put_the_score_on_the_last_response_token():
    kl = torch.tensor([[0.1, 0.2, 0.3, 9.0]])  # the pad's KL is ignored
    r = kl_penalized_rewards(kl, MASK, torch.tensor([1.0]), 0.5)
    assert r.tolist()[0] == pytest.approx([-0.05, -0.1, -0.15 + 1.0, 0.0])
    ended = torch.tensor([False])
    r = kl_penalized_rewards(kl, MASK, torch.tensor([1.0]), 0.5, ended=ended, truncation_penalty=2)
    assert r.tolist()[0] == pytest.approx([-0.05, -0.1, -0.15 + 1.0 - 2.0, 0.0])
    r = kl_penalized_rewards(kl, MASK, torch.tensor([1.0]), 0.5, ended=~ended, truncation_penalty=2)
    assert r[0, 2].item() == pytest.approx(0.85)


def test_gae_on_three_tokens_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 5.0]])
    values = torch.tensor([[0.5, 0.6, 0.7, 9.0]])
    adv, ret = gae(rewards, values, MASK, gamma=1.0, lam=0.9)
    # t=2: 1 - 0.7 = 0.3; t=1: (0.7 - 0.6) + 0.9 * 0.3 = 0.37; t=0: 0.1 + 0.9 * 0.37 = 0.433
    assert adv.tolist()[0] == pytest.approx([0.433, 0.37, 0.3, 0.0])
    assert ret.tolist()[0] == pytest.approx([0.933, 0.97, 1.0, 0.0])
    adv, _ = gae(rewards, values, MASK, gamma=0.5, lam=1.0)
    # t=2: 0.3; t=1: 0.5*0.7 - 0.6 + 0.5*0.3 = -0.1; t=0: 0.5*0.6 - 0.5 + 0.5*(-0.1) = -0.25
    assert adv.tolist()[0] == pytest.approx([-0.25, -0.1, 0.3, 0.0])


def test_masked_mean_and_whitening_ignore_padding():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    assert masked_mean(x, MASK).item() == pytest.approx(2.0)
    # mean 2, Bessel variance (1 + 0 + 1) / 2 = 1
    assert masked_whiten(x, MASK).tolist()[0] == pytest.approx([-1.0, 0.0, 1.0, 0.0], abs=1e-6)
    x2 = torch.tensor([[1.0, 3.0, 5.0, 100.0]])  # std 2: only the scale changes
    got = masked_whiten(x2, MASK, shift_mean=False).tolist()[0]
    assert got == pytest.approx([-1.0 + 3.0, 3.0, 1.0 + 3.0, 0.0], abs=1e-6)


def test_policy_loss_clips_in_each_of_the_four_cases():
    ratio = torch.tensor([[1.5, 0.5, 0.5, 1.5]])
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    out = clipped_policy_loss(ratio.log(), torch.zeros(1, 4), adv, torch.ones(1, 4), clip=0.2)
    # A>0, r=1.5: clipped -1.2; A>0, r=0.5: unclipped -0.5; A<0, r=0.5: clipped 0.8;
    # A<0, r=1.5: unclipped 1.5
    assert out.loss.item() == pytest.approx((-1.2 - 0.5 + 0.8 + 1.5) / 4)
    assert out.clip_frac == pytest.approx(0.5)
    assert out.approx_kl == pytest.approx(0.5 * (math.log(1.5) ** 2 + math.log(0.5) ** 2) / 2)
    same = clipped_policy_loss(torch.zeros(1, 4), torch.zeros(1, 4), adv, MASK, clip=0.2)
    assert (same.clip_frac, same.approx_kl) == (0.0, 0.0)
    assert same.loss.item() == pytest.approx(-1 / 3)  # -mean(A) over the 3 valid tokens


def test_value_loss_clips_far_moves():
    old, ret, m = torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 2)
    v = torch.tensor([[0.5, -0.1]])
    out = clipped_value_loss(v, old, ret, m, clip=0.2)
    # token 1: V clipped to 0.2, (0.2 - 1)^2 = 0.64 > 0.25; token 2 within the clip: 1.21
    assert out.loss.item() == pytest.approx(0.5 * (0.64 + 1.21) / 2)
    assert out.clip_frac == pytest.approx(0.5)


def test_adaptive_kl_controller_follows_ziegler():
    c = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    c.update(12.0, n_samples=100)  # error 1 clipped to 0.2: beta * (1 + 0.2 * 100 / 10000)
    assert c.value == pytest.approx(0.1 * 1.002)
    c = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    c.update(6.6, n_samples=100)  # error 0.1
    assert c.value == pytest.approx(0.1 * 1.001)
    c.update(0.0, n_samples=100)  # error -1 clipped to -0.2
    assert c.value == pytest.approx(0.1 * 1.001 * 0.998)
    f = FixedKLController(0.05)
    f.update(100.0, 8)
    assert f.value == 0.05
