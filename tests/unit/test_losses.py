import math

import torch

from instructkit.losses import IGNORE_INDEX, response_only_loss


def test_hand_computed_two_token_loss():
    # vocabulary of 2, identity head: logits = hidden
    head = torch.nn.Identity()
    hidden = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, 0.0]]])  # (1, 3, 2)
    labels = torch.tensor([[IGNORE_INDEX, 0, 1]])
    loss_sum, n = response_only_loss(hidden, labels, head)
    # position 0 predicts label 0 from logits (0, 0): ln 2; position 1 predicts 1 from (2, 0)
    expected = math.log(2) + (math.log(math.exp(2) + 1) - 0.0)
    assert n == 2
    assert abs(loss_sum.item() - expected) < 1e-6


def test_matches_transformers_loss(tiny_model):
    torch.manual_seed(0)
    ids = torch.randint(0, 500, (2, 12))
    labels = ids.clone()
    labels[:, :5] = IGNORE_INDEX
    labels[1, 9:] = IGNORE_INDEX
    ref = tiny_model(input_ids=ids, labels=labels, use_cache=False).loss
    hidden = tiny_model.model(input_ids=ids, use_cache=False).last_hidden_state
    loss_sum, n = response_only_loss(hidden, labels, tiny_model.lm_head)
    assert n == int((labels[:, 1:] != IGNORE_INDEX).sum())
    torch.testing.assert_close(loss_sum / n, ref, rtol=1e-5, atol=1e-6)


def test_no_labelled_token_gives_zero_with_grad():
    hidden = torch.randn(1, 4, 3, requires_grad=True)
    loss, n = response_only_loss(hidden, torch.full((1, 4), IGNORE_INDEX), torch.nn.Linear(3, 5))
    assert n == 0 and loss.item() == 0.0
    loss.backward()


def test_pairwise_reward_loss_by_hand():
    from instructkit.losses import pairwise_reward_loss

    r_c, r_r = torch.tensor([2.0, 0.0, -1.0]), torch.tensor([0.0, 0.0, 1.0])
    # -log sigmoid(d) = log(1 + e^-d), d = 2, 0, -2
    expected = [math.log1p(math.exp(-2)), math.log(2), math.log1p(math.exp(2))]
    assert torch.allclose(pairwise_reward_loss(r_c, r_r), torch.tensor(expected), atol=1e-6)
    # margin 1 on the first pair: d = 1; centering 0.5 * (r_c + r_r)^2 = 0.5 * (4, 0, 0)
    got = pairwise_reward_loss(r_c, r_r, torch.tensor([1.0, 0.0, 0.0]), center_coefficient=0.5)
    expected = [math.log1p(math.exp(-1)) + 2.0, math.log(2), math.log1p(math.exp(2))]
    assert torch.allclose(got, torch.tensor(expected), atol=1e-6)


def test_pairwise_reward_loss_matches_trl_reward_trainer_formula():
    from instructkit.losses import pairwise_reward_loss

    torch.manual_seed(0)
    r_c, r_r, m = torch.randn(8), torch.randn(8), torch.rand(8)
    trl = -torch.nn.functional.logsigmoid(r_c - r_r - m).mean() + 0.01 * torch.mean(
        (r_c + r_r) ** 2
    )
    assert torch.allclose(pairwise_reward_loss(r_c, r_r, m, 0.01).mean(), trl, atol=1e-6)
