import random

import pytest
import torch
from transformers.masking_utils import create_causal_mask

from instructkit.data.tokenize import IGNORE_INDEX, TokenizedExample
from instructkit.losses import response_only_loss
from instructkit.train.packing import (
    pack_bfd,
    packed_batch,
    packed_batches,
    packing_efficiency,
)

# ---------------------------------------------------------------- pack_bfd


def _naive_bfd(lengths, budget):
    """Reference: scan every bin for the tightest fit (O(n * bins)); same tie rules."""
    bins, room = [], []
    for i in sorted(range(len(lengths)), key=lambda j: (-lengths[j], j)):
        fits = [b for b in range(len(bins)) if room[b] >= lengths[i]]
        if fits:
            b = min(fits, key=lambda b: (room[b], b))
        else:
            b = len(bins)
            bins.append([])
            room.append(budget)
        bins[b].append(i)
        room[b] -= lengths[i]
    return bins


def _assert_valid(bins, lengths, budget):
    flat = sorted(i for b in bins for i in b)
    assert flat == list(range(len(lengths)))  # every index exactly once
    assert all(sum(lengths[i] for i in b) <= budget for b in bins)


def test_bfd_hand_computed():
    # sorted: 0(5) 1(4) 2(3) 3(3) 4(2) 5(1). 5 -> new bin A (room 3); 4 -> new B (room 4);
    # 3 -> tightest fit A (room 0); 3 -> B (room 1); 2 -> nothing fits, new C (room 6);
    # 1 -> tightest fit B (room 1) rather than C (room 6).
    assert pack_bfd([5, 4, 3, 3, 2, 1], 8) == [[0, 2], [1, 3, 5], [4]]


def test_bfd_is_best_fit_not_first_fit():
    # 13 -> A (room 7); 11 -> B (room 9); 8 -> B (room 1); 1 -> B, the tightest fit
    # (first-fit would put it in A).
    assert pack_bfd([13, 11, 8, 1], 20) == [[0], [1, 2, 3]]


def test_bfd_ties_broken_by_index_and_bin_order():
    # equal lengths go in index order; equal rooms (A and B both 1) pick the first bin
    assert pack_bfd([2, 2, 1], 3) == [[0, 2], [1]]
    assert pack_bfd([3, 3, 3], 4) == [[0], [1], [2]]
    assert pack_bfd([1, 1, 1, 1], 4) == [[0, 1, 2, 3]]


def test_bfd_exact_fit_and_empty_input():
    assert pack_bfd([8, 8], 8) == [[0], [1]]
    assert pack_bfd([], 8) == []


@pytest.mark.parametrize("seed", range(5))
def test_bfd_matches_naive_reference(seed):
    rng = random.Random(seed)
    budget = rng.choice([16, 50, 128])
    lengths = [rng.randint(1, budget) for _ in range(300)]
    bins = pack_bfd(lengths, budget)
    assert bins == _naive_bfd(lengths, budget)
    _assert_valid(bins, lengths, budget)


def test_bfd_too_long_example_names_index_and_length():
    with pytest.raises(ValueError, match=r"example 2 has 9 tokens.*budget of 8"):
        pack_bfd([3, 8, 9, 1], 8)
    with pytest.raises(ValueError, match=r"example 1 has 0 tokens"):
        pack_bfd([3, 0], 8)


def test_bfd_100k_examples():
    rng = random.Random(0)
    lengths = [rng.randint(1, 2048) for _ in range(100_000)]
    bins = pack_bfd(lengths, 4096)
    _assert_valid(bins, lengths, 4096)
    assert packing_efficiency(lengths, bins, 4096) > 0.99


def test_packed_batches_shuffles_bins_deterministically():
    examples = [TokenizedExample([1] * n, [1] * n) for n in [5, 4, 3, 3, 2, 1, 7, 6]]
    lengths = [len(e.input_ids) for e in examples]
    a = packed_batches(lengths, 8, seed=1)
    assert a == packed_batches(lengths, 8, seed=1)
    assert sorted(a) == sorted(pack_bfd(lengths, 8))
    assert any(packed_batches(lengths, 8, seed=s) != a for s in range(2, 10))


def test_packing_efficiency():
    assert packing_efficiency([5, 4, 3], [[0, 2], [1]], 8) == pytest.approx(12 / 16)
    assert packing_efficiency([], [], 8) == 0.0


# ---------------------------------------------------------------- packed_batch


def test_packed_batch_hand_computed_with_padding():
    a = TokenizedExample([10, 11, 12], [IGNORE_INDEX, 11, 12])
    b = TokenizedExample([20, 21], [20, 21])
    out = packed_batch([a, b], pad_to=7, pad_id=0)
    assert out["input_ids"].tolist() == [[10, 11, 12, 20, 21, 0, 0]]
    # b's first label (20) is dropped: it would be predicted from a's last token
    assert out["labels"].tolist() == [[-100, 11, 12, -100, 21, -100, -100]]
    assert out["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1]]
    assert out["cu_seqlens"].tolist() == [0, 3, 5, 7]
    assert out["cu_seqlens"].dtype == torch.int32
    assert out["seq_lens"].tolist() == [3, 2, 2]


def test_packed_batch_without_padding():
    out = packed_batch([TokenizedExample([1, 2], [1, 2]), TokenizedExample([3], [3])], pad_to=3)
    assert out["input_ids"].tolist() == [[1, 2, 3]]
    assert out["labels"].tolist() == [[-100, 2, -100]]
    assert out["position_ids"].tolist() == [[0, 1, 0]]
    assert out["cu_seqlens"].tolist() == [0, 2, 3]
    assert out["seq_lens"].tolist() == [2, 1]


def test_packed_batch_errors():
    with pytest.raises(ValueError, match="pad_to=2"):
        packed_batch([TokenizedExample([1, 2, 3], [1, 2, 3])], pad_to=2)
    with pytest.raises(ValueError, match="at least one"):
        packed_batch([])


# ---------------------------------------------------------------- packed == unpacked on a model

LENGTHS_PROMPTS = [(7, 3), (12, 5), (1, 1), (9, 2), (15, 10), (4, 0)]


def _examples():
    g = torch.Generator().manual_seed(0)
    out = []
    for n, prompt in LENGTHS_PROMPTS:
        ids = torch.randint(3, 500, (n,), generator=g).tolist()
        out.append(TokenizedExample(ids, [IGNORE_INDEX] * prompt + ids[prompt:]))
    return out


def _unpacked(model, examples):
    """Separate forward per example: hidden states, summed loss, labelled token count."""
    hiddens, total, count = [], 0.0, 0
    for e in examples:
        h = model.model(input_ids=torch.tensor([e.input_ids]), use_cache=False).last_hidden_state
        loss, n = response_only_loss(h, torch.tensor([e.labels]), model.lm_head)
        hiddens.append(h[0])  # (L, H)
        total, count = total + loss, count + n
    return hiddens, total, count


def _packed(model, batch, **kwargs):
    h = model.model(input_ids=batch["input_ids"], **kwargs).last_hidden_state  # (1, T, H)
    return h, response_only_loss(h, batch["labels"], model.lm_head)


def _block_causal(cu_seqlens):
    """Reference mask (1, 1, T, T): True where query i may attend to key j."""
    seg = torch.repeat_interleave(torch.arange(len(cu_seqlens) - 1), cu_seqlens.diff().long())
    t = torch.arange(int(cu_seqlens[-1]))
    return ((seg[:, None] == seg[None, :]) & (t[:, None] >= t[None, :]))[None, None]


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_transformers_builds_block_diagonal_mask(tiny_model, impl):
    tiny_model.set_attn_implementation(impl)
    batch = packed_batch(_examples(), pad_to=60)
    embeds = torch.zeros(1, 60, tiny_model.config.hidden_size)
    mask = create_causal_mask(tiny_model.config, embeds, None, None, batch["position_ids"])
    allowed = mask if mask.dtype == torch.bool else mask == 0  # eager: 0 / finfo.min
    assert torch.equal(allowed, _block_causal(batch["cu_seqlens"]))


@pytest.mark.parametrize("pad_to", [None, 60])
@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_packed_loss_and_hidden_states_equal_unpacked(tiny_model, impl, pad_to):
    tiny_model.set_attn_implementation(impl)
    assert tiny_model.config._attn_implementation == impl
    examples = _examples()
    batch = packed_batch(examples, pad_to=pad_to)
    with torch.no_grad():
        hiddens, ref, ref_n = _unpacked(tiny_model, examples)
        h, (loss, n) = _packed(
            tiny_model, batch, position_ids=batch["position_ids"], use_cache=False
        )
    assert n == ref_n > 0
    cu = batch["cu_seqlens"].tolist()
    for k, ref_h in enumerate(hiddens):
        torch.testing.assert_close(h[0, cu[k] : cu[k + 1]], ref_h, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_packed_gradients_equal_unpacked(tiny_model, impl):
    tiny_model.set_attn_implementation(impl)
    examples = _examples()
    _, ref, _ = _unpacked(tiny_model, examples)
    ref.backward()
    ref_grads = {k: p.grad.clone() for k, p in tiny_model.named_parameters()}
    tiny_model.zero_grad(set_to_none=True)
    batch = packed_batch(examples, pad_to=60)
    _, (loss, _) = _packed(tiny_model, batch, position_ids=batch["position_ids"], use_cache=False)
    loss.backward()
    for k, p in tiny_model.named_parameters():
        assert p.grad is not None, k
        torch.testing.assert_close(p.grad, ref_grads[k], rtol=1e-5, atol=1e-5, msg=k)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("mistake", ["no_position_ids", "use_cache_default", "attention_mask"])
def test_negative_control_examples_attend_to_each_other(tiny_model, impl, mistake):
    """Each known way of getting packing wrong changes the loss, so the tests above can fail."""
    tiny_model.set_attn_implementation(impl)
    examples = _examples()
    batch = packed_batch(examples)
    kwargs = {"position_ids": batch["position_ids"], "use_cache": False}
    if mistake == "no_position_ids":
        del kwargs["position_ids"]
    elif mistake == "use_cache_default":
        assert tiny_model.config.use_cache  # the default: a DynamicCache is created
        del kwargs["use_cache"]
    else:
        kwargs["attention_mask"] = torch.ones_like(batch["input_ids"])
    with torch.no_grad():
        _, ref, _ = _unpacked(tiny_model, examples)
        _, (loss, _) = _packed(tiny_model, batch, **kwargs)
    assert abs(loss.item() - ref.item()) > 1e-2
